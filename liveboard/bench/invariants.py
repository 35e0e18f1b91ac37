"""What must hold after a soak (or a fault), checked on a quiet system (``Workload.pause()`` first),
through the public REST only — so it works against any deployment the bench has the JWT secret of.

1. Every operation acked ``ok`` is committed: the event its ack names is, in Postgres (boards'
   event feed), the event at that ``seq`` of its board and carries the operation's id.
2. Per board, event ``seq`` is exactly 1..N and the board's ``seq`` is N.
3. No ``client_op_id`` took effect twice: at most one event of the operation's own type carries
   its id (the workload makes the correlation id the op id), and its events have consecutive seqs.
4. No operation was refused for a reason of the server's (only ``not_found``: another client
   deleted the card first) and none is left unanswered.
5. Every client's stream per board had no gap or duplicate since its last join (the clients record
   those as they happen), and its view equals the REST snapshot.
6. Audit holds exactly one row per committed event, and ``/v1/audit/verify`` passes.

Each check collects what broke (naming the board, the op, the client) instead of stopping at the
first problem: a soak's summary says every invariant that broke.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from libs.common.subjects import BOARD_EVENTS_STREAM

from .boardview import position_problems
from .workload import ACCEPTED_REFUSALS, Workload, call

NAMES = {
    "acked_committed": "every acked op is committed (its event, its seq, its id)",
    "seq_gapless": "seq 1..N on every board",
    "applied_once": "no client_op_id applied twice",
    "no_refusals": "no op refused or left unanswered",
    "clients_match": "every client's stream gapless, its view = REST snapshot",
    "audit_once": "one audit row per committed event",
    "chain_verifies": "audit chain verifies",
    "recovered": "every service ready again after each fault",
}
#: What ``check_all`` checks (``recovered`` is the soak's own, measured at each fault).
CHECKED = tuple(key for key in NAMES if key != "recovered")

#: Problems kept per check (the count is always complete).
KEEP = 20


@dataclass
class Check:
    key: str
    problems: list[str] = field(default_factory=list)
    count: int = 0

    @property
    def name(self) -> str:
        return NAMES[self.key]

    @property
    def held(self) -> bool:
        return self.count == 0

    def fail(self, problem: str) -> None:
        self.count += 1
        if len(self.problems) < KEEP:
            self.problems.append(problem)


@dataclass
class Verdict:
    checks: list[Check]
    events: int = 0
    audited: int = 0

    @property
    def held(self) -> bool:
        return all(check.held for check in self.checks)

    def broken(self) -> list[Check]:
        return [check for check in self.checks if not check.held]


@dataclass
class Where:
    """The deployment's REST addresses and the tokens the checks read with."""

    boards_url: str
    audit_url: str
    organization_id: str
    boards: list[str]
    reader_token: str  # a member of the organization (reads boards and events)
    service_key: str  # a service_role key (reads audit)


async def board_events(session: aiohttp.ClientSession, where: Where, board: str) -> tuple[list[dict[str, Any]], int]:
    """Every event of ``board`` from boards' REST feed, and the board's current seq."""
    events: list[dict[str, Any]] = []
    seq = 0
    while True:
        status, page = await call(
            session,
            "GET",
            f"{where.boards_url}/v1/boards/{board}/events?since_seq={events[-1]['seq'] if events else 0}&limit=1000",
            where.reader_token,
        )
        if status != 200:
            raise RuntimeError(f"GET events of {board} -> {status} {page}")
        events += page["events"]
        seq = page["seq"]
        if not page.get("has_more") or not page["events"]:
            return events, seq


async def audit_rows(session: aiohttp.ClientSession, where: Where, board: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        url = f"{where.audit_url}/v1/audit/events?organization_id={where.organization_id}&board_id={board}&limit=1000"
        status, page = await call(session, "GET", url + (f"&cursor={cursor}" if cursor else ""), where.service_key)
        if status != 200:
            raise RuntimeError(f"GET audit events of {board} -> {status} {page}")
        rows += page["events"]
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return rows


async def check_all(
    workload: Workload, where: Where, session: aiohttp.ClientSession, *, timeout: float = 60.0
) -> Verdict:
    """Every invariant; ``timeout`` bounds the waits for clients and audit to catch up."""
    checks = {key: Check(key) for key in CHECKED}
    events: dict[str, list[dict[str, Any]]] = {}
    for board in where.boards:
        events[board], seq = await board_events(session, where, board)
        got = [event["seq"] for event in events[board]]
        if got != list(range(1, len(got) + 1)):
            wrong = next(i for i, s in enumerate(got, 1) if s != i)
            checks["seq_gapless"].fail(f"{board}: seq {got[wrong - 1]} at position {wrong} of {len(got)}")
        if seq != len(got):
            checks["seq_gapless"].fail(f"{board}: at seq {seq} with {len(got)} events")
    _acked_committed(checks["acked_committed"], workload, events)
    _applied_once(checks["applied_once"], workload, events)
    _no_refusals(checks["no_refusals"], workload)
    await _clients_match(checks["clients_match"], workload, where, events, session, timeout)
    audited = await _audit_once(checks["audit_once"], where, events, session, timeout)
    status, body = await call(
        session, "GET", f"{where.audit_url}/v1/audit/verify?organization_id={where.organization_id}", where.service_key
    )
    if status != 200 or not body.get("ok"):
        checks["chain_verifies"].fail(f"verify -> {status} {body}")
    return Verdict(list(checks.values()), sum(len(e) for e in events.values()), audited)


def _acked_committed(check: Check, workload: Workload, events: dict[str, list[dict[str, Any]]]) -> None:
    for op in workload.ops:
        if op.outcome != "ok":
            continue
        event_id = op.result.get("event_id") if isinstance(op.result, dict) else None
        if event_id is None:
            continue  # a no-op answer names no event
        seq = op.result.get("seq")
        stream = events.get(op.board_id, [])
        event = stream[seq - 1] if isinstance(seq, int) and 0 < seq <= len(stream) else None
        if event is None or event.get("event_id") != event_id:
            check.fail(f"acked {op.event} {op.op_id} (seq {seq}, event {event_id}) is not that committed event")
        elif event.get("correlation_id") != op.op_id or event.get("event_type") != op.event:
            check.fail(f"{op.op_id}: seq {seq} is {event.get('event_type')} of {event.get('correlation_id')}")


def _applied_once(check: Check, workload: Workload, events: dict[str, list[dict[str, Any]]]) -> None:
    kinds = {op.op_id: op.event for op in workload.ops}
    by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for stream in events.values():
        for event in stream:
            if event.get("correlation_id") in kinds:
                by_op[event["correlation_id"]].append(event)
    for op_id, found in by_op.items():
        own = sum(1 for event in found if event["event_type"] == kinds[op_id])
        seqs = [event["seq"] for event in found]
        if own > 1 or seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            check.fail(f"{op_id} ({kinds[op_id]}) took effect more than once: seqs {seqs}")


def _no_refusals(check: Check, workload: Workload) -> None:
    for op in workload.ops:
        if op.outcome is None:
            check.fail(f"{op.event} {op.op_id} never answered (tried for {op.retried_for})")
        elif op.outcome != "ok" and op.outcome not in ACCEPTED_REFUSALS:
            check.fail(f"{op.event} {op.op_id} refused {op.outcome}: {op.result}")


async def _clients_match(
    check: Check,
    workload: Workload,
    where: Where,
    events: dict[str, list[dict[str, Any]]],
    session: aiohttp.ClientSession,
    timeout: float,
) -> None:
    latest = {board: len(stream) for board, stream in events.items()}
    deadline = time.monotonic() + timeout
    for client in workload.clients:
        while not (
            client.connected.is_set()
            and all(not client.views[b].joining and client.views[b].seq == latest[b] for b in where.boards)
        ):
            if time.monotonic() > deadline:
                seen = {b: (client.views[b].seq, client.views[b].joining) for b in where.boards}
                check.fail(f"{client.name} (on {client.replica}) never caught up: {seen} vs {latest}")
                break
            await asyncio.sleep(0.05)
        for violation in client.violations:
            check.fail(violation)
        for board in where.boards:
            status, snapshot = await call(session, "GET", f"{where.boards_url}/v1/boards/{board}", client.user.token)
            view = client.views[board].replay
            if status != 200 or view is None:
                check.fail(f"{client.name}: snapshot of {board} -> {status}, view {'none' if view is None else 'ok'}")
                continue
            if view.snapshot() != snapshot:
                check.fail(
                    f"{client.name}'s view of {board} (seq {view.seq}) differs from REST (seq {snapshot['seq']})"
                )
            for problem in position_problems(snapshot):
                check.fail(f"{board}: {problem}")


async def _audit_once(
    check: Check,
    where: Where,
    events: dict[str, list[dict[str, Any]]],
    session: aiohttp.ClientSession,
    timeout: float,
) -> int:
    """Audit catches up within ``timeout`` (redelivery after its ack wait included)."""
    wanted = {event["event_id"] for stream in events.values() for event in stream}
    deadline = time.monotonic() + timeout
    while True:
        counts: Counter[str] = Counter()
        for board in where.boards:
            for row in await audit_rows(session, where, board):
                if row.get("stream") == BOARD_EVENTS_STREAM and row.get("event_id"):
                    counts[row["event_id"]] += 1
        extra = set(counts) - wanted
        twice = [event_id for event_id, n in counts.items() if n > 1]
        if extra or twice or set(counts) == wanted or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for event_id in sorted(extra):
        check.fail(f"audit holds event {event_id}, which was never committed")
    for event_id in twice:
        check.fail(f"audit stored event {event_id} {counts[event_id]} times")
    missing = wanted - set(counts)
    if missing:
        check.fail(
            f"audit is missing {len(missing)} of {len(wanted)} events after {timeout:g}s, e.g. {sorted(missing)[:3]}"
        )
    return len(counts)
