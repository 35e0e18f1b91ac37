"""The message -> activity row mapping, decided without I/O: what is stored, what is dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from libs.common.events import Envelope
from services.audit.records import GLOBAL_CHAIN, Unstorable, to_record, trace_id_from

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def board(payload: dict | bytes, subject: str = "kanban.events.org-1.board-1.task_moved", headers=None):
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return to_record("KANBAN_EVENTS", subject, body, headers, received_at=NOW)


def security(payload: dict, subject: str = "security.realtime.forbidden"):
    return to_record("SECURITY_EVENTS", subject, orjson.dumps(payload), None, received_at=NOW)


def envelope(**overrides) -> dict:
    return {**Envelope("task_moved", {"task_id": "card-1"}, "user-1", board_id="board-1", seq=4).to_dict(), **overrides}


def test_board_event_columns():
    raw = envelope(correlation_id=None, timestamp="2029-12-31T23:00:00Z")
    record = board(raw, headers={"traceparent": TRACE, "Correlation-Id": "from-header"})
    assert (record.organization_id, record.board_id, record.task_id) == ("org-1", "board-1", "card-1")
    assert (record.action, record.user_id, record.seq, record.details) == ("task_moved", "user-1", 4, raw["data"])
    assert record.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record.correlation_id == "from-header"  # the envelope had none
    assert record.created_at == datetime(2029, 12, 31, 23, tzinfo=UTC)
    assert record.chain_key == "org-1"
    assert board(envelope(timestamp="not a time")).created_at == NOW


@pytest.mark.parametrize(
    ("payload", "subject", "reason"),
    [
        (b"{", "kanban.events.org-1.board-1.task_moved", "not JSON"),
        ({"hello": 1}, "kanban.events.org-1.board-1.task_moved", "lacks"),
        (envelope(), "kanban.events.org-1", "is not kanban.events"),
        (envelope(), "kanban.events.org:1.board-1.task_moved", "no valid organization"),
        (envelope(board_id="board-2"), "kanban.events.org-1.board-1.task_moved", "differs from the subject"),
        (envelope(data={"organization_id": "org-2"}), "kanban.events.org-1.board-1.task_moved", "differs"),
        (envelope(seq=2**63), "kanban.events.org-1.board-1.task_moved", "64-bit"),
        (envelope(user_id="a\x00b"), "kanban.events.org-1.board-1.task_moved", "NUL"),
        (envelope(event_id="e" * 300), "kanban.events.org-1.board-1.task_moved", "longer than"),
        (envelope(event_id=""), "kanban.events.org-1.board-1.task_moved", "empty"),
    ],
)
def test_unstorable_board_messages(payload, subject, reason):
    with pytest.raises(Unstorable, match=reason):
        board(payload, subject)


def test_security_events_keep_attacker_values_in_details_only():
    raw = {**Envelope("access_denied", {"organization_id": "../etc", "board_id": "x" * 500}, None).to_dict()}
    record = security(raw)
    assert record.organization_id is None and record.chain_key == GLOBAL_CHAIN
    assert record.board_id is None and record.details["board_id"] == "x" * 500
    known = security({**raw, "data": {"organization_id": "org-9", "board_id": "b-1"}})
    assert (known.chain_key, known.board_id) == ("org-9", "b-1")


def test_trace_id_needs_a_well_formed_traceparent():
    assert trace_id_from({"traceparent": TRACE.upper()}) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_from({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert trace_id_from({"traceparent": "garbage"}) is None
    assert trace_id_from(None) is None
