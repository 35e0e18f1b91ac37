"""What one JetStream message becomes in the activity log, decided without any I/O.

The mapping lives apart from the consumer loop so that "can this message ever be stored?" has one
answer: ``to_record`` either returns the row to append or raises ``Unstorable`` with the reason
the dead-letter table will show. Anything that fails here would fail identically on every
redelivery, so the consumer terminates such messages instead of retrying them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from libs.common.events import Envelope, EnvelopeError
from libs.common.ids import ID_RE
from libs.common.subjects import BOARD_EVENTS_STREAM
from libs.common.tracing import CORRELATION_NATS_HEADER

#: Ids are strings of this shape (CONTRACT §3); anything else is not an organization or board id.
#: Chain of security events that name no organization. The colon cannot occur in an id, so no
#: organization can ever share (or spoof) this chain.
GLOBAL_CHAIN = ":global"
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_MAX_BIGINT = 2**63 - 1
#: Longest value of an indexed text column; longer ones could never be indexed (nor be real ids).
MAX_KEY_LENGTH = 256


class Unstorable(ValueError):
    """The message can never become an activity row; its text is the dead-letter reason."""


@dataclass(frozen=True, slots=True)
class ActivityRecord:
    """One activity-log row as the consumer builds it, before the chain gives it a position."""

    event_id: str
    action: str
    details: dict[str, Any]
    task_id: str | None
    user_id: str | None
    organization_id: str | None
    division_id: str | None
    board_id: str | None
    seq: int | None
    correlation_id: str | None
    trace_id: str | None
    stream: str
    subject: str
    created_at: datetime

    @property
    def chain_key(self) -> str:
        return self.organization_id or GLOBAL_CHAIN


def trace_id_from(headers: Mapping[str, str] | None) -> str | None:
    """The W3C trace id in a ``traceparent`` header, or None when absent or malformed."""
    match = _TRACEPARENT_RE.match((headers or {}).get("traceparent", "").strip().lower())
    if not match or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _task_id(data: dict[str, Any]) -> str | None:
    task = data.get("task")
    return _string(data.get("task_id")) or (_string(task.get("id")) if isinstance(task, dict) else None)


def _division_id(data: dict[str, Any]) -> str | None:
    board = data.get("board")
    return _string(data.get("division_id")) or (_string(board.get("division_id")) if isinstance(board, dict) else None)


def _timestamp(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _board_origin(subject: str, envelope: Envelope) -> tuple[str, str]:
    """Organization and board of a board event: the subject is how boards routed it, so it rules."""
    tokens = subject.split(".")
    if len(tokens) < 5 or tokens[:2] != ["kanban", "events"]:
        raise Unstorable(f"subject {subject!r} is not kanban.events.<org>.<board>.<event_type>")
    org, board = tokens[2], tokens[3]
    if not ID_RE.match(org):
        raise Unstorable(f"subject names no valid organization id ({org!r})")
    if envelope.board_id is not None and envelope.board_id != board:
        raise Unstorable(f"envelope board_id {envelope.board_id!r} differs from the subject's {board!r}")
    claimed = envelope.data.get("organization_id")
    if claimed is not None and claimed != org:
        raise Unstorable(f"data.organization_id {claimed!r} differs from the subject's {org!r}")
    return org, board


def _without_nul(value: Any) -> Any:
    """``value`` with every U+0000 (which jsonb cannot hold) as U+FFFD, in keys and strings.

    The client-controlled parts of a security or connection event (a request path
    ``/v1/boards/%00``) may carry one; refused by Postgres, the event would be a dead letter
    instead of a chain row, and whoever probed would leave no trace in the log an auditor reads.
    (A board event with one is boards breaking its own rule: that stays a dead letter.)"""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def to_record(
    stream: str, subject: str, payload: bytes, headers: Mapping[str, str] | None, *, received_at: datetime
) -> ActivityRecord:
    """The activity row for one message, or ``Unstorable`` (not JSON, not an envelope, no org, ...)."""
    try:
        envelope = Envelope.from_json(payload)
    except EnvelopeError as exc:
        raise Unstorable(f"not an envelope: {exc}") from None
    data = envelope.data
    if stream != BOARD_EVENTS_STREAM and b"\\u0000" in payload:  # board events: boards refused NUL already
        data = _without_nul(data)
    if stream == BOARD_EVENTS_STREAM:
        organization_id, board_id = _board_origin(subject, envelope)
    else:
        # Security and connection events: the organization when the publisher knew it. A value
        # that is not an id (e.g. what an attacker sent) is kept in details, in the global chain.
        claimed = data.get("organization_id")
        organization_id = claimed if isinstance(claimed, str) and ID_RE.match(claimed) else None
        board = envelope.board_id or _string(data.get("board_id"))
        board_id = board if board and ID_RE.match(board) else None
    if envelope.seq is not None and envelope.seq > _MAX_BIGINT:
        raise Unstorable("seq does not fit in a signed 64-bit integer")
    headers = headers or {}
    record = ActivityRecord(
        event_id=envelope.event_id,
        action=envelope.event_type,
        details=data,
        task_id=_task_id(data),
        user_id=envelope.user_id,
        organization_id=organization_id,
        division_id=_division_id(data),
        board_id=board_id,
        seq=envelope.seq,
        correlation_id=envelope.correlation_id or _string(headers.get(CORRELATION_NATS_HEADER)),
        trace_id=trace_id_from(headers),
        stream=stream,
        subject=subject,
        created_at=_timestamp(envelope.timestamp) or received_at,
    )
    if not record.event_id:
        raise Unstorable("event_id is empty")
    for name in ("event_id", "action", "task_id", "user_id", "division_id", "board_id", "correlation_id", "subject"):
        value = getattr(record, name)
        if value is not None and "\x00" in value:
            raise Unstorable(f"{name} contains a NUL character")
        if value is not None and name != "subject" and len(value) > MAX_KEY_LENGTH:
            raise Unstorable(f"{name} is longer than {MAX_KEY_LENGTH} characters")
    return record
