"""Messages that can never be stored are dead-lettered once, terminated, and do not stop the consumer."""

from __future__ import annotations

import orjson

from libs.common.subjects import BOARD_EVENTS_STREAM, SECURITY_STREAM, board_events, security_event

from .conftest import board_event, consumer_settled, count_rows, new_id, wait_until


async def test_poison_messages_are_dead_lettered_and_the_consumer_keeps_going(audit_client, publisher, db):
    org, board = new_id("org"), new_id("board")
    subject = board_events(org, board, "task_moved")
    nul_in_data = board_event(org, board, task_id="card-1", note="a\x00b")  # jsonb refuses \u0000
    poison = {
        "not JSON": (subject, b"\xff\xfe this is not json"),
        "JSON, not an envelope": (subject, orjson.dumps({"hello": "world"})),
        "no organization in subject": ("kanban.events.lonely", board_event(org, board).to_json()),
        "refused by Postgres": (subject, nul_in_data.to_json()),
    }
    msg_ids = {name: new_id("poison") for name in poison}
    for name, (where, payload) in poison.items():
        await publisher.raw(where, payload, msg_id=msg_ids[name])
    good = board_event(org, board, task_id="card-2")
    await publisher.board(org, good)

    await wait_until(lambda: count_rows(db, org), lambda n: n == 1)
    await wait_until(lambda: consumer_settled(publisher.js, BOARD_EVENTS_STREAM, "audit-board-events"))
    letters = {
        row["headers"]["Nats-Msg-Id"]: row
        for row in await db.fetch(
            "SELECT * FROM dead_letters WHERE headers->>'Nats-Msg-Id' = any($1::text[])", list(msg_ids.values())
        )
    }
    assert len(letters) == len(poison), letters
    assert {row["stream"] for row in letters.values()} == {BOARD_EVENTS_STREAM}
    reasons = {name: letters[msg_ids[name]]["reason"] for name in poison}
    assert reasons["not JSON"].startswith("not an envelope: not JSON")
    assert "lacks" in reasons["JSON, not an envelope"]
    assert "kanban.events.<org>.<board>" in reasons["no organization in subject"]
    assert reasons["refused by Postgres"].startswith("refused by Postgres")
    raw = letters[msg_ids["not JSON"]]
    assert bytes(raw["payload"]) == b"\xff\xfe this is not json"
    assert raw["subject"] == subject
    assert "traceparent" in raw["headers"]
    assert all(row["num_delivered"] == 1 for row in letters.values())  # terminated, never redelivered

    row = await db.fetchrow("SELECT * FROM kanban_activity_log WHERE chain_key = $1", org)
    assert row["event_id"] == good.event_id and row["chain_pos"] == 1
    metrics = await (await audit_client.get("/metrics")).text()
    assert f'audit_events_dead_lettered_total{{stream="{BOARD_EVENTS_STREAM}"}} 4.0' in metrics


async def test_poison_on_the_security_stream_is_dead_lettered_too(audit_client, publisher, db):
    msg_id = new_id("poison")
    await publisher.raw(security_event("realtime", "forbidden"), b"[1, 2, 3]", msg_id=msg_id)
    await wait_until(lambda: consumer_settled(publisher.js, SECURITY_STREAM, "audit-security-events"))
    row = await db.fetchrow("SELECT * FROM dead_letters WHERE headers->>'Nats-Msg-Id' = $1", msg_id)
    assert row["stream"] == SECURITY_STREAM
    assert row["reason"] == "not an envelope: envelope must be a JSON object"
