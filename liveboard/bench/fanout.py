"""``liveboard bench fanout``: one board room of R members, broadcasts at a fixed rate.

Measures what the fan-out costs: the share of broadcasts every member got (delivered ratio),
send → receive latency percentiles over every (broadcast, member) pair, and the realtime
processes' CPU per delivered message. Broadcasts are real committed moves (see ``sender``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .agents import latencies_ms
from .eio import SocketIOClient
from .pool import AgentPool, split
from .procstat import CpuMeter, own_cpu_seconds, quiesce, quiesce_machine
from .profile import Profiler
from .report import Report
from .run import Deployment
from .sender import Mover, paced


async def wait_delivered(pool: AgentPool, expected: int, timeout: float) -> int:
    """Poll the agents until ``expected`` deliveries arrived or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    delivered = 0
    while time.monotonic() < deadline:
        delivered = sum(await pool.call("delivered"))
        if delivered >= expected:
            break
        await asyncio.sleep(0.1)
    return delivered


async def run(deployment: Deployment, args: Any) -> Report:
    report = Report("fanout")
    room, rate, duration = args.room, args.rate, args.duration
    setup = await deployment.provision(members=room, movers=args.senders, boards=1)
    board = setup.boards[0]
    members = [setup.member_spec(index, board) for index in range(room)]
    async with AgentPool(
        "liveboard.bench.agents:MemberAgent", args.processes, url=deployment.realtime_url, run_id=setup.run_id
    ) as pool:
        chunks = split(len(members), pool.size)
        starts = [sum(chunks[:i]) for i in range(pool.size)]
        joined = await pool.call(
            "connect",
            per_agent=[
                {"members": members[s : s + n], "concurrency": args.concurrency}
                for s, n in zip(starts, chunks, strict=True)
            ],
        )
        receivers = sum(j["joined"] for j in joined)
        movers = []
        for index in range(args.senders):
            client = await SocketIOClient(deployment.realtime_url, setup.mover_token(index)).connect()
            movers.append(
                Mover(
                    client,
                    board.id,
                    board.cards[index % len(board.cards)],
                    (board.columns[0], board.columns[1]),
                    setup.run_id,
                )
            )
        try:
            for _ in range(args.warmup):  # warms the feed subscription and caches; not measured
                await asyncio.wait_for(movers[0].move(), 30)
            await wait_delivered(pool, receivers * args.warmup, 10)
            settled = await quiesce(deployment.realtime_pids)
            settled += await quiesce_machine()
            await pool.call("start")
            for mover in movers:
                mover.reset()
            server = CpuMeter(deployment.realtime_pids)
            profiler = Profiler.of(args, "fanout", deployment)
            profiler.start()
            server.start()
            generator_cpu = await pool.cpu() + own_cpu_seconds()
            began = time.monotonic()
            lateness = await paced(movers, rate, duration, args.max_messages)
            acked = sum(m.acked for m in movers)
            delivered = await wait_delivered(pool, acked * receivers, args.grace)
            elapsed = time.monotonic() - began
            server.stop()
            profiler.stop()
            generator_cpu = await pool.cpu() + own_cpu_seconds() - generator_cpu
            results = await pool.call("collect")
        finally:
            for mover in movers:
                mover.client.close()

    expected = acked * receivers
    samples = latencies_ms(results)
    report.add("room members joined", receivers, "receivers")
    report.add("broadcasts sent / acked ok", f"{sum(m.sent for m in movers)} / {acked}")
    report.data.update(sent=sum(m.sent for m in movers), acked=acked, rate=rate, duration_s=duration)
    errors = {code: n for m in movers for code, n in m.errors.items()}
    report.add("send errors", errors or "none", "send_errors")
    report.add("delivered / expected", f"{delivered} / {expected}")
    report.add("delivered ratio", round(delivered / expected, 4) if expected else None, "delivered_ratio")
    report.data.update(delivered=delivered, expected=expected)
    report.latency("send → receive", "latency_ms", samples)
    report.latency("send → ack", "ack_ms", [ms for m in movers for ms in m.ack_ms])
    report.add(
        "gaps / duplicates / resyncs",
        f"{sum(r['gaps'] for r in results)} / {sum(r['duplicates'] for r in results)} / "
        f"{sum(r['resyncs'] for r in results)}",
    )
    report.data.update(
        gaps=sum(r["gaps"] for r in results),
        duplicates=sum(r["duplicates"] for r in results),
        resyncs=sum(r["resyncs"] for r in results),
    )
    report.add("server CPU (user + system)", f"{server.used:.2f} s ({server.user:.2f} + {server.system:.2f})")
    report.data.update(
        server_cpu_s=round(server.used, 3), server_user_s=round(server.user, 3), server_system_s=round(server.system, 3)
    )
    report.add(
        "server CPU per delivered message",
        round(server.used / delivered * 1e6, 2) if delivered else None,
        "server_cpu_us_per_msg",
        "µs",
    )
    report.add("server CPU utilisation", round(server.used / elapsed * 100, 1), "server_cpu_pct", "% of one core")
    report.add("generator CPU (all processes)", round(generator_cpu, 2), "generator_cpu_s", "s")
    report.add("generator worst schedule lateness", round(lateness, 2), "sender_lateness_ms", "ms")
    report.add("realtime pids", ",".join(map(str, deployment.realtime_pids)) or "unknown", "realtime_pids")
    report.data["join_ms"] = _join_summary(joined)
    report.add("waited for the server and machine to go idle", round(settled, 1), "quiesce_s", "s")
    return report


def _join_summary(joined: list[dict[str, Any]]) -> dict[str, Any]:
    from .report import percentiles

    return percentiles([ms for j in joined for ms in j["join_ms"]])
