"""Token-exchange benchmark: what a scope costs a service (cached) and what auth costs (fresh).

Measures, against a running auth service (or one this script starts with embedded NATS and
Postgres when ``--auth-url`` is not given):

* ``cached``      ``ScopeClient.scope_for`` on a token it has already exchanged (the per-message cost
                  realtime and boards pay), sequential calls;
* ``fresh-http``  ``POST /v1/token/exchange`` with a never-seen token: full verification, a
                  membership query and an ES256 signature, ``--concurrency`` requests in flight;
* ``fresh-nats``  the same exchange through ``ScopeClient`` over NATS request/reply (cache misses).

Usage (not collected by pytest)::

    .venv/bin/python tests/load/bench_exchange.py                       # starts its own stack
    .venv/bin/python tests/load/bench_exchange.py --auth-url http://127.0.0.1:8001 \\
        --nats-url nats://127.0.0.1:4222      # a running stack; SUPABASE_JWT_SECRET/_ISSUER from env

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import nats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from libs.common.devstack import NatsServer, PostgresServer, free_port  # noqa: E402
from libs.common.identity import ScopeClient  # noqa: E402
from libs.common.scopes import ScopeSigner  # noqa: E402
from liveboard.devtokens import DEV_ISSUER, service_role_key, user_token  # noqa: E402

ORG = "bench-org"
USERS = 100


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(name: str, latencies: list[float], elapsed: float) -> dict:
    return {
        "case": name,
        "requests": len(latencies),
        "throughput_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
    }


async def run_concurrently(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> tuple[list, float]:
    latencies: list[float] = []
    counter = iter(range(count))

    async def worker() -> None:
        for index in counter:
            started = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def start_stack(stack: ExitStack, workdir: Path, secret: str) -> tuple[str, str]:
    """Embedded NATS + Postgres and ``liveboard serve auth``; returns (auth URL, NATS URL)."""
    nats_server = NatsServer(data_dir=workdir / "nats", port=free_port()).start()
    stack.callback(nats_server.stop)
    postgres = PostgresServer(data_dir=workdir / "pg", port=free_port()).start()
    stack.callback(postgres.stop)
    port = free_port()
    env = {
        **os.environ,
        "NATS_URL": nats_server.url,
        "DATABASE_URL": postgres.url,
        "SUPABASE_JWT_SECRET": secret,
        "SUPABASE_JWT_ISSUER": DEV_ISSUER,
        "AUTH_SCOPE_SIGNING_KEY": ScopeSigner.generate().private_pem(),
        "LOG_LEVEL": "warning",
    }
    log = open(workdir / "auth.log", "wb")  # closed by the stack
    stack.callback(log.close)
    proc = subprocess.Popen(
        [sys.executable, "-m", "liveboard", "serve", "auth", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()

    stack.callback(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return url, nats_server.url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"auth not ready; see {workdir / 'auth.log'}")


async def seed(http: aiohttp.ClientSession, auth_url: str, secret: str) -> list[str]:
    """An organization with USERS members, so each exchange reads a real membership."""
    headers = {"Authorization": f"Bearer {service_role_key(secret)}"}
    async with http.post(f"{auth_url}/v1/organizations", headers=headers, json={"id": ORG, "name": "Bench"}) as r:
        assert r.status in (200, 201), await r.text()
    users = [f"bench-user-{i}" for i in range(USERS)]
    for user in users:
        async with http.put(
            f"{auth_url}/v1/organizations/{ORG}/members/{user}", headers=headers, json={"role": "member"}
        ) as r:
            assert r.status in (200, 201), await r.text()
    return users


async def bench(args: argparse.Namespace, auth_url: str, nats_url: str, secret: str, issuer: str) -> list[dict]:
    def fresh_token(index: int) -> str:
        user = f"bench-user-{index % USERS}"
        return user_token(secret, user, f"{user}@example.com", issuer=issuer, session_id=str(uuid.uuid4()))

    results = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as http:
        await seed(http, auth_url, secret)

        # cached: one token, exchanged once, then served from the ScopeClient's cache.
        async with ScopeClient(auth_url) as client:
            token = fresh_token(0)
            await client.scope_for(token)
            latencies = []
            started = time.perf_counter()
            for _ in range(args.cached):
                t0 = time.perf_counter()
                await client.scope_for(token)
                latencies.append(time.perf_counter() - t0)
            results.append(summary("cached (ScopeClient hit)", latencies, time.perf_counter() - started))
            assert client.exchanges == 1

        # fresh over HTTP: every request a never-seen token.
        tokens = [fresh_token(i) for i in range(args.requests)]
        for warm in tokens[:50]:
            async with http.post(f"{auth_url}/v1/token/exchange", headers={"Authorization": f"Bearer {warm}"}) as r:
                await r.read()

        async def http_one(index: int) -> None:
            headers = {"Authorization": f"Bearer {tokens[index]}"}
            async with http.post(f"{auth_url}/v1/token/exchange", headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"exchange failed: {response.status}")

        unloaded = min(500, args.requests)
        latencies, elapsed = await run_concurrently(unloaded, 1, http_one)
        results.append(summary("fresh HTTP (c=1, unloaded latency)", latencies, elapsed))
        tokens = [fresh_token(i) for i in range(args.requests)]
        latencies, elapsed = await run_concurrently(args.requests, args.concurrency, http_one)
        results.append(summary(f"fresh HTTP (c={args.concurrency})", latencies, elapsed))

        # fresh over NATS through ScopeClient (each token new, so each call is an exchange).
        nc = await nats.connect(nats_url)
        try:
            nats_tokens = [fresh_token(i) for i in range(args.requests)]
            async with ScopeClient(auth_url, nats=nc) as client:

                async def nats_one(index: int) -> None:
                    await client.scope_for(nats_tokens[index])

                latencies, elapsed = await run_concurrently(args.requests, args.concurrency, nats_one)
                assert client.exchanges == args.requests
            results.append(summary(f"fresh NATS via ScopeClient (c={args.concurrency})", latencies, elapsed))
        finally:
            await nc.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--auth-url", help="a running auth service (default: start one)")
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--requests", type=int, default=3000, help="fresh exchanges per transport")
    parser.add_argument("--cached", type=int, default=100000, help="cached lookups")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    with ExitStack() as stack:
        if args.auth_url:
            secret = os.environ.get("SUPABASE_JWT_SECRET")
            if not secret:
                parser.error("SUPABASE_JWT_SECRET must be set to mint tokens for a running stack")
            issuer = os.environ.get("SUPABASE_JWT_ISSUER", DEV_ISSUER)
            auth_url, nats_url = args.auth_url.rstrip("/"), args.nats_url
        else:
            secret, issuer = "bench-secret-" + uuid.uuid4().hex * 2, DEV_ISSUER
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liveboard-bench-")))
            print("starting embedded NATS, Postgres and `liveboard serve auth` ...", flush=True)
            auth_url, nats_url = start_stack(stack, workdir, secret)
        results = asyncio.run(bench(args, auth_url, nats_url, secret, issuer))

    print(f"\n{'case':<40} {'requests':>9} {'per s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for row in results:
        print(
            f"{row['case']:<40} {row['requests']:>9} {row['throughput_per_s']:>10} "
            f"{row['p50_ms']:>9} {row['p99_ms']:>9}"
        )
    machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    print(json.dumps({"benchmark": "exchange", "machine": machine, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
