"""Nothing is lost or stored twice when the audit process is killed, Postgres goes away, NATS
restarts, the consumer is deleted, or the service is stopped with SIGTERM mid-stream."""

from __future__ import annotations

import asyncio
import os
import random

import aiohttp
import asyncpg
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.events import Envelope
from libs.common.subjects import BOARD_EVENTS_STREAM, SECURITY_STREAM, security_event

from .conftest import board_event, consumer_settled, count_rows, new_id, wait_until

EVENT_TYPES = ["task_created", "task_moved", "task_updated", "task_commented", "task_assigned", "column_updated"]


async def stored_event_ids(conn: asyncpg.Connection, orgs: list[str]) -> list[str]:
    rows = await conn.fetch("SELECT event_id FROM kanban_activity_log WHERE chain_key = any($1::text[])", orgs)
    return [r["event_id"] for r in rows]


async def verify_over_http(url: str, token: str, org: str) -> dict:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{url}/v1/audit/verify", params={"organization_id": org}, headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


class BoardsDriver:
    """Random real mutations through boards' REST API (which publishes the events audit consumes)."""

    def __init__(self, client, headers: dict[str, str], rng: random.Random) -> None:
        self.client, self.headers, self.rng = client, headers, rng
        self.boards: dict[str, dict] = {}  # board id -> {"org", "columns", "cards"}

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = await self.client.request(method, path, json=body, headers=self.headers)
        answer = await response.json()
        assert response.status in (200, 201), (method, path, answer)
        return answer

    async def create_board(self, org: str) -> None:
        body = {"organization_id": org, "name": "Audit run", "columns": ["To do", "Doing", "Done"]}
        snapshot = await self._call("POST", "/v1/boards", body)
        columns = [c["id"] for c in snapshot["columns"]]
        self.boards[snapshot["board"]["id"]] = {"org": org, "columns": columns, "cards": []}

    async def mutate(self) -> None:
        rng = self.rng
        board_id = rng.choice(list(self.boards))
        board = self.boards[board_id]
        op = rng.choices(["create", "move", "update", "comment", "assign", "delete"], [35, 25, 15, 10, 10, 5])[0]
        if op == "create" or not board["cards"]:
            body = {"column_id": rng.choice(board["columns"]), "title": f"card {rng.randrange(1000)}"}
            card = (await self._call("POST", f"/v1/boards/{board_id}/cards", body))["task"]
            board["cards"].append(card["id"])
            return
        card = rng.choice(board["cards"])
        if op == "move":
            body = {"to_column_id": rng.choice(board["columns"]), "position": rng.randrange(4)}
            await self._call("POST", f"/v1/cards/{card}/move", body)
        elif op == "update":
            await self._call("PATCH", f"/v1/cards/{card}", {"title": f"renamed {rng.randrange(1000)}"})
        elif op == "comment":
            await self._call("POST", f"/v1/cards/{card}/comments", {"body": "looks good"})
        elif op == "assign":
            await self._call("PUT", f"/v1/cards/{card}/assignees", {"assignee_ids": ["u-1"]})
        else:
            await self._call("DELETE", f"/v1/cards/{card}")
            board["cards"].remove(card)

    async def events(self) -> list[dict]:
        """Every event boards committed (its outbox is the replay log), from its own REST API."""
        found = []
        for board_id in self.boards:
            answer = await self._call("GET", f"/v1/boards/{board_id}/events?since_seq=0&limit=1000")
            found += answer["events"]
        return found


@pytest.mark.slow
async def test_kill_9_in_the_middle_of_random_board_mutations(
    audit_nats, service_process, make_app, aiohttp_client, publisher, db, jwks, tokens, start_directory
):
    """Real mutations through boards' REST; the audit process is SIGKILLed mid-stream and restarted.
    Afterwards every event boards committed has exactly one audit row and every chain verifies."""
    seed = int(os.environ.get("AUDIT_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    boards_app = make_app("boards", nats_url=audit_nats.url, auth_jwks_url=jwks.url, relay_interval=0.5)
    boards_client = await aiohttp_client(boards_app)
    orgs = [new_id("org") for _ in range(3)]
    directory = await start_directory(nats_url=audit_nats.url)  # boards checks assignees with auth
    for org in orgs:
        await directory.add(org, "u-1", "owner")
    driver = BoardsDriver(
        boards_client, {"Authorization": "Bearer " + jwks.token("u-1", *((o, "owner") for o in orgs))}, rng
    )
    proc = service_process("audit", start=False, NATS_URL=audit_nats.url, AUDIT_ACK_WAIT="2", AUDIT_FETCH_BATCH="20")
    await asyncio.to_thread(proc.start)
    for org in orgs:
        for _ in range(2):
            await driver.create_board(org)

    total = 260
    redelivered: list[str] = []

    async def produce() -> None:
        for n in range(total):
            await driver.mutate()
            if n % 40 == 39:  # an already published event again, past the dedupe window (new Nats-Msg-Id)
                event = rng.choice(await driver.events())
                org = driver.boards[event["board_id"]]["org"]
                subject = f"kanban.events.{org}.{event['board_id']}.{event['event_type']}"
                await publisher.raw(subject, orjson.dumps(event), msg_id=new_id("again"))
                redelivered.append(event["event_id"])
            await asyncio.sleep(rng.uniform(0, 0.004))

    producing = asyncio.create_task(produce())
    at_kill = await wait_until(lambda: count_rows(db, *orgs), lambda n: n >= total // 4, timeout=30)
    proc.kill()  # SIGKILL: no shutdown hooks, fetched messages unacked, maybe a transaction cut short
    await asyncio.sleep(rng.uniform(0.1, 0.6))
    await asyncio.to_thread(proc.start)
    await producing

    committed = await driver.events()
    expected = {e["event_id"] for e in committed}
    assert len(expected) == len(committed) >= total + len(driver.boards), f"seed {seed}"
    assert at_kill < len(expected) and redelivered, f"seed {seed}: the kill came after everything was stored"
    await wait_until(lambda: count_rows(db, *orgs), lambda n: n >= len(expected), timeout=30)
    await wait_until(lambda: consumer_settled(publisher.js, BOARD_EVENTS_STREAM, "audit-board-events"), timeout=30)

    stored = await stored_event_ids(db, orgs)
    assert len(stored) == len(set(stored)) == len(expected), f"seed {seed}"
    assert set(stored) == expected, f"seed {seed}"
    for org in orgs:
        result = await verify_over_http(proc.url, tokens.service_role(), org)
        assert result["ok"], (seed, result)
        boards_of_org = {b for b, info in driver.boards.items() if info["org"] == org}
        assert result["rows"] == sum(1 for e in committed if e["board_id"] in boards_of_org)


@pytest.mark.slow
async def test_postgres_outage_loses_nothing(
    private_postgres, audit_settings, make_app, aiohttp_client, publisher, tokens
):
    client = await aiohttp_client(
        make_app("audit", **audit_settings, database_url=private_postgres.url, audit_fetch_batch=5)
    )
    org, board = new_id("org"), new_id("board")

    async def count() -> int:
        conn = await asyncpg.connect(private_postgres.url)
        try:
            return await conn.fetchval("SELECT count(*) FROM audit.kanban_activity_log WHERE chain_key = $1", org)
        finally:
            await conn.close()

    for n in range(10):
        await publisher.board(org, board_event(org, board, task_id=f"before-{n}"))
    await wait_until(count, lambda n: n == 10)

    await asyncio.to_thread(private_postgres.stop)
    for n in range(30):
        await publisher.board(org, board_event(org, board, task_id=f"during-{n}"))

    async def families() -> dict:
        text = await (await client.get("/metrics")).text()
        return {f.name: f for f in text_string_to_metric_families(text)}

    def retrying_with_lag(found: dict) -> bool:
        retried = sum(s.value for s in found["audit_events_retried"].samples if s.name.endswith("_total"))
        lag = sum(s.value for s in found["audit_consumer_lag_messages"].samples)
        return retried > 0 and lag > 0

    await wait_until(families, retrying_with_lag, timeout=10)
    ready = await client.get("/readyz")
    assert ready.status == 503

    await asyncio.to_thread(private_postgres.start)
    await wait_until(count, lambda n: n == 40, timeout=40)
    await wait_until(lambda: consumer_settled(publisher.js, BOARD_EVENTS_STREAM, "audit-board-events"))
    assert await count() == 40
    verify = await client.get(
        "/v1/audit/verify",
        params={"organization_id": org},
        headers={"Authorization": f"Bearer {tokens.service_role()}"},
    )
    assert (await verify.json())["ok"] is True


async def test_nats_restart_and_a_deleted_consumer_are_survived(audit_client, audit_nats, publisher, db):
    org, board = new_id("org"), new_id("board")
    await publisher.board(org, board_event(org, board, task_id="before"))
    await wait_until(lambda: count_rows(db, org), lambda n: n == 1)

    await asyncio.to_thread(audit_nats.stop)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(audit_nats.start)  # same storage: the stream and the durable survive
    await wait_until(lambda: asyncio.sleep(0, publisher.nc.is_connected), timeout=15)
    await publisher.board(org, board_event(org, board, task_id="after-restart"))
    await wait_until(lambda: count_rows(db, org), lambda n: n == 2, timeout=20)

    await publisher.js.delete_consumer(BOARD_EVENTS_STREAM, "audit-board-events")
    await publisher.board(org, board_event(org, board, task_id="after-delete"))
    await wait_until(lambda: count_rows(db, org), lambda n: n == 3, timeout=20)
    # The recreated durable replays the stream from the start: all duplicates, nothing written twice.
    await wait_until(lambda: consumer_settled(publisher.js, BOARD_EVENTS_STREAM, "audit-board-events"))
    assert await count_rows(db, org) == 3

    refused = Envelope("auth_failed", {"organization_id": org, "reason": "expired"}, None)
    await publisher.security(security_event("auth", "expired"), refused)
    await wait_until(lambda: count_rows(db, org), lambda n: n == 4)
    await wait_until(lambda: consumer_settled(publisher.js, SECURITY_STREAM, "audit-security-events"))


@pytest.mark.slow
async def test_sigterm_acks_what_it_committed_and_exits_cleanly(audit_nats, service_process, publisher, db):
    proc = service_process("audit", start=False, NATS_URL=audit_nats.url, AUDIT_FETCH_BATCH="50")
    await asyncio.to_thread(proc.start)
    org, board = new_id("org"), new_id("board")
    for n in range(200):
        await publisher.board(org, board_event(org, board, task_id=f"card-{n}"))
    await wait_until(lambda: count_rows(db, org), lambda n: n >= 1)

    code = await asyncio.to_thread(proc.stop)  # SIGTERM
    assert code == 0, proc.log_path.read_text()[-2000:]
    info = await publisher.js.consumer_info(BOARD_EVENTS_STREAM, "audit-board-events")
    stored = await count_rows(db, org)
    assert info.num_ack_pending == 0, "a committed message was left unacknowledged"
    assert stored + info.num_pending == 200
