"""Postgres is the source of truth for board events, and JetStream only a copy (issue 15, Deliver 2
and the slow-publish ack of Deliver 3).

JetStream acknowledges a write once it is in memory (``sync_interval``: fsync every 2 minutes by
default, docs/deploy.md "Durability settings"). A host crash within that interval loses writes it
acknowledged; the boards outbox must publish them again. And a JetStream that is slow to answer
must not hold up the answer to the user whose change is already committed.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from libs.common.messaging import connect
from libs.common.subjects import BOARD_EVENTS_STREAM

from .proxy import TcpProxy
from .workload import board, call, new_user, organization

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def stream_ids(nats_url: str, org: str, board_id: str) -> list[str]:
    """``Nats-Msg-Id`` of every message of one board in the stream, in stream order."""
    client = await connect(nats_url, "chaos-stream-reader")
    try:
        sub = await client.jetstream().pull_subscribe(
            f"kanban.events.{org}.{board_id}.>", durable=None, stream=BOARD_EVENTS_STREAM
        )
        ids: list[str] = []
        while True:
            try:
                batch = await sub.fetch(200, timeout=0.5)
            except TimeoutError:
                return ids
            ids += [msg.headers["Nats-Msg-Id"] for msg in batch]
    finally:
        await client.close()


async def event_ids(database_url: str, board_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id::text FROM boards.kanban_board_events WHERE board_id = $1 ORDER BY seq", board_id
        )
        return [row["event_id"] for row in rows]
    finally:
        await conn.close()


async def audited_ids(database_url: str, board_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT event_id FROM audit.kanban_activity_log WHERE board_id = $1", board_id)
        return [row["event_id"] for row in rows]
    finally:
        await conn.close()


async def eventually(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout}s")
        await asyncio.sleep(0.2)


async def test_events_a_host_crash_took_from_jetstream_are_published_again(
    private_nats, fresh_database, service_process, tokens, tmp_path
):
    """A burst of committed, published, acknowledged events; then nats-server dies and comes back
    with the disk as of just before the burst (nothing fsynced since). Every event must be in the
    stream again — once — and in audit: the relay republishes what JetStream lost."""
    env = {"NATS_URL": private_nats.url, "DATABASE_URL": fresh_database, "BOARDS_RELAY_INTERVAL": "1"}
    auth = service_process("auth", **env)
    boards = service_process("boards", AUTH_SERVICE_URL=auth.url, **env)
    service_process("audit", AUTH_SERVICE_URL=auth.url, AUDIT_ACK_WAIT="2", **env)
    owner = new_user(tokens, "owner")
    async with aiohttp.ClientSession() as session:
        org = await organization(session, auth.url, tokens, [owner])
        board_id = await board(session, boards.url, org, owner, cards=3)
        before = await event_ids(fresh_database, board_id)
        await eventually(lambda: _has(private_nats.admin_url, org, board_id, before), what="the seed published")

        image = private_nats.disk_image(tmp_path / "fsynced")  # the last fsync: before the burst
        column = (await call(session, "GET", f"{boards.url}/v1/boards/{board_id}", owner.token))[1]["columns"][0]
        answers = await asyncio.gather(
            *(
                call(
                    session,
                    "POST",
                    f"{boards.url}/v1/boards/{board_id}/cards",
                    owner.token,
                    {"column_id": column["id"], "title": f"burst {n}"},
                )
                for n in range(30)
            )
        )
        assert [status for status, _ in answers] == [201] * 30, answers
        committed = await event_ids(fresh_database, board_id)
        await eventually(lambda: _has(private_nats.admin_url, org, board_id, committed), what="the burst published")

        await asyncio.to_thread(private_nats.crash, image)
        assert set(await stream_ids(private_nats.admin_url, org, board_id)) == set(before)  # the burst is gone

        await eventually(
            lambda: _has(private_nats.admin_url, org, board_id, committed), what="every event back in the stream"
        )
        in_stream = await stream_ids(private_nats.admin_url, org, board_id)
        assert sorted(in_stream) == sorted(committed)  # each once: JetStream dropped the copies it kept

        async def all_audited() -> bool:
            return sorted(await audited_ids(fresh_database, board_id)) == sorted(committed)

        await eventually(all_audited, what="audit holding every event")


async def _has(nats_url: str, org: str, board_id: str, wanted: list[str]) -> bool:
    return set(wanted) <= set(await stream_ids(nats_url, org, board_id))


#: One-way delay the proxy adds to what JetStream sends boards (each publish ack arrives this late).
SLOW = 1.0


async def test_a_slow_jetstream_does_not_hold_the_ack_of_a_committed_change(
    private_nats, fresh_database, service_process, tokens
):
    """Boards answers once the change is committed; publishing follows on its own. Before,
    every event's publish ack was awaited first: a move answered after ``SLOW`` s per event, and
    through realtime a slow enough JetStream turned committed moves into ``unavailable``."""
    proxy = await TcpProxy(private_nats.host, private_nats.port).start()
    try:
        env = {"DATABASE_URL": fresh_database}
        auth = service_process("auth", NATS_URL=private_nats.url, **env)
        # Started in a thread: the proxy runs on this event loop, which must not block meanwhile.
        boards = service_process("boards", start=False, AUTH_SERVICE_URL=auth.url, NATS_URL=proxy.url, **env)
        await asyncio.to_thread(boards.start)
        owner = new_user(tokens, "owner")
        async with aiohttp.ClientSession() as session:
            org = await organization(session, auth.url, tokens, [owner])
            board_id = await board(session, boards.url, org, owner, cards=0)
            snapshot = (await call(session, "GET", f"{boards.url}/v1/boards/{board_id}", owner.token))[1]
            column = snapshot["columns"][0]["id"]
            proxy.latency = SLOW  # from now on every answer of NATS reaches boards SLOW s late
            took = []
            for n in range(5):
                started = time.monotonic()
                status, body = await call(
                    session,
                    "POST",
                    f"{boards.url}/v1/boards/{board_id}/cards",
                    owner.token,
                    {"column_id": column, "title": f"slow {n}"},
                )
                took.append(time.monotonic() - started)
                assert status == 201, body
            print(f"acks with JetStream {SLOW}s slow: {[round(t, 3) for t in took]}")
            assert max(took) < SLOW / 2, f"acks waited for JetStream: {took}"
            committed = await event_ids(fresh_database, board_id)
            await eventually(lambda: _has(private_nats.admin_url, org, board_id, committed), what="published")
    finally:
        await proxy.stop()


def test_durability_settings_are_written_down_and_are_what_the_manifests_use():
    """docs/deploy.md states the JetStream ``sync_interval`` and Postgres ``synchronous_commit``
    the deployment runs with; the manifests must agree, and nothing may turn commits asynchronous
    (an acked change lost with Postgres would be lost for good: Postgres is the source of truth)."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    section = doc.split("## Durability settings", 1)[1].split("\n## ", 1)[0]
    for conf in ("deploy/k8s/base/nats/nats.conf", "deploy/k8s/overlays/dev/nats-dev.conf"):
        interval = re.search(r'^\s*sync_interval:\s*"?([^"\s]+)"?', (ROOT / conf).read_text(), re.M)
        assert interval, f"{conf} does not write its sync_interval down"
        assert f'`sync_interval: "{interval.group(1)}"`' in section, f"{conf}'s sync_interval is not documented"
    assert "`synchronous_commit = on`" in section
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("deploy", "libs", "services", "liveboard")
        for path in (ROOT / folder).rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".yaml", ".yml", ".conf", ".sql", ".sh"}
        and re.search(r"synchronous_commit\W+(off|local)", path.read_text(errors="replace"), re.I)
    ]
    assert not offenders, f"asynchronous commits configured in {offenders}"
