"""One ``task_moved`` is one trace: realtime → boards → Postgres → NATS → audit, and back to the
realtime broadcast; its correlation id is in the envelope, every service's logs and the audit row.

The four services run as real ``liveboard serve`` processes writing finished spans to one JSON
lines file (``LIVEBOARD_TRACE_FILE``) and JSON logs to their own files.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import socketio

pytestmark = pytest.mark.slow
NS = "/workspace"


def read_json_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_one_move_is_one_trace_across_every_service(service_process, tokens, database_url, tmp_path):
    spans_file = tmp_path / "spans.jsonl"
    common = {"LIVEBOARD_TRACE_FILE": str(spans_file), "LOG_LEVEL": "debug"}
    auth = service_process("auth", **common)
    boards = service_process("boards", AUTH_SERVICE_URL=auth.url, **common)
    audit = service_process("audit", AUTH_SERVICE_URL=auth.url, **common)
    realtime = service_process("realtime", AUTH_SERVICE_URL=auth.url, BOARDS_SERVICE_URL=boards.url, **common)

    alice_id = str(uuid.uuid4())
    alice = tokens.user(alice_id, "alice@example.com")
    org = "org-" + uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {tokens.service_role()}"}
        for url, body in [
            (f"{auth.url}/v1/organizations", {"id": org, "name": org}),
            (f"{auth.url}/v1/organizations/{org}/members/{alice_id}", {"role": "owner"}),
        ]:
            method = http.put if "/members/" in url else http.post
            async with method(url, json=body, headers=admin) as response:
                assert response.status in (200, 201), await response.text()
        async with http.post(
            f"{boards.url}/v1/boards",
            headers={"Authorization": f"Bearer {alice}"},
            json={"organization_id": org, "name": "Traced", "columns": ["A", "B"]},
        ) as response:
            assert response.status == 201, await response.text()
            snapshot = await response.json()
        board_id = snapshot["board"]["id"]
        async with http.post(
            f"{boards.url}/v1/boards/{board_id}/cards",
            headers={"Authorization": f"Bearer {alice}"},
            json={"column_id": snapshot["columns"][0]["id"], "title": "follow me"},
        ) as response:
            card = (await response.json())["task"]

    client = socketio.AsyncClient(reconnection=False)
    moved: list[dict] = []
    client.on("task_moved", lambda data: moved.append(data), namespace=NS)
    await client.connect(realtime.url, namespaces=[NS], auth={"token": alice}, transports=["websocket"])
    try:
        assert (await client.call("join_board", {"board_id": board_id, "organization_id": org}, namespace=NS))["ok"]
        trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
        correlation_id = "corr-trace-" + uuid.uuid4().hex[:8]
        ack = await client.call(
            "task_moved",
            {
                "board_id": board_id,
                "task_id": card["id"],
                "from_column_id": card["column_id"],
                "to_column_id": snapshot["columns"][1]["id"],
                "position": 0,
                "correlation_id": correlation_id,
                "traceparent": f"00-{trace_id}-{client_span}-01",
            },
            namespace=NS,
        )
        assert ack["ok"], ack
        await eventually(lambda: asyncio.sleep(0, result=moved), timeout=5)
    finally:
        await client.disconnect()
    assert moved and moved[0]["correlation_id"] == correlation_id

    conn = await asyncpg.connect(database_url)
    try:
        row = await eventually(
            lambda: conn.fetchrow(
                "SELECT trace_id, correlation_id FROM audit.kanban_activity_log WHERE event_id = $1",
                ack["data"]["event_id"],
            )
        )
    finally:
        await conn.close()
    assert row is not None, "the move never reached the audit log"
    assert row["trace_id"] == trace_id and row["correlation_id"] == correlation_id

    def trace_spans() -> list[dict]:
        return [s for s in read_json_lines(spans_file) if s["trace_id"] == trace_id]

    async def complete() -> bool:
        names = {(s["service"], s["kind"]) for s in trace_spans()}
        return {("realtime", "SERVER"), ("boards", "SERVER"), ("audit", "CONSUMER"), ("realtime", "CONSUMER")} <= names

    await eventually(complete, timeout=10)
    spans = trace_spans()
    by_id = {s["span_id"]: s for s in spans}
    services = {s["service"] for s in spans}
    assert {"realtime", "boards", "audit"} <= services, services

    def one(service: str, predicate) -> dict:
        found = [s for s in spans if s["service"] == service and predicate(s)]
        assert found, (service, [(s["service"], s["name"], s["kind"]) for s in spans])
        return found[0]

    socket_span = one("realtime", lambda s: s["name"] == "socket task_moved")
    assert socket_span["parent_span_id"] == client_span  # continues the client's traceparent
    request = one("realtime", lambda s: s["kind"] == "CLIENT" and "boards.v1.task_moved" in s["name"])
    served = one("boards", lambda s: s["name"] == "boards.v1.task_moved")
    assert served["parent_span_id"] == request["span_id"]
    query = one("boards", lambda s: s["attributes"].get("db.system") in ("postgresql", "postgres"))
    assert query["trace_id"] == trace_id
    publish = one("boards", lambda s: s["kind"] == "PRODUCER" and s["name"].startswith("kanban.events."))
    stored = one("audit", lambda s: s["kind"] == "CONSUMER")
    delivered = one("realtime", lambda s: s["kind"] == "CONSUMER" and s["name"] == "board_event deliver")
    assert stored["parent_span_id"] == publish["span_id"]
    assert delivered["parent_span_id"] == publish["span_id"]
    for span in spans:  # one tree: every parent is in the trace (the root's parent is the client's span)
        assert span["parent_span_id"] in by_id or span["parent_span_id"] == client_span, span

    for proc in (realtime, boards, audit):
        lines = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("trace_id") == trace_id]
        assert mine, f"{proc.service} logged nothing for the trace"
        assert all(line["correlation_id"] == correlation_id for line in mine), (proc.service, mine)
        assert all(line["service"] == proc.service for line in mine)
