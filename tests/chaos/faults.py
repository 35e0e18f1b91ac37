"""The faults, one function each. Every one fires while operations are in flight (the caller waits
for that first) and returns once the faulty part is back (restarted, reconnected, restored);
readiness of the whole stack is then measured by the caller. The plain kills and restarts are
``liveboard bench soak``'s too (``liveboard/bench/faults.py``); the rest need the suite's TCP
proxy, test hooks or a frozen process.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from libs.common.messaging import connect
from libs.common.subjects import BOARD_EVENTS_STREAM
from liveboard.bench.faults import kill_audit, kill_boards, kill_realtime, restart_nats, restart_postgres

from .stack import ChaosStack
from .workload import Workload

Fault = Callable[[ChaosStack, Workload], Awaitable[str]]

__all__ = [
    "Fault",
    "crash_boards_after_commits",
    "crash_nats_host_after_burst",
    "kill_audit",
    "kill_audit_with_unacked_batch",
    "kill_boards",
    "kill_nats_after_burst",
    "kill_realtime",
    "partition_realtime",
    "postgres_down_for_a_while",
    "restart_nats",
    "restart_postgres",
]


async def partition_realtime(stack: ChaosStack, workload: Workload, seconds: float = 4.0) -> str:
    """realtime-2 lives on without NATS: mutations refused ``unavailable``, events missed meanwhile."""
    await stack.proxy.cut()
    await asyncio.sleep(seconds)
    stack.proxy.restore()
    return f"realtime-2's NATS connection cut for {seconds:g}s"


async def kill_nats_after_burst(stack: ChaosStack, workload: Workload) -> str:
    """A burst of writes, and the moment most are acked, nats-server dies without flushing."""
    acked = await workload.burst(24, acked=16)
    await stack.restart_nats(kill=True)
    return f"kill -9 nats-server {acked} acks into a burst of 24, restarted"


async def crash_nats_host_after_burst(stack: ChaosStack, workload: Workload) -> str:
    """As above, but the host dies too: its disk holds what it had before the burst (no fsync since,
    as JetStream's default ``sync_interval`` allows), so acknowledged events are gone from the
    stream. Boards republishes them from Postgres (the outbox's rewind after reconnecting)."""
    image = await asyncio.to_thread(stack.nats.disk_image, stack.root / f"nats-image-{time.monotonic_ns()}")
    acked = await workload.burst(24, acked=16)
    await asyncio.to_thread(stack.nats.crash, image)
    return f"nats-server host crash {acked} acks into a burst of 24 (store rolled back to before it), restarted"


async def postgres_down_for_a_while(stack: ChaosStack, workload: Workload, seconds: float = 6.0) -> str:
    """Longer than a request's patience: boards answers ``unavailable`` until it is back."""
    await asyncio.to_thread(stack.postgres.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(stack.postgres.start)
    return f"Postgres down for {seconds:g}s"


async def kill_audit_with_unacked_batch(stack: ChaosStack, workload: Workload) -> str:
    """Freeze audit, let JetStream hand it messages it cannot ack, and kill it so: redelivery."""
    client = await connect(stack.nats.admin_url, "chaos-audit-probe")
    try:
        js = client.jetstream()
        for _ in range(50):
            await workload.burst(6, acked=3)
            stack.pause("audit")
            await asyncio.sleep(0.3)  # whatever its pending pull request gets now, it cannot ack
            info = await js.consumer_info(BOARD_EVENTS_STREAM, "audit-board-events")
            if info.num_ack_pending:
                break
            stack.resume("audit")
            await asyncio.sleep(random.uniform(0.05, 0.4))
        else:
            raise AssertionError("audit never had a fetched batch unacked")
        pending = info.num_ack_pending
    finally:
        await client.close()
    stack.kill("audit")
    await stack.launch("audit")
    return f"kill -9 audit holding {pending} fetched, unacked messages, restarted"


async def crash_boards_after_commits(stack: ChaosStack, workload: Workload, times: int = 3) -> str:
    """Boards dies right after a commit, before publishing (the test hook), again and again."""
    exits = []
    for _ in range(times):
        if stack.services["boards"].proc.poll() is None:  # type: ignore[union-attr]
            stack.kill("boards")
        commits = str(random.randint(2, 6))
        await stack.launch("boards", wait=False, LIVEBOARD_TEST_HOOKS="1", BOARDS_FAULT_EXIT_AFTER_COMMIT=commits)
        proc = stack.services["boards"].proc
        assert proc is not None
        started = time.monotonic()
        while proc.poll() is None:
            assert time.monotonic() - started < 30, "boards never committed under the hook"
            await asyncio.sleep(0.05)
        exits.append(proc.returncode)
    assert exits == [70] * times, f"boards exited {exits}, not by the hook"
    await stack.launch("boards")
    return f"boards crashed between commit and publish {times} times under load, restarted"
