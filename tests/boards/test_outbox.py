"""Events reach JetStream exactly once per event id, whatever fails in between: the process dying
after commit, NATS restarting, Postgres restarting."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import orjson
import pytest

from libs.common.messaging import connect
from libs.common.subjects import BOARD_EVENTS_STREAM

from .conftest import Api

pytestmark = pytest.mark.slow


async def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def stream_messages(nats_url: str, org: str, board: str, *, settle: float = 1.0) -> list:
    """Every message of one board in the stream (an ephemeral consumer reads them all)."""
    client = await connect(nats_url, "boards-outbox-test")
    try:
        js = client.jetstream()
        sub = await js.pull_subscribe(f"kanban.events.{org}.{board}.>", durable=None, stream=BOARD_EVENTS_STREAM)
        messages = []
        while True:
            try:
                batch = await sub.fetch(100, timeout=settle)
            except TimeoutError:
                return messages
            messages += batch
    finally:
        await client.close()


async def unpublished(db, board: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM kanban_board_events WHERE board_id = $1 AND published_at IS NULL", board
    )


async def test_events_are_published_after_commit_with_ids_and_trace_headers(api, minter, org, db, nats_url):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board = snap["board"]["id"]
    await api.call(
        "POST",
        f"/v1/boards/{board}/cards",
        alice,
        {"column_id": snap["columns"][0]["id"], "title": "x"},
        headers={"X-Correlation-Id": "corr-outbox"},
    )
    await wait_for(lambda: _none_unpublished(db, board))
    messages = await stream_messages(nats_url, org, board)
    status, page = await api.call("GET", f"/v1/boards/{board}/events", alice)
    assert [orjson.loads(m.data) for m in messages] == page["events"]
    assert [m.subject for m in messages] == [
        f"kanban.events.{org}.{board}.board_created",
        f"kanban.events.{org}.{board}.task_created",
    ]
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [e["event_id"] for e in page["events"]]
    assert messages[1].headers["Correlation-Id"] == "corr-outbox"
    assert messages[1].headers["traceparent"].startswith("00-")


async def _none_unpublished(db, board: str) -> bool:
    return await unpublished(db, board) == 0


async def test_crash_between_commit_and_publish_is_published_once_after_restart(
    service_process, jwks_url, minter, org, db, nats_url
):
    env = {"AUTH_JWKS_URL": jwks_url, "BOARDS_RELAY_INTERVAL": "0.5"}
    doomed = service_process("boards", LIVEBOARD_TEST_HOOKS="1", BOARDS_FAULT_EXIT_AFTER_COMMIT="1", **env)
    alice = minter.user({org: "member"})
    board = "crash-" + uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.post(
                f"{doomed.url}/v1/boards",
                json={"id": board, "organization_id": org, "name": "Crash", "columns": ["A"]},
                headers=alice.headers,
            )
    assert doomed.proc.wait(10) == 70  # the test hook's exit, right after commit
    assert await unpublished(db, board) == 1  # committed, never published
    assert await stream_messages(nats_url, org, board, settle=0.3) == []

    service_process("boards", **env)  # the restarted service's relay finds the row
    await wait_for(lambda: _none_unpublished(db, board))
    messages = await stream_messages(nats_url, org, board)
    assert len(messages) == 1
    envelope = orjson.loads(messages[0].data)
    assert envelope["event_type"] == "board_created" and envelope["seq"] == 1 and envelope["board_id"] == board


async def test_relay_publishes_what_was_committed_while_nats_was_down(
    make_app, aiohttp_client, boards_settings, private_nats, minter, org, db
):
    api = Api(await aiohttp_client(make_app("boards", **boards_settings, nats_url=private_nats.url)))
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board = snap["board"]["id"]
    await wait_for(lambda: _none_unpublished(db, board))

    private_nats.stop()
    await asyncio.sleep(0.3)
    for i in range(3):  # Postgres is the truth: mutations still commit
        await api.add_card(alice, board, snap["columns"][0]["id"], f"offline {i}")
    assert await unpublished(db, board) == 3
    ready = await api.client.get("/readyz")
    assert ready.status == 503

    private_nats.start()
    await wait_for(lambda: _none_unpublished(db, board), timeout=20)
    messages = await stream_messages(private_nats.admin_url, org, board)
    assert [orjson.loads(m.data)["seq"] for m in messages] == [1, 2, 3, 4]


async def test_postgres_down_is_503_and_the_service_recovers(
    make_app, aiohttp_client, boards_settings, private_postgres, minter, org, nats_url
):
    app = make_app("boards", **boards_settings, database_url=private_postgres.url)
    api = Api(await aiohttp_client(app))
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board, column = snap["board"]["id"], snap["columns"][0]["id"]

    private_postgres.stop()
    status, body = await api.call("POST", f"/v1/boards/{board}/cards", alice, {"column_id": column, "title": "x"})
    assert status == 503 and body["error"]["code"] == "unavailable"
    assert (await api.client.get("/readyz")).status == 503
    status, body = await api.call("GET", f"/v1/boards/{board}", alice)
    assert status == 503

    private_postgres.start()

    async def card_lands():
        status, _ = await api.call("POST", f"/v1/boards/{board}/cards", alice, {"column_id": column, "title": "back"})
        return status == 201

    await wait_for(card_lands, timeout=20, interval=0.3)
    assert (await api.client.get("/readyz")).status == 200
    snap = await api.snapshot(alice, board)
    assert [c["title"] for c in snap["cards"]] == ["back"] and snap["seq"] == 2

    # The relay survived too: everything committed gets published.
    import asyncpg

    conn = await asyncpg.connect(private_postgres.url)
    try:
        await wait_for(
            lambda: _count_unpublished(conn, board),
            timeout=20,
        )
    finally:
        await conn.close()
    messages = await stream_messages(nats_url, org, board)
    assert [orjson.loads(m.data)["seq"] for m in messages] == [1, 2]


async def _count_unpublished(conn, board: str) -> bool:
    return (
        await conn.fetchval(
            "SELECT count(*) FROM boards.kanban_board_events WHERE board_id = $1 AND published_at IS NULL", board
        )
        == 0
    )
