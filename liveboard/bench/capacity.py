"""``liveboard bench capacity``: N idle sockets joined to boards; what they cost the server.

Connects in concurrent batches from the generator processes while a probe times
``GET /api/v1/websocket/health`` every 200 ms (does the server stay responsive while sockets
pour in and while they sit idle?). Memory per connection is the realtime processes' RSS growth
divided by the sockets connected, read after the server has gone idle again.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp

from .pool import AgentPool, split
from .procstat import CpuMeter, quiesce, rss_bytes
from .report import Report
from .run import Deployment


class HealthProbe:
    """Latency of the realtime health endpoint, sampled until stopped."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        self.url = f"{url}/api/v1/websocket/health"
        self.interval = interval
        self.samples_ms: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                began = time.perf_counter()
                try:
                    async with session.get(self.url) as response:
                        await response.read()
                        if response.status >= 500 and response.status != 503:
                            self.failures += 1
                    self.samples_ms.append((time.perf_counter() - began) * 1000)
                except (aiohttp.ClientError, TimeoutError):
                    self.failures += 1
                await asyncio.sleep(self.interval)


async def run(deployment: Deployment, args: Any) -> Report:
    report = Report("capacity")
    total, room = args.connections, max(1, args.room_size)
    boards = 0 if args.no_join else math.ceil(total / room)
    setup = await deployment.provision(members=total, movers=0, boards=max(1, boards), cards=1)
    members = [setup.member_spec(index, setup.boards[index // room if boards else 0]) for index in range(total)]
    pids = deployment.realtime_pids
    async with AgentPool(
        "liveboard.bench.agents:MemberAgent", args.processes, url=deployment.realtime_url, run_id=setup.run_id
    ) as pool:
        await quiesce(pids)
        rss_before = rss_bytes(pids)
        probe = HealthProbe(deployment.realtime_url)
        probe.start()
        chunks = split(total, pool.size)
        starts = [sum(chunks[:i]) for i in range(pool.size)]
        began = time.monotonic()
        connected = await pool.call(
            "connect",
            per_agent=[
                {"members": members[s : s + n], "concurrency": args.concurrency, "join": not args.no_join}
                for s, n in zip(starts, chunks, strict=True)
            ],
        )
        connect_seconds = time.monotonic() - began
        during_connect = list(probe.samples_ms)
        settle_seconds = await quiesce(pids, timeout=300)
        rss_after = rss_bytes(pids)
        probe.samples_ms.clear()
        idle = CpuMeter(pids)
        idle.start()
        await asyncio.sleep(args.hold)
        idle.stop()
        rss_end = rss_bytes(pids)
        await probe.stop()
        open_sockets = sum(await pool.call("start"))
        generator_cpu = await pool.cpu()

    made = sum(c["connected"] for c in connected)
    joined = sum(c["joined"] for c in connected)
    refused: dict[str, int] = {}
    for answer in connected:
        for code, count in {**answer["refused"], **answer["failed"]}.items():
            refused[code] = refused.get(code, 0) + count
    report.add("connections asked / connected / joined", f"{total} / {made} / {joined}")
    report.data.update(connections=total, connected=made, joined=joined, boards=boards, room_size=room)
    report.add("refused or failed", refused or "none", "refused")
    report.add("connect + join phase", round(connect_seconds, 2), "connect_s", "s")
    report.add(
        "connect rate", round(made / connect_seconds, 1) if connect_seconds else None, "connect_per_s", "sockets/s"
    )
    report.latency("connect (handshake)", "connect_ms", [ms for c in connected for ms in c["connect_ms"]])
    report.latency("join_board ack", "join_ms", [ms for c in connected for ms in c["join_ms"]])
    report.add("server busy after the last join", round(settle_seconds, 1), "settle_s", "s")
    report.add("realtime RSS before / after", f"{rss_before / 2**20:.1f} / {rss_after / 2**20:.1f} MiB")
    report.data.update(rss_before_bytes=rss_before, rss_after_bytes=rss_after)
    report.add(
        f"RSS growth during the idle hold ({args.hold:g} s)",
        round((rss_end - rss_after) / 2**20, 2),
        "rss_idle_growth_mib",
        "MiB",
    )
    per_connection = (rss_after - rss_before) / made if made else None
    report.add(
        "RSS per connection",
        round(per_connection / 1024, 2) if per_connection else None,
        "rss_per_connection_kib",
        "KiB",
    )
    report.latency("health probe while connecting", "probe_connect_ms", during_connect)
    report.latency(f"health probe while idle ({args.hold:g} s)", "probe_idle_ms", probe.samples_ms)
    report.add("health probe failures", probe.failures, "probe_failures")
    report.add(
        "server CPU while idle",
        round(idle.used / args.hold * 100, 2) if args.hold else None,
        "idle_cpu_pct",
        "% of one core",
    )
    report.add("sockets still open at the end", open_sockets, "open_at_end")
    report.add("generator CPU (all processes)", round(generator_cpu, 2), "generator_cpu_s", "s")
    report.add("realtime pids", ",".join(map(str, pids)) or "unknown", "realtime_pids")
    return report
