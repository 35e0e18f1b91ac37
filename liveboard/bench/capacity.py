"""``liveboard bench capacity``: N idle sockets joined to boards; what they cost the server.

Connects in concurrent batches from the generator processes while a probe times
``GET /api/v1/websocket/health`` every 200 ms (does the server stay responsive while sockets
pour in and while they sit idle?). Memory per connection is the realtime processes' RSS growth
divided by the sockets connected, read after the server has gone quiet again.

"Quiet" is judged against measurements, never a fixed threshold (``procstat.settle``): realtime's
CPU with no sockets is measured first, and after the joins the bench waits until the CPU is back
near that baseline or has levelled off at its own steady cost (which at 10,000 sockets is well
above zero) — bounded by ``--settle-timeout``, after which the report says it gave up.

The sockets are kept alive: realtime closes a socket that sent no event for
``WEBSOCKET_CONNECTION_TIMEOUT`` (300 s by default; pings do not count), so every socket sends a
cheap ``leave_board`` of a board it never joined once per ``--keepalive`` seconds, spread evenly
(the idle CPU includes them; the report says how many). Any socket the server closes anyway is
reported with its reason, and the run then fails (exit status 1): the figures of a run that lost
sockets are not the figures of N sockets.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp

from .pool import AgentPool, split
from .procstat import CpuMeter, rss_bytes, settle
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
    window = args.settle_window or (10.0 if total >= 1000 else 1.0)
    async with AgentPool(
        "liveboard.bench.agents:MemberAgent", args.processes, url=deployment.realtime_url, run_id=setup.run_id
    ) as pool:
        before = await settle(pids, baseline_pct=0.0, window=window, timeout=args.settle_timeout)
        baseline = before.level_pct or 0.0
        rss_before = rss_bytes(pids)
        probe = HealthProbe(deployment.realtime_url)
        probe.start()
        chunks = split(total, pool.size)
        starts = [sum(chunks[:i]) for i in range(pool.size)]
        await pool.call("start_keepalive", interval=args.keepalive)
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
        after = await settle(pids, baseline_pct=baseline, window=window, timeout=args.settle_timeout)
        rss_after = rss_bytes(pids)
        probe.samples_ms.clear()
        keepalives_before = _sum_counts(await pool.call("keepalive_counts"))
        idle = CpuMeter(pids)
        idle.start()
        await asyncio.sleep(args.hold)
        idle.stop()
        keepalives_idle = _sum_counts(await pool.call("keepalive_counts"))["sent"] - keepalives_before["sent"]
        rss_end = rss_bytes(pids)
        await probe.stop()
        held_seconds = time.monotonic() - began
        closures = [closed for answer in await pool.call("closures") for closed in answer]
        keepalives = _sum_counts(await pool.call("keepalive_counts"))
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
    report.add(
        f"realtime CPU with no sockets (baseline, {window:g} s windows)",
        baseline,
        "baseline_cpu_pct",
        "% of one core" + ("" if before.settled else f" ({before.reason})"),
    )
    report.add(
        "quiet after the last join" if after.settled else "NOT quiet after the last join",
        f"{after.seconds:.1f} s: {after.reason}; windows {after.windows_pct} % of one core",
    )
    report.data.update(
        settle_s=round(after.seconds, 1),
        settled=after.settled,
        settle_reason=after.reason,
        settle_windows_pct=after.windows_pct,
        steady_cpu_pct=after.level_pct,
    )
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
        "server CPU while idle" + ("" if after.settled else " (NOT settled before: includes the joins' aftermath)"),
        round(idle.used / args.hold * 100, 2) if args.hold else None,
        "idle_cpu_pct",
        "% of one core",
    )
    report.add(
        "keepalives (leave_board of no board)",
        f"every {args.keepalive:g} s per socket: {keepalives['sent']:,} sent, {keepalives['acked']:,} answered ok, "
        f"{keepalives_idle:,} during the idle hold ({keepalives_idle / args.hold if args.hold else 0:.1f}/s)"
        if args.keepalive > 0
        else "off",
    )
    report.data.update(keepalive_s=args.keepalive, keepalives=keepalives, keepalives_idle=keepalives_idle)
    report.add("sockets held for", round(held_seconds, 1), "held_s", "s since the first connect")
    report.add("sockets still open at the end", open_sockets, "open_at_end")
    reasons: dict[str, int] = {}
    for closed in closures:
        why = closed["reason"] + (f" after {closed['notice']}" if closed["notice"] else "")
        reasons[why] = reasons.get(why, 0) + 1
    report.add("sockets closed by the server during the run", len(closures), "closed_during_run")
    report.data["closed_reasons"] = reasons
    report.data["closed"] = closures[:100]  # every reason is counted above; the first 100 sockets in full
    for why, count in sorted(reasons.items(), key=lambda item: -item[1]):
        report.add("  closed", f"{count:,}: {why}")
    for closed in closures[:20]:
        report.add(
            f"  socket {closed['agent']}.{closed['socket']}",
            f"{closed['sid']} on {closed['board_id']}: closed after {closed['after_s']} s: {closed['reason']}"
            + (f"; {closed['notice']}" if closed["notice"] else ""),
        )
    if closures:
        report.failures.append(
            f"{len(closures)} of the {made} sockets the bench held were closed during the run "
            f"({'; '.join(f'{n} {why}' for why, n in reasons.items())}): these figures are not those of {made} sockets"
        )
    report.add("generator CPU (all processes)", round(generator_cpu, 2), "generator_cpu_s", "s")
    report.add("realtime pids", ",".join(map(str, pids)) or "unknown", "realtime_pids")
    return report


def _sum_counts(answers: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for answer in answers:
        for key, value in answer.items():
            total[key] = total.get(key, 0) + value
    return total
