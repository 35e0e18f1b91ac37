"""``liveboard bench capacity|fanout|moves|catchup``: flags, the deployment, the run, the report.

Every run is bounded (counts and seconds have ceilings) and stops by itself. Without
``--start-stack`` it drives the deployment at ``--realtime-url``/``--auth-url``/``--boards-url``
with tokens it mints from the JWT secret; with it, it starts its own embedded stack on free
loopback ports and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

#: Ceilings that keep a mistyped flag from turning a benchmark into an outage.
LIMITS = {
    "connections": 50_000,
    "room": 10_000,
    "duration": 600.0,
    "rate": 20_000.0,
    "missed": 100_000,
    "boards": 1_000,
    "cards": 20_000,
    "watchers": 10_000,
    "movers": 1_000,
    "hold": 600.0,
    "repeat": 100,
}

MODES = {
    "capacity": "idle connections: connect rate, realtime RSS per connection, responsiveness",
    "fanout": "one room of R members, broadcasts at a rate: delivery, latency, server CPU per message",
    "moves": "B boards x W watchers, K movers: committed moves/s, ack and broadcast latency",
    "catchup": "a member misses M events and re-joins with since_seq: time until current, gapless",
    "soak": "mixed traffic for minutes, faults when it started the stack, then every invariant (exit 1 if broken)",
}


def _bounded(kind: type, name: str) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0 or value > LIMITS[name]:
            raise argparse.ArgumentTypeError(f"--{name} must be between 0 and {LIMITS[name]}")
        return value

    return parse


def _common(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("deployment")
    where.add_argument("--realtime-url", default=os.environ.get("LIVEBOARD_REALTIME_URL", "http://127.0.0.1:8000"))
    where.add_argument("--auth-url", default=os.environ.get("LIVEBOARD_AUTH_URL", "http://127.0.0.1:8001"))
    where.add_argument("--boards-url", default=os.environ.get("LIVEBOARD_BOARDS_URL", "http://127.0.0.1:8002"))
    where.add_argument("--jwt-secret", default=None, help="Supabase JWT secret (default: env, .liveboard/)")
    where.add_argument("--issuer", default=None, help="Supabase JWT issuer (default: env, .liveboard/)")
    where.add_argument(
        "--pid",
        type=int,
        action="append",
        default=None,
        help="realtime process id to measure (repeatable; default: whoever listens on the port)",
    )
    stack = parser.add_argument_group("embedded stack")
    stack.add_argument(
        "--start-stack",
        action="store_true",
        help="start embedded NATS + Postgres + the four services on free ports for this run",
    )
    stack.add_argument(
        "--fast-path",
        choices=("on", "off"),
        default="on",
        help="REALTIME_FAST_PATH of the started realtime (off = stock python-socketio delivery)",
    )
    stack.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of the started realtime (LIVEBOARD_EVENT_LOOP; liveboard serve's default is uvloop)",
    )
    stack.add_argument("--realtime-workers", type=int, default=1, help="liveboard serve realtime --workers N")
    run = parser.add_argument_group("run")
    run.add_argument("--processes", type=int, default=2, help="load-generator processes holding the sockets")
    run.add_argument("--concurrency", type=int, default=100, help="connects in flight per process")
    run.add_argument("--json", type=Path, default=None, help="also write the JSON result to this file")
    run.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="profile the realtime processes during the measured window; stacks and summary here",
    )
    run.add_argument("--profiler", choices=("py-spy", "perf"), default="py-spy")
    run.add_argument(
        "--profile-service",
        choices=("realtime", "boards", "auth"),
        action="append",
        default=None,
        help="what --profile samples (repeatable; default realtime; local services only)",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the modes to the ``liveboard bench`` parser."""
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    p = modes.add_parser("capacity", help=MODES["capacity"], description=MODES["capacity"])
    p.add_argument("--connections", type=_bounded(int, "connections"), default=1000)
    p.add_argument("--room-size", type=_bounded(int, "room"), default=100, help="members per board")
    p.add_argument("--hold", type=_bounded(float, "hold"), default=5.0, help="seconds held idle after connecting")
    p.add_argument("--no-join", action="store_true", help="connect only (no boards, no presence)")
    p.add_argument(
        "--keepalive",
        type=_bounded(float, "hold"),
        default=120.0,
        help="seconds between each socket's cheap event (0 = none); below the server's WEBSOCKET_CONNECTION_TIMEOUT",
    )
    p.add_argument(
        "--settle-window",
        type=float,
        default=None,
        help="seconds per CPU window when judging quiet: a whole number of 10 s presence heartbeats "
        "(default 10 from 1,000 connections, 1 below)",
    )
    p.add_argument(
        "--settle-timeout",
        type=_bounded(float, "hold"),
        default=120.0,
        help="give up waiting for quiet after this many seconds (and say so)",
    )
    p = modes.add_parser("fanout", help=MODES["fanout"], description=MODES["fanout"])
    p.add_argument("--room", type=_bounded(int, "room"), default=100, help="members of the board room")
    p.add_argument("--rate", type=_bounded(float, "rate"), default=10.0, help="broadcasts per second")
    p.add_argument("--duration", type=_bounded(float, "duration"), default=10.0, help="seconds of broadcasting")
    p.add_argument(
        "--senders",
        type=_bounded(int, "movers"),
        default=1,
        help="sockets the broadcasts are spread over (each stays under its message rate limit)",
    )
    p.add_argument("--warmup", type=int, default=3, help="unmeasured broadcasts first")
    p.add_argument(
        "--reference",
        choices=("none", "node"),
        default="none",
        help="node: the same fan-out on a Node socket.io 4 server (npm, temporary folder)",
    )
    p = modes.add_parser("moves", help=MODES["moves"], description=MODES["moves"])
    p.add_argument("--boards", type=_bounded(int, "boards"), default=1)
    p.add_argument("--watchers", type=_bounded(int, "watchers"), default=10, help="members per board")
    p.add_argument("--movers", type=_bounded(int, "movers"), default=4, help="sockets moving cards (in total)")
    p.add_argument("--rate", type=_bounded(float, "rate"), default=10.0, help="moves/s in total; 0 = as fast as acks")
    p.add_argument("--duration", type=_bounded(float, "duration"), default=10.0)
    p.add_argument("--window", type=int, default=1, help="moves in flight per mover with --rate 0")
    p = modes.add_parser("catchup", help=MODES["catchup"], description=MODES["catchup"])
    p.add_argument("--missed", type=_bounded(int, "missed"), default=1000, help="events committed while away")
    p.add_argument("--repeat", type=_bounded(int, "repeat"), default=3, help="rounds (each misses --missed events)")
    p.add_argument("--cards", type=_bounded(int, "cards"), default=10, help="cards on the board (snapshot size)")
    from .soak import configure as soak

    soak(modes)
    for mode in modes.choices.values():
        _common(mode)
        mode.add_argument("--grace", type=float, default=15.0, help="seconds to wait for stragglers")
        mode.add_argument("--max-messages", type=int, default=200_000, help="ceiling on messages sent")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from .report import Report
    from .stack import StackOptions, start_stack, stop_stack
    from .target import BenchSetupError, Target, credentials

    if args.mode == "soak":  # its own stack (two realtime replicas it may kill) and its own exit status
        from .soak import main as soak

        return soak(args)
    stack = None
    reference = None
    # SIGTERM (a timeout, a CI runner) takes the same way out as Ctrl-C: through the ``finally``
    # that stops the stack, not leaving nats-server, Postgres and four services behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if getattr(args, "reference", "none") == "node":
            from .reference import start_node_reference

            reference, target = start_node_reference()
        elif args.start_stack:
            options = StackOptions(
                fast_path=args.fast_path == "on",
                realtime_workers=args.realtime_workers,
                loop=args.loop,
                max_connections=max(12_000, getattr(args, "connections", 0) + 500),
            )
            stack, target = start_stack(options)
        else:
            secret, issuer = credentials(args.jwt_secret, args.issuer)
            target = Target(
                args.realtime_url.rstrip("/"), args.auth_url.rstrip("/"), args.boards_url.rstrip("/"), secret, issuer
            )
        report: Report = _asyncio_run(_run(args, target, reference))
    except BenchSetupError as exc:
        print(f"liveboard bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if stack is not None:
            stop_stack(stack)
        if reference is not None:
            reference.stop()
    report.data["stack"] = (
        {"fast_path": args.fast_path, "loop": args.loop, "workers": args.realtime_workers} if args.start_stack else None
    )
    report.print()
    if args.json:
        import orjson

        args.json.write_text(orjson.dumps(report.result(), option=orjson.OPT_INDENT_2).decode())
    for failure in report.failures:
        print(f"liveboard bench {args.mode}: FAILED: {failure}", file=sys.stderr)
    return 1 if report.failures else 0


async def _run(args: argparse.Namespace, target: Any, reference: Any) -> Any:
    from .run import Deployment, opened

    deployment = reference.deployment(target) if reference is not None else Deployment.of(target, args.pid)
    mode = importlib.import_module(f"liveboard.bench.{args.mode}")
    async with opened(deployment):
        return await mode.run(deployment, args)


def _asyncio_run(coro: Any) -> Any:
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)
