"""Boards benchmark: committed moves per second and latency, and snapshot latency of a big board.

    .venv/bin/python tests/load/bench_boards.py [--duration 10] [--concurrency 16] [--json out.json]

Starts its own nats-server and PostgreSQL (the embedded wheels) unless ``NATS_URL`` and
``DATABASE_URL`` are set, runs ``liveboard serve boards`` as a separate process (so the load
generator does not share its event loop), and drives it over REST with ``--concurrency``
callers, each sending one request at a time:

1. ``hot board``  — every caller moves random cards of ONE board (the board row lock serializes
   them: this is the per-board ceiling);
2. ``100 boards`` — every caller moves random cards of a random one of 100 boards;
3. ``snapshot``   — ``GET /v1/boards/{id}`` of a board with 5,000 cards, one request at a time.

A move counts when it answered 200 (the transaction committed and the event was published).
Every loop is bounded in time and count, and only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp

from libs.common.devstack import NatsServer, PostgresServer, free_port
from libs.common.scopes import OrgMembership, Scope, ScopeSigner

ROOT = Path(__file__).resolve().parents[2]
ORG = "bench-org"


@dataclass
class Result:
    name: str
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2) if ordered else 0.0

        return {
            "scenario": self.name,
            "ok": len(ordered),
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "per_second": round(len(ordered) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else 0.0,
        }


def serve_jwks(signer: ScopeSigner) -> tuple[ThreadingHTTPServer, str]:
    body = json.dumps(signer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"


def start_boards(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # the child keeps writing to it
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveboard", "serve", "boards", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"boards exited: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("boards not ready")


class Bench:
    def __init__(self, base: str, headers: dict[str, str], concurrency: int) -> None:
        self.base = base
        self.headers = headers
        self.concurrency = concurrency
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Bench:
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2)
        self.session = aiohttp.ClientSession(self.base, headers=self.headers, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.request(method, path, json=body) as response:
            return response.status, await response.json()

    async def board(self, columns: int, cards: int) -> dict[str, Any]:
        status, snap = await self.call(
            "POST",
            "/v1/boards",
            {"organization_id": ORG, "name": "bench", "columns": [f"c{i}" for i in range(columns)]},
        )
        assert status == 201, snap
        column_ids = [c["id"] for c in snap["columns"]]
        queue = list(range(cards))

        async def filler() -> list[str]:
            made = []
            while queue:
                i = queue.pop()
                status, answer = await self.call(
                    "POST",
                    f"/v1/boards/{snap['board']['id']}/cards",
                    {"column_id": column_ids[i % columns], "title": f"card {i}", "description": "x" * 80},
                )
                assert status == 201, answer
                made.append(answer["task"]["id"])
            return made

        made = await asyncio.gather(*(filler() for _ in range(self.concurrency)))
        return {"id": snap["board"]["id"], "columns": column_ids, "cards": [c for part in made for c in part]}

    async def moves(self, name: str, boards: list[dict[str, Any]], duration: float, max_requests: int) -> Result:
        result = Result(name)
        rng = random.Random(42)
        stop_at = time.monotonic() + duration
        budget = [max_requests]

        async def caller() -> None:
            while time.monotonic() < stop_at and budget[0] > 0:
                budget[0] -= 1
                board = rng.choice(boards)
                card = rng.choice(board["cards"])
                body = {"to_column_id": rng.choice(board["columns"]), "position": rng.randint(0, 60)}
                started = time.perf_counter()
                status, answer = await self.call("POST", f"/v1/cards/{card}/move", body)
                if status == 200:
                    result.latencies.append(time.perf_counter() - started)
                else:
                    code = answer.get("error", {}).get("code", str(status))
                    result.errors[code] = result.errors.get(code, 0) + 1

        began = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(self.concurrency)))
        result.seconds = time.monotonic() - began
        return result

    async def snapshots(self, board: dict[str, Any], count: int) -> tuple[Result, int]:
        result = Result("snapshot 5000 cards")
        size = 0
        began = time.monotonic()
        for _ in range(count):
            started = time.perf_counter()
            assert self.session is not None
            async with self.session.get(f"/v1/boards/{board['id']}") as response:
                raw = await response.read()
                assert response.status == 200, raw[:200]
            result.latencies.append(time.perf_counter() - started)
            size = len(raw)
        result.seconds = time.monotonic() - began
        return result, size


async def run(args: argparse.Namespace, base: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with Bench(base, headers, args.concurrency) as bench:
        began = time.monotonic()
        hot = await bench.board(columns=4, cards=200)
        many = [await bench.board(columns=4, cards=20) for _ in range(100)]
        big = await bench.board(columns=5, cards=5000)
        setup = time.monotonic() - began
        print(f"setup: 101 boards of 200/20 cards and one of 5000 cards in {setup:.1f}s", flush=True)
        await bench.moves("warm-up", [hot], 2.0, 500)
        results = [
            await bench.moves("moves, 1 hot board", [hot], args.duration, args.max_requests),
            await bench.moves("moves, 100 boards", many, args.duration, args.max_requests),
        ]
        snap, size = await bench.snapshots(big, args.snapshots)
        results.append(snap)
    return {
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "snapshot_bytes": size,
        "cpus": os.cpu_count(),
        "results": [r.summary() for r in results],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per move scenario")
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap per move scenario")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--snapshots", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="bench-boards-"))
    servers: list[Any] = []
    nats_url, database_url = os.environ.get("NATS_URL"), os.environ.get("DATABASE_URL")
    if not nats_url:
        servers.append(NatsServer(data_dir=state / "nats", port=free_port()).start())
        nats_url = servers[-1].url
    if not database_url:
        servers.append(PostgresServer(data_dir=state / "pg", port=free_port()).start())
        database_url = servers[-1].url
    signer = ScopeSigner.generate()
    jwks, jwks_url = serve_jwks(signer)
    port = free_port()
    env = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "AUTH_JWKS_URL": jwks_url,
        "SUPABASE_JWT_SECRET": uuid.uuid4().hex * 2,  # serve refuses to start without one
        "SUPABASE_JWT_ISSUER": "bench",
    }
    proc = start_boards(env, port, state / "boards.log")
    try:
        scope = Scope(sub="bench-user", email="bench@example.com", organizations=(OrgMembership(ORG, "member"),))
        token = signer.sign(scope, int(time.time()) + 3600)
        report = asyncio.run(run(args, f"http://127.0.0.1:{port}", token))
    finally:
        proc.terminate()
        proc.wait(20)
        jwks.shutdown()
        for server in reversed(servers):
            server.stop()
    print(f"\n{'scenario':<22} {'ok':>7} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}  errors")
    for row in report["results"]:
        print(
            f"{row['scenario']:<22} {row['ok']:>7} {row['per_second']:>8} {row['p50_ms']:>8} {row['p99_ms']:>8}"
            f"  {row['errors'] or ''}"
        )
    print(f"(concurrency {report['concurrency']}, snapshot {report['snapshot_bytes']} bytes, {report['cpus']} CPUs)")
    print(json.dumps(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
