"""What must hold after every fault, checked on a quiet system (``Workload.pause()`` first).

1. Every operation acked ``ok`` is in Postgres: its ``client_op_id`` is remembered with the
   result it was acked with, and the event it names is a committed event of its board.
2. Per board, event ``seq`` is exactly 1..N and the board's ``seq`` is N.
3. No ``client_op_id`` took effect twice: the events carrying an operation's correlation id (the
   workload makes it the op id) all come from one transaction.
4. Every connected client's stream per board had no gap or duplicate since its last join (the
   clients record those as they happen), and its view equals the REST snapshot.
5. Audit holds exactly one row per committed event, and ``/v1/audit/verify`` passes.

Each check raises ``AssertionError`` saying what broke, naming the fault it followed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import Any

import aiohttp
import asyncpg

from libs.common.subjects import BOARD_EVENTS_STREAM
from tests.boards.replay import check_positions
from tests.conftest import Tokens

from .stack import ChaosStack
from .workload import ACCEPTED_REFUSALS, Workload, call


async def check_all(
    fault: str,
    stack: ChaosStack,
    workload: Workload,
    org: str,
    boards: list[str],
    tokens: Tokens,
    session: aiohttp.ClientSession,
) -> dict[str, Any]:
    """Every invariant, after ``fault``; returns counts for the report."""
    conn = await asyncpg.connect(stack.postgres.url)
    try:
        events = await _events(conn, boards)
        _seqs_are_gapless(fault, events, await _board_seqs(conn, boards))
        await _acked_ops_are_stored(fault, conn, workload, events)
        _no_op_twice(fault, events)
        _no_unexpected_refusals(fault, workload)
        await _clients_match_snapshots(fault, stack, workload, boards, events, session)
        audited = await _audit_has_each_event_once(fault, conn, events)
    finally:
        await conn.close()
    await _chain_verifies(fault, stack, org, tokens, session)
    return {"events": sum(len(e) for e in events.values()), "audited": audited}


async def _events(conn: asyncpg.Connection, boards: list[str]) -> dict[str, list[asyncpg.Record]]:
    rows = await conn.fetch(
        """SELECT board_id, seq, event_id::text AS event_id, event_type, correlation_id, created_at
           FROM boards.kanban_board_events WHERE board_id = any($1::text[]) ORDER BY board_id, seq""",
        boards,
    )
    by_board: dict[str, list[asyncpg.Record]] = {board: [] for board in boards}
    for row in rows:
        by_board[row["board_id"]].append(row)
    return by_board


async def _board_seqs(conn: asyncpg.Connection, boards: list[str]) -> dict[str, int]:
    rows = await conn.fetch("SELECT id, seq FROM boards.kanban_boards WHERE id = any($1::text[])", boards)
    return {row["id"]: row["seq"] for row in rows}


def _seqs_are_gapless(fault: str, events: dict[str, list[asyncpg.Record]], seqs: dict[str, int]) -> None:
    for board, rows in events.items():
        got = [row["seq"] for row in rows]
        assert got == list(range(1, len(got) + 1)), f"after {fault}: {board} event seqs are not 1..N: {got}"
        assert seqs[board] == len(got), f"after {fault}: {board} is at seq {seqs[board]} with {len(got)} events"


async def _acked_ops_are_stored(
    fault: str, conn: asyncpg.Connection, workload: Workload, events: dict[str, list[asyncpg.Record]]
) -> None:
    committed = {row["event_id"]: row for rows in events.values() for row in rows}
    acked = [op for op in workload.ops if op.outcome == "ok"]
    stored = await conn.fetch(
        """SELECT user_id, client_op_id, result FROM boards.kanban_client_ops
           WHERE client_op_id = any($1::text[])""",
        [op.op_id for op in acked],
    )
    remembered = {(row["user_id"], row["client_op_id"]): json.loads(row["result"]) for row in stored}
    for op in acked:
        result = remembered.get((op.user_id, op.op_id))
        assert result is not None, f"after {fault}: acked {op.event} {op.op_id} is not in Postgres"
        assert result["result"] == op.result, f"after {fault}: {op.op_id} acked {op.result}, stored {result}"
        event_id = op.result.get("event_id")
        if event_id is not None:  # a no-op answer names no event
            row = committed.get(event_id)
            assert row is not None, f"after {fault}: acked {op.event} {op.op_id}: event {event_id} not committed"
            assert row["board_id"] == op.board_id and row["seq"] == op.result["seq"], (
                f"after {fault}: {op.op_id} acked seq {op.result['seq']}, committed as {dict(row)}"
            )


def _no_op_twice(fault: str, events: dict[str, list[asyncpg.Record]]) -> None:
    """One transaction per operation: same ``created_at`` and consecutive seqs for its events."""
    by_op: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for rows in events.values():
        for row in rows:
            if row["correlation_id"] and row["correlation_id"].startswith("op-"):
                by_op[row["correlation_id"]].append(row)
    for op_id, rows in by_op.items():
        times = {row["created_at"] for row in rows}
        seqs = [row["seq"] for row in rows]
        assert len(times) == 1 and seqs == list(range(seqs[0], seqs[0] + len(seqs))), (
            f"after {fault}: {op_id} took effect more than once: {[dict(r) for r in rows]}"
        )


def _no_unexpected_refusals(fault: str, workload: Workload) -> None:
    refused = [
        (op.event, op.outcome, op.result)
        for op in workload.ops
        if op.outcome not in (None, "ok") and op.outcome not in ACCEPTED_REFUSALS
    ]
    assert not refused, f"after {fault}: operations refused for no reason of their own: {refused[:10]}"


async def _clients_match_snapshots(
    fault: str,
    stack: ChaosStack,
    workload: Workload,
    boards: list[str],
    events: dict[str, list[asyncpg.Record]],
    session: aiohttp.ClientSession,
    timeout: float = 20.0,
) -> None:
    latest = {board: len(rows) for board, rows in events.items()}
    deadline = time.monotonic() + timeout
    for client in workload.clients:
        assert not client.violations, f"after {fault}: {client.name}'s streams broke: {client.violations[:10]}"
        while not (
            client.connected.is_set()
            and all(not client.views[b].joining and client.views[b].seq == latest[b] for b in boards)
        ):
            if time.monotonic() > deadline:
                seen = {b: (client.views[b].seq, client.views[b].joining) for b in boards}
                raise AssertionError(
                    f"after {fault}: {client.name} (on {client.replica}) never caught up: {seen} vs {latest}"
                )
            await asyncio.sleep(0.05)
        assert not client.violations, f"after {fault}: {client.name}'s streams broke: {client.violations[:10]}"
        for board in boards:
            status, snapshot = await call(session, "GET", f"{stack.url('boards')}/v1/boards/{board}", client.user.token)
            assert status == 200, snapshot
            view = client.views[board].replay
            assert view is not None
            assert view.snapshot() == snapshot, f"after {fault}: {client.name}'s view of {board} differs from REST"
            check_positions(snapshot)


async def _audit_has_each_event_once(
    fault: str, conn: asyncpg.Connection, events: dict[str, list[asyncpg.Record]], timeout: float = 30.0
) -> int:
    """Audit catches up within ``timeout`` (redelivery after its 2 s ack wait included)."""
    wanted = {row["event_id"] for rows in events.values() for row in rows}
    deadline = time.monotonic() + timeout
    while True:
        rows = await conn.fetch(
            """SELECT event_id, count(*) AS n FROM audit.kanban_activity_log
               WHERE stream = $1 AND board_id = any($2::text[]) GROUP BY event_id""",
            BOARD_EVENTS_STREAM,
            list(events),
        )
        counts = {row["event_id"]: row["n"] for row in rows}
        extra = set(counts) - wanted
        assert not extra, f"after {fault}: audit holds events Postgres never committed: {sorted(extra)[:5]}"
        assert all(n == 1 for n in counts.values()), f"after {fault}: audit stored an event twice"
        if set(counts) == wanted:
            return len(counts)
        if time.monotonic() > deadline:
            missing = wanted - set(counts)
            raise AssertionError(f"after {fault}: audit is missing {len(missing)} of {len(wanted)} events")
        await asyncio.sleep(0.2)


async def _chain_verifies(
    fault: str, stack: ChaosStack, org: str, tokens: Tokens, session: aiohttp.ClientSession
) -> None:
    status, body = await call(
        session, "GET", f"{stack.url('audit')}/v1/audit/verify?organization_id={org}", tokens.service_role()
    )
    assert status == 200 and body["ok"], f"after {fault}: the audit chain does not verify: {status} {body}"
