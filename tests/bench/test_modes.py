"""Each ``liveboard bench`` mode, once, tiny, against real services: the tool works and its
numbers are sane (everything delivered, in order; latencies positive and ordered)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ISSUER, JWT_SECRET, ROOT

pytestmark = pytest.mark.slow


def bench(stack: Any, tmp_path: Path, mode: str, *flags: str) -> dict[str, Any]:
    out = tmp_path / f"{mode}.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "liveboard",
            "bench",
            mode,
            *flags,
            *stack.args(),
            "--jwt-secret",
            JWT_SECRET,
            "--issuer",
            ISSUER,
            "--processes",
            "1",
            "--grace",
            "10",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    printed = json.loads(last)  # the one JSON line closes the printed table
    assert printed["mode"] == mode
    written = json.loads(out.read_text())
    assert printed == written
    return written


def ordered(latency: dict[str, float]) -> bool:
    return 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]


def test_fanout(bench_stack, tmp_path):
    result = bench(bench_stack, tmp_path, "fanout", "--room", "4", "--rate", "8", "--duration", "1", "--warmup", "1")
    assert result["receivers"] == 4
    assert result["acked"] == result["sent"] == 8
    assert result["delivered_ratio"] == 1.0 and result["delivered"] == 32
    assert result["gaps"] == result["duplicates"] == result["resyncs"] == 0
    assert ordered(result["latency_ms"]) and ordered(result["ack_ms"])
    assert result["server_cpu_s"] >= 0 and result["server_cpu_us_per_msg"] is not None


def test_moves(bench_stack, tmp_path):
    result = bench(
        bench_stack,
        tmp_path,
        "moves",
        "--boards",
        "2",
        "--watchers",
        "2",
        "--movers",
        "2",
        "--rate",
        "10",
        "--duration",
        "1",
    )
    assert result["watching"] == 4
    assert result["acked"] == result["sent"] == 10 and result["errors"] == "none"
    assert result["delivered_ratio"] == 1.0 and result["delivered"] == 20  # each move reaches its board's 2
    assert result["gaps"] == result["duplicates"] == 0
    assert ordered(result["ack_ms"]) and ordered(result["broadcast_ms"])
    assert result["committed_per_s"] > 0


def test_capacity(bench_stack, tmp_path):
    result = bench(bench_stack, tmp_path, "capacity", "--connections", "12", "--room-size", "5", "--hold", "0.5")
    assert result["connected"] == result["joined"] == 12 and result["boards"] == 3
    assert result["refused"] == "none" and result["open_at_end"] == 12
    assert ordered(result["connect_ms"]) and ordered(result["join_ms"])
    assert result["rss_after_bytes"] > 0 and result["probe_failures"] == 0


def test_catchup(bench_stack, tmp_path):
    result = bench(bench_stack, tmp_path, "catchup", "--missed", "15", "--repeat", "1")
    assert result["gapless"] == 1 and result["live_continued"] == 1 and result["snapshot_fallbacks"] == 0
    assert result["problems"] == "none"
    assert result["catchup_ms"]["p50"] > 0
