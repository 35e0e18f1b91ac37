"""The presence store against a real nats-server: what one replica writes, the others list.

Each ``PresenceStore`` stands for one realtime replica (its own NATS connection), as in
production; the store is what ``join_board`` reads the ``presence`` list from.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from libs.common.messaging import connect
from services.realtime.presence import PRESENCE_TTL, PresenceStore
from tests.conftest import service_connect_options


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def replica(nats_url: str) -> AsyncIterator[Callable[..., Awaitable[PresenceStore]]]:
    opened: list[tuple[PresenceStore, object]] = []

    async def open_replica(url: str = nats_url, hooks: list | None = None) -> PresenceStore:
        store = PresenceStore()
        client = await connect(
            url,
            "presence-test",
            reconnect_hooks=hooks if hooks is not None else [],
            **service_connect_options("realtime"),  # with realtime's NATS permissions, as deployed
        )
        await store.open(client, client.jetstream())
        opened.append((store, client))
        return store

    yield open_replica
    for store, client in opened:
        await store.close()
        await client.close()


def users(store: PresenceStore, board: str) -> set[str]:
    return {entry["user_id"] for entry in store.members(board)}


async def test_entries_of_one_replica_are_listed_by_another_and_removed(replica):
    a, b = await replica(), await replica()
    board = str(uuid.uuid4())
    await a.set(board, "sid-1", {"user_id": "alice", "email": "a@x", "status": "online"})
    await b.set(board, "sid-2", {"user_id": "bob", "email": "b@x", "status": "online"})
    await eventually(lambda: users(a, board) == {"alice", "bob"} and users(b, board) == {"alice", "bob"})
    assert users(a, str(uuid.uuid4())) == set()  # other boards see nobody

    await a.set(board, "sid-1", {"user_id": "alice", "email": "a@x", "status": "away"})
    await eventually(lambda: {e["status"] for e in b.members(board) if e["user_id"] == "alice"} == {"away"})

    await a.remove(board, "sid-1")
    await eventually(lambda: users(b, board) == {"bob"})
    assert users(a, board) == {"bob"}


async def test_one_user_with_two_sockets_is_listed_once(replica):
    a, b = await replica(), await replica()
    board = str(uuid.uuid4())
    await a.set(board, "sid-1", {"user_id": "alice", "email": "a@x", "status": "online"})
    await b.set(board, "sid-2", {"user_id": "alice", "email": "a@x", "status": "online"})
    await eventually(lambda: "sid-1" in b.seen.get(board, {}) and "sid-2" in a.seen.get(board, {}))
    assert [e["user_id"] for e in b.members(board)] == ["alice"]
    assert [e["user_id"] for e in a.members(board)] == ["alice"]


async def test_heartbeat_refreshes_entries_and_a_dead_replicas_entries_age_out(replica):
    a, b = await replica(), await replica()
    board = str(uuid.uuid4())
    await a.set(board, "sid-1", {"user_id": "alice", "email": "a@x", "status": "online"})
    await eventually(lambda: "sid-1" in b.seen.get(board, {}))
    first = b.seen[board]["sid-1"][0]
    await asyncio.sleep(0.05)
    await a.heartbeat()  # plain publishes to the bucket, not acknowledged puts
    await eventually(lambda: b.seen[board]["sid-1"][0] > first)

    # Replica a dies without purging: the bucket expires its entry silently; b must stop
    # listing it once it is older than the TTL, and forget it at its next heartbeat.
    put_at, entry = b.seen[board]["sid-1"]
    b.seen[board]["sid-1"] = (put_at - PRESENCE_TTL - 1, entry)
    assert users(b, board) == set()
    await b.heartbeat()
    assert board not in b.seen


async def test_the_watcher_comes_back_after_nats_restarts(replica, private_nats):
    hooks: list = []
    a = await replica(private_nats.url, hooks)
    b = await replica(private_nats.url)
    hooks.append(lambda: _rewatch(a))
    board = str(uuid.uuid4())
    await b.set(board, "sid-1", {"user_id": "bob", "email": "b@x", "status": "online"})
    await eventually(lambda: users(a, board) == {"bob"})

    private_nats.stop()
    private_nats.start()
    await eventually(lambda: a._nats.is_connected and b._nats.is_connected, timeout=15)
    await b.set(board, "sid-2", {"user_id": "carol", "email": "c@x", "status": "online"})
    deadline = time.monotonic() + 10  # without the reconnect hook nats-py takes ~20 s
    while users(a, board) != {"bob", "carol"}:  # b's put may have met JetStream still starting:
        assert time.monotonic() < deadline, users(a, board)
        await b.heartbeat()  # its heartbeat (every 10 s in the service) writes it again
        await asyncio.sleep(0.2)
    assert a.seen[board]["sid-2"][1]["user_id"] == "carol"  # from the watcher, not a's own sockets


async def _rewatch(store: PresenceStore) -> None:
    store.rewatch()
