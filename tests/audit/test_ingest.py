"""Events published to JetStream become activity rows exactly once, with every column filled."""

from __future__ import annotations

from libs.common.events import Envelope
from libs.common.subjects import BOARD_EVENTS_STREAM, connection_event, security_event

from .conftest import board_event, consumer_settled, count_rows, new_id, wait_until


async def test_event_lands_once_and_redelivery_writes_nothing(audit_client, publisher, db):
    org, board = new_id("org"), new_id("board")
    envelope = board_event(org, board, task_id="card-1", seq=7, correlation_id="corr-1", column_id="col-2")

    first = await publisher.board(org, envelope)
    again = await publisher.board(org, envelope)  # same Nats-Msg-Id: JetStream's dedupe window drops it
    assert not first.duplicate and again.duplicate
    await wait_until(lambda: count_rows(db, org))

    # Redelivery past the dedupe window: same event_id, new Nats-Msg-Id, a new stream message.
    late = await publisher.board(org, envelope, msg_id=new_id("other-msg-id"))
    assert not late.duplicate and late.seq > first.seq
    await wait_until(lambda: consumer_settled(publisher.js, BOARD_EVENTS_STREAM, "audit-board-events"))

    rows = await db.fetch("SELECT * FROM kanban_activity_log WHERE event_id = $1", envelope.event_id)
    assert len(rows) == 1
    metrics = await (await audit_client.get("/metrics")).text()
    assert 'audit_events_duplicate_total{stream="KANBAN_EVENTS"} 1.0' in metrics


async def test_row_columns_come_from_envelope_subject_and_headers(audit_client, publisher, db):
    org, board = new_id("org"), new_id("board")
    moved = board_event(
        org, board, "task_moved", task_id="card-9", user_id="user-42", seq=3, correlation_id="req:abc.1", position=2
    )
    created = board_event(org, board, "task_created", user_id="user-42", seq=4, task={"id": "card-10", "title": "x"})
    renamed = board_event(org, board, "board_updated", seq=5, board={"id": board, "division_id": "div-1"})
    for envelope in (moved, created, renamed):
        await publisher.board(org, envelope)
    await wait_until(lambda: count_rows(db, org), lambda n: n == 3)

    row = await db.fetchrow("SELECT * FROM kanban_activity_log WHERE event_id = $1", moved.event_id)
    assert row["organization_id"] == org and row["board_id"] == board
    assert (row["action"], row["task_id"], row["user_id"], row["seq"]) == ("task_moved", "card-9", "user-42", 3)
    assert row["correlation_id"] == "req:abc.1"
    assert row["details"] == moved.data
    assert row["stream"] == "KANBAN_EVENTS" and row["subject"] == f"kanban.events.{org}.{board}.task_moved"
    assert row["trace_id"] and len(row["trace_id"]) == 32 and row["trace_id"] != "0" * 32
    assert row["created_at"].isoformat().startswith(moved.timestamp[:19])
    assert len(row["hash"]) == 64

    by_event = {r["event_id"]: r for r in await db.fetch("SELECT * FROM kanban_activity_log WHERE chain_key = $1", org)}
    assert by_event[created.event_id]["task_id"] == "card-10"  # data.task.id
    assert by_event[renamed.event_id]["division_id"] == "div-1"  # data.board.division_id
    positions = sorted(r["chain_pos"] for r in by_event.values())
    assert positions == [1, 2, 3]


async def test_security_and_connection_events_go_to_their_organization_or_the_global_chain(audit_client, publisher, db):
    org = new_id("org")
    refused = Envelope("access_denied", {"organization_id": org, "board_id": "b-1", "reason": "forbidden"}, "user-7")
    anonymous = Envelope("auth_failed", {"reason": "bad signature", "ip": "10.0.0.1"}, None)
    spoofed = Envelope("access_denied", {"organization_id": "not an id!", "reason": "forbidden"}, "user-8")
    joined = Envelope("join_board", {"organization_id": org, "board_id": "b-1"}, "user-7")
    await publisher.security(security_event("realtime", "forbidden"), refused)
    await publisher.security(security_event("auth", "unauthorized"), anonymous)
    await publisher.security(security_event("realtime", "forbidden"), spoofed)
    await publisher.security(connection_event("join_board"), joined)

    ids = [e.event_id for e in (refused, anonymous, spoofed, joined)]
    query = "SELECT * FROM kanban_activity_log WHERE event_id = any($1::text[])"
    rows = await wait_until(lambda: db.fetch(query, ids), lambda rows: len(rows) == len(ids))
    by_event = {r["event_id"]: r for r in rows}
    assert by_event[refused.event_id]["chain_key"] == org
    assert by_event[refused.event_id]["board_id"] == "b-1"
    assert by_event[joined.event_id]["chain_key"] == org
    assert by_event[joined.event_id]["stream"] == "SECURITY_EVENTS"
    for envelope in (anonymous, spoofed):  # no (valid) organization: the global chain, data kept
        assert by_event[envelope.event_id]["chain_key"] == ":global"
        assert by_event[envelope.event_id]["organization_id"] is None
    assert by_event[spoofed.event_id]["details"]["organization_id"] == "not an id!"
