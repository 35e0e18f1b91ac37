"""The NATS request/reply API realtime uses: every command and query round-trips, errors are
replies (never a dead subscription), and the caller's trace and correlation id reach the event."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from libs.common.messaging import connect, request

from .replay import assert_replays


@pytest.fixture
async def nc(nats_url):
    client = await connect(nats_url, "boards-nats-api-test")
    yield client
    await client.drain()


async def ask(nc, command: str, token: str | None, payload: Any, **extra: Any) -> dict:
    body = {"payload": payload, **extra}
    if token is not None:
        body["token"] = token
    reply = await nc.request(f"boards.v1.{command}", orjson.dumps(body), timeout=5)
    return orjson.loads(reply.data)


def ok(reply: dict) -> Any:
    assert reply["ok"] is True, reply
    return reply["data"]


async def test_every_command_and_query_round_trips(boards, api, nc, minter, org, db, directory):
    alice = minter.user({org: "member"})
    await directory.add(org, "u1")  # an assignee must be a member who may read the board
    snap = await api.create_board(alice, org, columns=["A", "B"])
    board = snap["board"]["id"]
    col_a, col_b = (c["id"] for c in snap["columns"])
    t = alice.token

    access = ok(await ask(nc, "board_access", t, {"board_id": board}))
    assert access == {"board_id": board, "organization_id": org, "division_id": None, "seq": 1, "can_write": True}

    created = ok(await ask(nc, "task_created", t, {"board_id": board, "column_id": col_a, "title": "via nats"}))
    task = created["task"]["id"]
    assert created["seq"] == 2 and created["event_id"] and created["task"]["position"] == 0
    moved = ok(
        await ask(
            nc,
            "task_moved",
            t,
            {"board_id": board, "task_id": task, "from_column_id": col_a, "to_column_id": col_b, "position": 3},
        )
    )
    assert moved["to_column_id"] == col_b and moved["conflict"]["reason"] == "position_clamped"
    updated = ok(
        await ask(
            nc,
            "task_updated",
            t,
            {"board_id": board, "task_id": task, "changes": {"title": "renamed"}, "expected_version": 2},
        )
    )
    assert updated["task"]["title"] == "renamed"
    stale = await ask(
        nc, "task_updated", t, {"board_id": board, "task_id": task, "changes": {"title": "x"}, "expected_version": 1}
    )
    assert stale["ok"] is False and stale["error"]["code"] == "version_conflict"
    assert stale["error"]["current"]["version"] == 3
    assigned = ok(await ask(nc, "task_assigned", t, {"board_id": board, "task_id": task, "assignee_ids": ["u1"]}))
    assert assigned["assignee_ids"] == ["u1"]
    commented = ok(await ask(nc, "task_commented", t, {"board_id": board, "task_id": task, "body": "hello"}))
    assert commented["comment"]["body"] == "hello"
    renamed = ok(await ask(nc, "board_updated", t, {"board_id": board, "changes": {"name": "Nats board"}}))
    assert renamed["board"]["name"] == "Nats board"
    column = ok(
        await ask(nc, "column_updated", t, {"board_id": board, "column_id": col_a, "changes": {"wip_limit": 2}})
    )
    assert column["column"]["wip_limit"] == 2
    reordered = ok(await ask(nc, "column_reordered", t, {"board_id": board, "column_ids": [col_b, col_a]}))
    assert reordered["column_ids"] == [col_b, col_a]
    deleted = ok(await ask(nc, "task_deleted", t, {"board_id": board, "task_id": task}))
    assert deleted["task_id"] == task and deleted["seq"] == 10

    snapshot = ok(await ask(nc, "snapshot", t, {"board_id": board}))
    assert snapshot == await api.snapshot(alice, board)
    events = ok(await ask(nc, "events", t, {"board_id": board, "since_seq": 8, "limit": 1}))
    assert [e["seq"] for e in events["events"]] == [9] and events["seq"] == 10
    await assert_replays(db, board, snapshot)


async def test_malformed_requests_get_error_replies_and_the_subscription_keeps_serving(boards, api, nc, minter, org):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board = snap["board"]["id"]
    subject = "boards.v1.task_moved"

    async def raw(data: bytes) -> dict:
        return orjson.loads((await nc.request(subject, data, timeout=5)).data)

    assert (await raw(b"not json"))["error"]["code"] == "invalid_payload"
    assert (await raw(b"[1, 2]"))["error"]["code"] == "invalid_payload"
    assert (await raw(b'{"payload": {}}'))["error"]["code"] == "unauthorized"
    assert (await ask(nc, "task_moved", "garbage", {}))["error"]["code"] == "unauthorized"
    assert (await ask(nc, "task_moved", alice.token, "x"))["error"]["code"] == "invalid_payload"
    assert (await ask(nc, "task_moved", alice.token, {"board_id": board}))["error"]["code"] == "invalid_payload"
    bad_correlation = await ask(nc, "snapshot", alice.token, {"board_id": board}, correlation_id="has spaces")
    assert bad_correlation["error"]["code"] == "invalid_payload"
    missing = await ask(nc, "task_deleted", alice.token, {"board_id": board, "task_id": "nope"})
    assert missing["error"]["code"] == "not_found"
    await nc.publish(subject, b"no reply subject at all")
    # A card of this board named with another board id is not found (never acted on).
    card = await api.add_card(alice, board, snap["columns"][0]["id"])
    other = (await api.create_board(alice, org))["board"]["id"]
    wrong = await ask(nc, "task_deleted", alice.token, {"board_id": other, "task_id": card["id"]})
    assert wrong["error"]["code"] == "not_found"

    still = ok(await ask(nc, "snapshot", alice.token, {"board_id": board}))
    assert [c["id"] for c in still["cards"]] == [card["id"]]


async def test_other_organization_sees_what_a_missing_board_shows_over_nats(boards, api, nc, minter, org):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org, columns=["A", "B"])
    board = snap["board"]["id"]
    col_a, col_b = (c["id"] for c in snap["columns"])
    card = (await api.add_card(alice, board, col_a))["id"]
    stranger = minter.user({"elsewhere": "owner"}).token
    requests = {
        "board_access": {"board_id": board},
        "snapshot": {"board_id": board},
        "events": {"board_id": board},
        "task_created": {"board_id": board, "column_id": col_a, "title": "x"},
        "task_moved": {"board_id": board, "task_id": card, "to_column_id": col_b, "position": 0},
        "task_updated": {"board_id": board, "task_id": card, "changes": {"title": "x"}},
        "task_deleted": {"board_id": board, "task_id": card},
        "task_assigned": {"board_id": board, "task_id": card, "assignee_ids": []},
        "task_commented": {"board_id": board, "task_id": card, "body": "x"},
        "board_updated": {"board_id": board, "changes": {"name": "x"}},
        "column_updated": {"board_id": board, "column_id": col_a, "changes": {"name": "x"}},
        "column_reordered": {"board_id": board, "column_ids": [col_b, col_a]},
    }
    for command, payload in requests.items():
        reply = await ask(nc, command, stranger, payload)
        # No existence oracle: exactly the answer for ids that do not exist.
        missing = {k: ("missing-" + k if k in ("board_id", "task_id", "column_id") else v) for k, v in payload.items()}
        if "column_ids" in missing:
            missing["column_ids"] = ["missing-a", "missing-b"]
        assert reply["ok"] is False and reply["error"]["code"] == "not_found", (command, reply)
        assert reply == await ask(nc, command, stranger, missing), command
    assert (await api.snapshot(alice, board))["seq"] == 2


async def test_client_op_id_and_trace_context_over_nats(boards, api, nc, minter, org, db):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board, column = snap["board"]["id"], snap["columns"][0]["id"]
    payload = {"board_id": board, "column_id": column, "title": "once", "client_op_id": "sock-op-1"}
    tracer = TracerProvider().get_tracer("realtime-test")
    body = orjson.dumps({"token": alice.token, "payload": payload, "correlation_id": "corr-nats-1"})
    with tracer.start_as_current_span("socket task_created") as span:
        replies = await asyncio.gather(
            *(request(nc, tracer, "boards.v1.task_created", body, timeout=5) for _ in range(5))
        )
    answers = [orjson.loads(r.data) for r in replies]
    assert len({a["data"]["event_id"] for a in answers}) == 1
    row = await db.fetchrow(
        "SELECT trace_id, correlation_id FROM kanban_board_events WHERE event_id = $1::uuid",
        answers[0]["data"]["event_id"],
    )
    assert row["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert row["correlation_id"] == "corr-nats-1"
    assert (await api.snapshot(alice, board))["seq"] == 2
