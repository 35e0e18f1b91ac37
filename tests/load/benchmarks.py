"""Every figure of docs/benchmarks.md, each run ``--runs`` times; prints the medians as Markdown.

    .venv/bin/python tests/load/benchmarks.py --runs 2 --out /tmp/liveboard-bench     # all (~1 h)
    .venv/bin/python tests/load/benchmarks.py --only fanout-fast-uvloop-50 --runs 3   # one row

Each entry is one command line (``liveboard bench ...`` with ``--start-stack``, or one of the
colleagues' scripts), so any figure can be reproduced by hand. Runs are sequential (the machine
has 2 cores; nothing else of ours runs meanwhile), results are kept as JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = [sys.executable, "-m", "liveboard", "bench"]
FAST_UV = ["--start-stack", "--loop", "uvloop"]  # what `liveboard serve` runs by default
FAST = ["--start-stack", "--loop", "asyncio"]  # LIVEBOARD_EVENT_LOOP=asyncio
#: The reference: python-socketio's own delivery on asyncio's loop (REALTIME_FAST_PATH=false).
STOCK = ["--start-stack", "--fast-path", "off", "--loop", "asyncio"]
#: Broadcasts spread over 4 sender sockets: a socket's events are handled one at a time, so one
#: socket caps at 1/(ack latency) commits/s and would measure itself instead of the fan-out.
ROOM = ["--room", "1000", "--duration", "10", "--senders", "4"]

#: (name, argv) — the name is the row label in the docs.
MATRIX: list[tuple[str, list[str]]] = [
    ("fanout-fast-uvloop-20", [*BENCH, "fanout", *FAST_UV, *ROOM, "--rate", "20"]),
    ("fanout-fast-uvloop-50", [*BENCH, "fanout", *FAST_UV, *ROOM, "--rate", "50"]),
    ("fanout-fast-uvloop-75", [*BENCH, "fanout", *FAST_UV, *ROOM, "--rate", "75"]),
    ("fanout-fast-asyncio-50", [*BENCH, "fanout", *FAST, *ROOM, "--rate", "50"]),
    ("fanout-stock-2", [*BENCH, "fanout", *STOCK, *ROOM, "--rate", "2"]),
    ("fanout-stock-10", [*BENCH, "fanout", *STOCK, *ROOM, "--rate", "10"]),
    ("fanout-node-20", [*BENCH, "fanout", "--reference", "node", *ROOM, "--rate", "20"]),
    ("fanout-node-50", [*BENCH, "fanout", "--reference", "node", *ROOM, "--rate", "50"]),
    ("fanout-node-75", [*BENCH, "fanout", "--reference", "node", *ROOM, "--rate", "75"]),
    (
        "fanout-fast-uvloop-room1-50",
        [*BENCH, "fanout", *FAST_UV, "--room", "1", "--duration", "10", "--senders", "4", "--rate", "50"],
    ),
    (
        "capacity-fast-uvloop-10k",
        [*BENCH, "capacity", *FAST_UV, "--connections", "10000", "--room-size", "100", "--hold", "10"],
    ),
    (
        "capacity-fast-asyncio-10k",
        [*BENCH, "capacity", *FAST, "--connections", "10000", "--room-size", "100", "--hold", "10"],
    ),
    (
        "capacity-stock-10k",
        [*BENCH, "capacity", *STOCK, "--connections", "10000", "--room-size", "100", "--hold", "10"],
    ),
    (
        "moves-1x10-at-10",
        [
            *BENCH,
            "moves",
            *FAST_UV,
            "--boards",
            "1",
            "--watchers",
            "10",
            "--movers",
            "1",
            "--rate",
            "10",
            "--duration",
            "10",
        ],
    ),
    (
        "moves-1x10-at-10-asyncio",
        [
            *BENCH,
            "moves",
            *FAST,
            "--boards",
            "1",
            "--watchers",
            "10",
            "--movers",
            "1",
            "--rate",
            "10",
            "--duration",
            "10",
        ],
    ),
    (
        "moves-10x100-at-50",
        [
            *BENCH,
            "moves",
            *FAST_UV,
            "--boards",
            "10",
            "--watchers",
            "100",
            "--movers",
            "10",
            "--rate",
            "50",
            "--duration",
            "10",
        ],
    ),
    (
        "moves-hot-board",
        [
            *BENCH,
            "moves",
            *FAST_UV,
            "--boards",
            "1",
            "--watchers",
            "1",
            "--movers",
            "16",
            "--rate",
            "0",
            "--duration",
            "10",
        ],
    ),
    ("catchup-1000-5000cards", [*BENCH, "catchup", *FAST_UV, "--missed", "1000", "--repeat", "3", "--cards", "5000"]),
    ("boards-rest", [sys.executable, "tests/load/bench_boards.py", "--duration", "10"]),
    ("auth-exchange", [sys.executable, "tests/load/bench_exchange.py"]),
]


def run_once(argv: list[str], timeout: float) -> dict[str, Any]:
    """One run; on timeout or Ctrl-C the child gets SIGINT, so it stops the stack it started."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        raise
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{stdout[-2000:]}{stderr[-2000:]}")
    return json.loads(lines[-1])


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves as ``a.b.c`` keys (lists of result rows keyed by their name)."""
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "machine":
                continue
            out.update(flatten(item, f"{prefix}{key}."))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and ("scenario" in item or "case" in item):
                out.update(flatten(item, f"{prefix}{item.get('scenario') or item.get('case')}."))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix.rstrip(".")] = float(value)
    return out


def medians(results: list[dict[str, Any]]) -> dict[str, float]:
    flat = [flatten(r) for r in results]
    keys = set().union(*flat)
    return {k: statistics.median(f[k] for f in flat if k in f) for k in sorted(keys)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", action="append", default=None, help="row name (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/liveboard-bench"))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the current run cleanly too
    for name, argv in MATRIX:
        if args.only and name not in args.only:
            continue
        results = []
        for number in range(args.runs):
            began = time.monotonic()
            try:
                result = run_once(argv, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"{name} run {number + 1}: {exc}", file=sys.stderr, flush=True)
                continue
            (args.out / f"{name}-{number + 1}.json").write_text(json.dumps(result, indent=2))
            results.append(result)
            print(f"{name} run {number + 1} done in {time.monotonic() - began:.0f}s", file=sys.stderr, flush=True)
        if results:
            summary = medians(results)
            (args.out / f"{name}-median.json").write_text(json.dumps(summary, indent=2))
            print(f"## {name} (median of {len(results)}): `{' '.join(argv[1:])}`", flush=True)
            print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
