"""``liveboard bench soak``: mixed traffic for minutes, faults meanwhile, then every invariant.

Socket clients (python-socketio, as a browser's would be) on several boards create, move, edit,
assign, comment and delete cards the whole time, each operation with its own ``client_op_id`` and
re-sent with the same id when its ack is lost or says ``unavailable``; now and then a client
leaves a board and joins it again with ``since_seq``, or drops its socket and reconnects. The
load is ``liveboard/bench/workload.py``, the same as the chaos suite's.

With ``--start-stack`` the bench runs the whole stack itself (``soakstack.py``: two realtime
replicas) and, every ``--fault-every`` seconds, injects the next fault of a cycle — ``kill -9``
of boards, audit, one realtime replica or the other, a nats-server restart, a Postgres restart —
while operations are in flight, and times how long until every service is ready again and
operations are acked again. Against a running deployment (``--realtime-url``, comma-separated
for several replicas, ``--boards-url``, ``--auth-url``, ``--audit-url``) it injects nothing.

At the end the load is paused (every operation sent gets its final answer) and the invariants of
``invariants.py`` are checked through the public REST. The summary table says what was
attempted, acked and retried, which faults fired and how long recovery took, and which
invariants broke; the exit status is 1 when any did (2 when the deployment refused the set-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from . import faults
from .invariants import NAMES, Check, Verdict, Where, check_all
from .report import Report
from .target import BenchSetupError, Fixtures, Target, credentials
from .workload import User, Workload, WorkloadClient

#: The faults, in the order they cycle (the stack's own processes only).
CYCLE: list[tuple[str, faults.Fault]] = [
    ("kill_boards", faults.kill_boards),
    ("kill_realtime_1", faults.kill_realtime),
    ("restart_nats", faults.restart_nats),
    ("kill_audit", faults.kill_audit),
    ("restart_postgres", faults.restart_postgres),
    ("kill_realtime_2", faults.kill_other_realtime),
]
#: Seconds every service has to answer /readyz again after a fault (else an invariant broke).
RECOVERY_LIMIT = 60.0
#: No fault in the last seconds of the run: the load must run on after the last one.
QUIET_TAIL = 5.0


def configure(modes: Any) -> argparse.ArgumentParser:
    help_ = "mixed traffic for minutes with faults (own stack), then every invariant; non-zero exit if one broke"
    p = modes.add_parser("soak", help=help_, description=help_)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="how long the traffic runs (default 1)")
    length.add_argument("--seconds", type=float, default=None, help="the same in seconds (short runs, tests)")
    p.add_argument("--clients", type=int, default=6, help="socket clients (one user each), spread over the replicas")
    p.add_argument("--boards", type=int, default=3, help="boards every client joins")
    p.add_argument(
        "--audit-url", default=os.environ.get("LIVEBOARD_AUDIT_URL", "http://127.0.0.1:8003"), help="audit service"
    )
    p.add_argument(
        "--fault-every",
        type=float,
        default=60.0,
        help="seconds between faults (only with --start-stack; 0 = none)",
    )
    p.add_argument("--no-faults", action="store_true", help="inject nothing, even into a stack of our own")
    p.add_argument(
        "--faults",
        default=",".join(name for name, _ in CYCLE),
        help="the faults to cycle through, comma-separated (default: all of them, in this order)",
    )
    p.add_argument("--churn", type=float, default=0.03, help="chance per operation of a leave/re-join or reconnect")
    p.add_argument("--seed", type=int, default=15, help="the workload's random seed")
    p.add_argument(
        "--keep-logs",
        type=Path,
        default=None,
        help="copy the started stack's service logs here (always kept in a temp folder when an invariant broke)",
    )
    return p


def duration_of(args: argparse.Namespace) -> float:
    if args.seconds is not None:
        return max(1.0, min(args.seconds, 24 * 3600))
    return max(1.0, min((args.minutes if args.minutes is not None else 1.0) * 60, 24 * 3600))


def main(args: argparse.Namespace) -> int:
    from .stack import StackOptions, stop_stack

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # The client libraries log every socket the faults and the churn drop ("packet queue is empty,
    # aborting"): expected here, and counted in the summary instead.
    for name in ("engineio.client", "socketio.client"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    stack = None
    result: dict[str, Any] | None = None
    try:
        if args.start_stack:
            from .soakstack import start_soak_stack

            options = StackOptions(fast_path=args.fast_path == "on", loop=args.loop)
            stack, target = start_soak_stack(options)
            replicas = [stack.url("realtime-1"), stack.url("realtime-2")]
            audit_url = stack.url("audit")
        else:
            secret, issuer = credentials(args.jwt_secret, args.issuer)
            replicas = [url.strip().rstrip("/") for url in args.realtime_url.split(",") if url.strip()]
            target = Target(replicas[0], args.auth_url.rstrip("/"), args.boards_url.rstrip("/"), secret, issuer)
            audit_url = args.audit_url.rstrip("/")
        result = _asyncio_run(_soak(args, target, replicas, audit_url, stack))
    except BenchSetupError as exc:
        print(f"liveboard bench soak: {exc}", file=sys.stderr)
        return 2
    finally:
        if stack is not None:
            broken = result is None or not result["held"]
            kept = args.keep_logs or (Path(tempfile.mkdtemp(prefix="liveboard-soak-logs-")) if broken else None)
            if kept is not None:
                stack.stop()  # the logs are complete once the services have stopped
                kept.mkdir(parents=True, exist_ok=True)
                for log in stack.state.glob("*.log"):
                    shutil.copy(log, kept / log.name)
                for log in stack.state.glob("*/*.log"):  # nats-server's, postgres's
                    shutil.copy(log, kept / log.name)
                print(f"liveboard bench soak: service logs in {kept}", file=sys.stderr)
            stop_stack(stack)
    report = render(result)
    report.print()
    if args.json:
        args.json.write_text(orjson.dumps(report.result(), option=orjson.OPT_INDENT_2).decode())
    if not result["held"]:
        broken = [c["name"] for c in result["invariants"] if not c["held"]]
        print(f"liveboard bench soak: INVARIANTS BROKEN: {'; '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"[soak] {text}", file=sys.stderr, flush=True)


async def _soak(
    args: argparse.Namespace, target: Target, replicas: list[str], audit_url: str, stack: Any
) -> dict[str, Any]:
    duration = duration_of(args)
    async with Fixtures(target) as fixtures:
        members = await fixtures.organization(max(1, args.clients))
        boards = [await fixtures.board(cards=4, columns=3) for _ in range(max(1, args.boards))]
        org = fixtures.organization_id
        clients = [
            WorkloadClient(
                f"c{index}",
                User(user.id, user.email, user.token),
                replicas[index % len(replicas) :] + replicas[: index % len(replicas)],
                {board.id: org for board in boards},
            )
            for index, user in enumerate(members)
        ]
        workload = Workload(clients, [user.id for user in members], seed=args.seed, churn=max(0.0, args.churn))
        cycle = _cycle(stack, args)
        recovery = Check("recovered")
        injected: list[dict[str, Any]] = []
        problems: list[str] = []
        workload.start()
        started = time.monotonic()
        _say(
            f"{len(clients)} clients on {len(boards)} boards via {len(replicas)} replica(s) for {duration:g}s; "
            + (f"a fault every {args.fault_every:g}s" if cycle else "no faults")
        )
        try:
            await _drive(workload, stack, cycle, args, started, duration, injected, recovery)
        finally:
            seconds = time.monotonic() - started
            try:
                await workload.pause(timeout=90)
            except AssertionError as exc:
                problems.append(str(exc))
        _say(f"load paused after {seconds:.0f}s; checking invariants")
        where = Where(
            boards_url=target.boards_url,
            audit_url=audit_url,
            organization_id=org,
            boards=[board.id for board in boards],
            reader_token=members[0].token,
            service_key=target.service_key(),
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            verdict = await check_all(workload, where, session, timeout=60)
        try:
            await workload.stop()
        except AssertionError as exc:
            problems.append(str(exc))
        verdict.checks.append(recovery)
        for problem in problems:
            next(c for c in verdict.checks if c.key == "no_refusals").fail(f"workload: {problem[:500]}")
        own = stack is not None
        result = summarize(workload, verdict, injected, seconds, duration, len(replicas), len(boards), own)
        result["fault_every_s"] = args.fault_every if cycle else None
        result["command"] = _command()
        return result


def _command() -> str:
    """This run's command line, as it can be typed again from the repository root."""
    argv = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else ["soak"]
    return " ".join([".venv/bin/liveboard", "bench", *argv])


def _cycle(stack: Any, args: argparse.Namespace) -> list[tuple[str, faults.Fault]]:
    if stack is None or args.no_faults or args.fault_every <= 0:
        return []
    known = dict(CYCLE)
    wanted = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise BenchSetupError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [
        (name, known[name])
        for name in wanted
        if not (name == "restart_nats" and stack.nats is None)
        and not (name == "restart_postgres" and stack.postgres is None)
    ]


async def _drive(
    workload: Workload,
    stack: Any,
    cycle: list[tuple[str, faults.Fault]],
    args: argparse.Namespace,
    started: float,
    duration: float,
    injected: list[dict[str, Any]],
    recovery: Check,
) -> None:
    end = started + duration
    next_fault = started + args.fault_every
    next_note = started + 60
    while (now := time.monotonic()) < end:
        if cycle and now >= next_fault and end - now > QUIET_TAIL:
            name, fault = cycle[len(injected) % len(cycle)]
            try:
                in_flight = await workload.wait_in_flight(timeout=10)
            except AssertionError:
                in_flight = len(workload.in_flight)
            at = time.monotonic()
            entry: dict[str, Any] = {"fault": name, "at_s": round(at - started, 1), "in_flight": in_flight}
            try:
                entry["what"] = await fault(stack, workload)
                ready = await stack.recovered(name, at, RECOVERY_LIMIT)
                slowest = max(ready, key=ready.get)
                entry.update(ready_s=ready[slowest], slowest=slowest, _at=at)
            except Exception as exc:  # a service that never came back is a broken invariant, not a crash
                entry.update(what=entry.get("what", name), ready_s=None, error=f"{type(exc).__name__}: {exc}")
                recovery.fail(f"{name} at {entry['at_s']}s: {entry['error'][:300]}")
            injected.append(entry)
            _say(f"{entry['at_s']:>7}s  {name}: {entry['what']}; ready after {entry.get('ready_s')} s")
            next_fault = time.monotonic() + args.fault_every
        if now >= next_note:
            summary = workload.summary()
            _say(
                f"{now - started:>7.0f}s  {summary['ops']} ops, {summary['outcomes'].get('ok', 0)} acked, "
                f"{summary['retried']} retried, {len(injected)} faults"
            )
            next_note += 60
        await asyncio.sleep(0.2)


def _resumed(workload: Workload, at: float) -> float | None:
    """Seconds from a fault until the first operation sent after it was acked ``ok``."""
    done = [op.finished for op in workload.ops if op.outcome == "ok" and op.started >= at]
    return round(min(done) - at, 2) if done else None


def summarize(
    workload: Workload,
    verdict: Verdict,
    injected: list[dict[str, Any]],
    seconds: float,
    planned: float,
    replicas: int,
    boards: int,
    own_stack: bool,
) -> dict[str, Any]:
    """The run's record (what the table and the JSON line show)."""
    summary = workload.summary()
    for entry in injected:
        at = entry.pop("_at", None)
        entry["ops_resumed_s"] = _resumed(workload, at) if at is not None else None
    attempts = sum(op.attempts for op in workload.ops)
    return {
        "held": verdict.held,
        "seconds": round(seconds, 1),
        "planned_s": planned,
        "clients": len(workload.clients),
        "boards": boards,
        "replicas": replicas,
        "own_stack": own_stack,
        "ops": summary["ops"],
        "acked": summary["outcomes"].get("ok", 0),
        "outcomes": {str(k): v for k, v in summary["outcomes"].items()},
        "retried": summary["retried"],
        "attempts": attempts,
        "retry_reasons": dict(Counter(reason for op in workload.ops for reason in op.retried_for)),
        "by_type": summary["by_type"],
        "reconnects": summary["reconnects"],
        "dropped_on_purpose": summary["dropped_on_purpose"],
        "leaves": summary["leaves"],
        "joins": summary["joins"],
        "events": verdict.events,
        "audited": verdict.audited,
        "faults": injected,
        "invariants": [
            {"key": c.key, "name": c.name, "held": c.held, "broken": c.count, "problems": c.problems}
            for c in verdict.checks
        ],
    }


def _by_fault(injected: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for entry in injected:
        grouped.setdefault(entry["fault"], []).append(entry)
    return grouped


def _spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    return f"median {statistics.median(known):.2f} s, max {max(known):.2f} s"


def render(result: dict[str, Any]) -> Report:
    report = Report("soak")
    report.data.update(result)
    report.add("duration", f"{result['seconds']:g} s (planned {result['planned_s']:g} s)")
    report.add(
        "clients / boards / realtime replicas", f"{result['clients']} / {result['boards']} / {result['replicas']}"
    )
    report.add("ops attempted", result["ops"])
    refused = {k: v for k, v in result["outcomes"].items() if k != "ok"}
    report.add("ops acked ok", result["acked"])
    report.add("ops refused (by code)", refused or "none")
    report.add("ops retried (re-sent with the same id)", f"{result['retried']} ({result['attempts']} sends in all)")
    report.add("retry reasons", result["retry_reasons"] or "none")
    report.add("acked by type", result["by_type"])
    report.add(
        "joins / leaves / reconnects (on purpose)",
        f"{result['joins']} / {result['leaves']} / {result['reconnects']} ({result['dropped_on_purpose']})",
    )
    report.add("events committed / audited", f"{result['events']} / {result['audited']}")
    grouped = _by_fault(result["faults"])
    report.add(
        "faults injected",
        f"{len(result['faults'])} ({', '.join(f'{k} x{len(v)}' for k, v in grouped.items())})"
        if result["faults"]
        else ("none" if result["own_stack"] else "none (not a stack of ours)"),
    )
    for name, entries in grouped.items():
        report.add(
            f"  {name}: ready after",
            f"{_spread([e['ready_s'] for e in entries])}; ops acked again after "
            f"{_spread([e['ops_resumed_s'] for e in entries])}",
        )
    for check in result["invariants"]:
        state = "held" if check["held"] else f"BROKEN ({check['broken']})"
        report.add(f"invariant: {check['name']}", state)
        for problem in check["problems"][:5]:
            report.add("    ", problem)
    broken = [c for c in result["invariants"] if not c["held"]]
    report.add("result", "all invariants held" if not broken else f"{len(broken)} invariant(s) broken: exit status 1")
    return report


def _asyncio_run(coro: Any) -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


__all__ = ["CYCLE", "NAMES", "configure", "main", "render", "summarize"]
