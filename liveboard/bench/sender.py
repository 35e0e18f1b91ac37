"""Movers: sockets that commit real ``task_moved`` events, each stamped with its send time.

A broadcast in the benchmark is a real commit (socket → realtime → boards → Postgres → NATS →
every realtime replica → the room), so it exercises exactly the path board events take in
production, including the fast path in ``_deliver``. The send time rides in ``correlation_id``
(kept verbatim in the envelope, CONTRACT §7), so receivers need no clock but the machine's.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .agents import stamp
from .eio import SocketIOClient


@dataclass
class Mover:
    """One socket moving one card back and forth between two columns."""

    client: SocketIOClient
    board_id: str
    card_id: str
    columns: tuple[str, str]
    run_id: str
    moves: int = 0
    sent: int = 0
    ack_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    conflicts: int = 0
    acked: int = 0
    pending: set[asyncio.Future[Any]] = field(default_factory=set)

    def move(self) -> asyncio.Future[Any]:
        """Send the next move now (``expected_version`` is not sent: every move commits)."""
        number = self.moves
        self.moves += 1
        self.sent += 1
        began = time.perf_counter()
        future = self.client.emit(
            "task_moved",
            {
                "board_id": self.board_id,
                "task_id": self.card_id,
                "from_column_id": self.columns[(number + 1) % 2],
                "to_column_id": self.columns[number % 2],
                "position": 0,
                "correlation_id": stamp(self.run_id, number),
            },
            ack=True,
        )
        assert future is not None
        self.pending.add(future)

        def done(fut: asyncio.Future[Any]) -> None:
            self.pending.discard(fut)
            if fut.cancelled() or fut.exception() is not None:
                self.errors["connection"] += 1
                return
            answer = fut.result()
            if answer.get("ok"):
                self.acked += 1
                self.ack_ms.append((time.perf_counter() - began) * 1000)
                if answer["data"].get("conflict"):
                    self.conflicts += 1
            else:
                self.errors[answer["error"]["code"]] += 1

        future.add_done_callback(done)
        return future

    def reset(self) -> None:
        self.ack_ms.clear()
        self.errors.clear()
        self.conflicts = self.acked = self.sent = 0


async def paced(movers: list[Mover], rate: float, duration: float, max_moves: int) -> float:
    """Open loop: ``rate`` moves/s in total, round-robin over ``movers``; returns worst lateness (ms).

    The schedule does not wait for acks (a slow server builds a queue, as real clients would);
    lateness says whether the generator itself kept the schedule.
    """
    count = min(max_moves, max(1, int(rate * duration)))
    loop = asyncio.get_running_loop()
    began = loop.time()
    worst = 0.0
    for number in range(count):
        due = began + number / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        worst = max(worst, loop.time() - due)
        movers[number % len(movers)].move()
    await settle(movers)
    return worst * 1000


async def closed_loop(movers: list[Mover], duration: float, max_moves: int, window: int = 1) -> None:
    """Each mover keeps ``window`` moves in flight for ``duration`` seconds (throughput ceiling)."""
    deadline = time.monotonic() + duration
    budget = [max_moves]

    async def drive(mover: Mover) -> None:
        while time.monotonic() < deadline and budget[0] > 0:
            while len(mover.pending) < window and budget[0] > 0:
                budget[0] -= 1
                mover.move()
            await asyncio.wait(set(mover.pending), return_when=asyncio.FIRST_COMPLETED)

    await asyncio.gather(*(drive(m) for m in movers))
    await settle(movers)


async def settle(movers: list[Mover], timeout: float = 30.0) -> None:
    """Wait for the acks still outstanding (bounded)."""
    pending = {f for m in movers for f in m.pending}
    if pending:
        await asyncio.wait(pending, timeout=timeout)
