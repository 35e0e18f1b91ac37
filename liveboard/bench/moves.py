"""``liveboard bench moves``: B boards x W watchers, K movers; the whole collaborative loop.

Each mover is a socket moving its own card of its board (round-robin), so what limits
throughput is the system, not conflicts between movers. Measured: committed moves per second
(acks with ``ok``), emit → ack latency (socket → realtime → boards commit → back), and emit →
every watcher latency (… → NATS → realtime → the room), plus delivery completeness and order.
``--rate 0`` drives each mover as fast as its acks return (``--window`` moves in flight).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .agents import latencies_ms
from .eio import SocketIOClient
from .fanout import wait_delivered
from .pool import AgentPool, split
from .procstat import CpuMeter, own_cpu_seconds, quiesce, quiesce_machine
from .profile import Profiler
from .report import Report
from .run import Deployment
from .sender import Mover, closed_loop, paced, settle


async def run(deployment: Deployment, args: Any) -> Report:
    report = Report("moves")
    boards, watchers, movers_n = max(1, args.boards), args.watchers, max(1, args.movers)
    per_board_movers = -(-movers_n // boards)
    setup = await deployment.provision(
        members=boards * watchers, movers=movers_n, boards=boards, cards=max(10, per_board_movers)
    )
    members = [setup.member_spec(i, setup.boards[i // watchers]) for i in range(boards * watchers)] if watchers else []
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
        watching = sum(j["joined"] for j in joined)
        movers = []
        for index in range(movers_n):
            board = setup.boards[index % boards]
            client = await SocketIOClient(deployment.realtime_url, setup.mover_token(index)).connect()
            movers.append(
                Mover(
                    client, board.id, board.cards[index // boards], (board.columns[0], board.columns[1]), setup.run_id
                )
            )
        try:
            await asyncio.gather(*(asyncio.wait_for(m.move(), 30) for m in movers))  # warm-up, unmeasured
            await wait_delivered(pool, watching * len(movers) // boards, 10)
            await quiesce(deployment.realtime_pids)
            await quiesce_machine()
            await pool.call("start")
            for mover in movers:
                mover.reset()
            server = CpuMeter(deployment.realtime_pids)
            profiler = Profiler.of(args, "moves", deployment)
            profiler.start()
            server.start()
            generator_cpu = await pool.cpu() + own_cpu_seconds()
            began = time.monotonic()
            if args.rate > 0:
                lateness = await paced(movers, args.rate, args.duration, args.max_messages)
            else:
                lateness = 0.0
                await closed_loop(movers, args.duration, args.max_messages, max(1, args.window))
            sending = time.monotonic() - began
            await settle(movers)
            acked = sum(m.acked for m in movers)
            expected = acked * watchers
            delivered = await wait_delivered(pool, expected, args.grace)
            server.stop()
            profiler.stop()
            generator_cpu = await pool.cpu() + own_cpu_seconds() - generator_cpu
            results = await pool.call("collect")
        finally:
            for mover in movers:
                mover.client.close()

    errors: dict[str, int] = {}
    for mover in movers:
        for code, count in mover.errors.items():
            errors[code] = errors.get(code, 0) + count
    report.add("boards x watchers, movers", f"{boards} x {watchers} ({watching} joined), {movers_n} movers")
    report.data.update(
        boards=boards, watchers=watchers, watching=watching, movers=movers_n, rate=args.rate, duration_s=args.duration
    )
    report.add("moves sent / committed", f"{sum(m.sent for m in movers)} / {acked}")
    report.add("committed moves/s", round(acked / sending, 1) if sending else None, "committed_per_s")
    report.add("errors", errors or "none", "errors")
    report.add("conflicts reported", sum(m.conflicts for m in movers), "conflicts")
    report.latency("emit → ack (commit)", "ack_ms", [ms for m in movers for ms in m.ack_ms])
    report.latency("emit → every watcher", "broadcast_ms", latencies_ms(results))
    report.add("delivered / expected", f"{delivered} / {expected}")
    report.add("delivered ratio", round(delivered / expected, 4) if expected else None, "delivered_ratio")
    report.data.update(delivered=delivered, expected=expected, sent=sum(m.sent for m in movers), acked=acked)
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
    report.data["server_cpu_s"] = round(server.used, 3)
    report.add(
        "server CPU per committed move",
        round(server.used / acked * 1e6, 1) if acked else None,
        "server_cpu_us_per_move",
        "µs",
    )
    report.add("generator CPU (all processes)", round(generator_cpu, 2), "generator_cpu_s", "s")
    report.add("generator worst schedule lateness", round(lateness, 2), "sender_lateness_ms", "ms")
    report.add("realtime pids", ",".join(map(str, deployment.realtime_pids)) or "unknown", "realtime_pids")
    return report
