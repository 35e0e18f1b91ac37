"""What a generator process does: hold board members and check every broadcast they receive.

A ``MemberAgent`` connects its share of the sockets, joins each to its board, and from then on
records, per socket, every persisted event: latency (from the sender's monotonic timestamp in
the ``correlation_id``, same machine), duplicates, gaps and reordering of ``seq``. Latencies are
returned as packed int64 nanoseconds, so half a million samples cost one pickle.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from .eio import ConnectRefused, SocketIOClient
from .pool import Agent


def stamp(run_id: str, number: int) -> str:
    """A correlation id carrying the send time: ``bench.<run>.<n>.<monotonic ns>``."""
    return f"bench.{run_id}.{number}.{time.monotonic_ns()}"


def stamped_at(correlation_id: Any, prefix: str) -> int | None:
    if isinstance(correlation_id, str) and correlation_id.startswith(prefix):
        return int(correlation_id.rsplit(".", 1)[1])
    return None


@dataclass(slots=True)
class Member:
    """Per-socket bookkeeping of the sequence it saw."""

    board_id: str
    last_seq: int | None = None
    received: int = 0
    gaps: int = 0
    duplicates: int = 0
    #: The last notice the server sent this socket about its session (``session_expired``, ...).
    notice: str | None = None
    #: The pending keepalive of this socket (``MemberAgent.start_keepalive``).
    timer: asyncio.TimerHandle | None = None


#: Server events that say something about a socket's session: kept to explain a closed socket.
NOTICES = frozenset({"session_expired", "server_shutdown", "board_access_revoked", "token_expiring", "error"})
#: The board id a keepalive ``leave_board`` names: never joined, so the server only answers
#: ``{left: false}`` (and counts the socket as active, which pings do not).
KEEPALIVE_BOARD = "liveboard-bench-keepalive"


@dataclass
class Tally:
    latencies: array = field(default_factory=lambda: array("q"))
    delivered: int = 0
    events: Counter = field(default_factory=Counter)
    resyncs: int = 0


class MemberAgent(Agent):
    """Connects and joins sockets; measures the board events they receive."""

    def __init__(self, index: int, *, url: str, run_id: str, **options: Any) -> None:
        super().__init__(index)
        self.url = url
        self.prefix = f"bench.{run_id}."
        self.clients: list[SocketIOClient] = []
        self.tally = Tally()
        self._keepalive_s = 0.0
        self.keepalives = {"sent": 0, "acked": 0, "refused": 0}

    def _on_event(self, client: SocketIOClient, name: str, payload: Any, received_ns: int) -> None:
        tally = self.tally
        tally.events[name] += 1
        if name in NOTICES:
            text = orjson.dumps(payload).decode()[:200] if payload is not None else ""
            client.tag.notice = f"{name} {text}".strip()
            return
        if name == "resync_required":
            tally.resyncs += 1
            return
        if not isinstance(payload, dict):
            return
        seq = payload.get("seq")
        if seq is None:
            return  # ephemeral (presence, typing): outside the sequence
        member: Member = client.tag
        if member.last_seq is not None:
            if seq <= member.last_seq:
                member.duplicates += 1
                return
            if seq != member.last_seq + 1:
                member.gaps += seq - member.last_seq - 1
        member.last_seq = seq
        member.received += 1
        sent = stamped_at(payload.get("correlation_id"), self.prefix)
        if sent is not None:
            tally.delivered += 1
            tally.latencies.append(received_ns - sent)

    async def connect(self, members: list[dict[str, Any]], concurrency: int = 100, join: bool = True) -> dict[str, Any]:
        """Connect (and join) ``members`` — each ``{token, board_id, organization_id, division_id}``."""
        gate = asyncio.Semaphore(concurrency)
        connect_ms: list[float] = []
        join_ms: list[float] = []
        refused: Counter = Counter()
        failed: Counter = Counter()

        async def one(spec: dict[str, Any]) -> None:
            async with gate:
                client = SocketIOClient(self.url, spec["token"], self._on_event)
                client.tag = Member(spec["board_id"])
                began = time.perf_counter()
                try:
                    await client.connect()
                except ConnectRefused as exc:
                    refused[exc.code or "unknown"] += 1
                    return
                except (OSError, TimeoutError) as exc:
                    failed[type(exc).__name__] += 1
                    client.abort()
                    return
                connect_ms.append((time.perf_counter() - began) * 1000)
                self.clients.append(client)
                self._schedule_keepalive(client)
                if not join:
                    return
                began = time.perf_counter()
                try:
                    answer = await client.call(
                        "join_board",
                        {
                            "board_id": spec["board_id"],
                            "organization_id": spec["organization_id"],
                            "division_id": spec.get("division_id"),
                        },
                        timeout=60,
                    )
                except (OSError, TimeoutError) as exc:
                    failed[f"join {type(exc).__name__}"] += 1
                    return
                if not answer.get("ok"):
                    refused[f"join {answer['error']['code']}"] += 1
                    return
                join_ms.append((time.perf_counter() - began) * 1000)
                client.tag.last_seq = answer["data"]["seq"]

        await asyncio.gather(*(one(spec) for spec in members))
        return {
            "connected": len(connect_ms),
            "joined": len(join_ms),
            "refused": dict(refused),
            "failed": dict(failed),
            "connect_ms": connect_ms,
            "join_ms": join_ms,
        }

    async def start(self) -> int:
        """Forget what was received so far (warm-up, joins); returns the open sockets."""
        self.tally = Tally()
        for client in self.clients:
            member: Member = client.tag
            member.received = member.gaps = member.duplicates = 0
        return sum(1 for c in self.clients if c.is_open)

    async def delivered(self) -> int:
        return self.tally.delivered

    async def collect(self) -> dict[str, Any]:
        members = [c.tag for c in self.clients]
        return {
            "delivered": self.tally.delivered,
            "latencies_ns": self.tally.latencies.tobytes(),
            "gaps": sum(m.gaps for m in members),
            "duplicates": sum(m.duplicates for m in members),
            "resyncs": self.tally.resyncs,
            "events": dict(self.tally.events),
            "open": sum(1 for c in self.clients if c.is_open),
        }

    async def start_keepalive(self, interval: float) -> None:
        """From now on, every socket this agent holds sends a cheap event ``interval`` seconds
        after its connect and then every ``interval`` seconds (0: never).

        realtime closes a socket that sent no event for ``WEBSOCKET_CONNECTION_TIMEOUT`` (300 s
        by default); Engine.IO pings do not count. One timer per socket, so the sends are spread
        as the connects were (10,000 sockets every 120 s: ~83 events/s), never a burst."""
        self._keepalive_s = interval
        for client in self.clients:
            self._schedule_keepalive(client)

    def _schedule_keepalive(self, client: SocketIOClient) -> None:
        if self._keepalive_s > 0 and client.tag is not None:
            client.tag.timer = asyncio.get_running_loop().call_later(self._keepalive_s, self._send_keepalive, client)

    def _send_keepalive(self, client: SocketIOClient) -> None:
        if not client.is_open or client.sid is None:
            return
        counts = self.keepalives
        try:
            future = client.emit("leave_board", {"board_id": KEEPALIVE_BOARD}, ack=True)
        except ConnectionError:
            return
        counts["sent"] += 1

        def answered(done: asyncio.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                counts["acked" if (done.result() or {}).get("ok") else "refused"] += 1

        if future is not None:
            future.add_done_callback(answered)
        self._schedule_keepalive(client)

    async def keepalive_counts(self) -> dict[str, int]:
        return dict(self.keepalives)

    async def closures(self) -> list[dict[str, Any]]:
        """Every socket this agent held that the server (or the network) closed: when and why."""
        closed = []
        for number, client in enumerate(self.clients):
            if client.closed_by_us or (client.close_reason is None and client.is_open):
                continue
            member: Member = client.tag
            ended = client.closed_ns or time.monotonic_ns()
            closed.append(
                {
                    "agent": self.index,
                    "socket": number,
                    "sid": client.sid,
                    "board_id": member.board_id,
                    "reason": client.close_reason or "transport closing",
                    "notice": member.notice,
                    "after_s": round((ended - client.opened_ns) / 1e9, 1),
                }
            )
        return closed

    async def close(self) -> None:
        for client in self.clients:
            if client.tag is not None and client.tag.timer is not None:
                client.tag.timer.cancel()
        for client in self.clients:
            client.close()
        self.clients.clear()
        await asyncio.sleep(0.05)  # let the close frames leave


def latencies_ms(results: list[dict[str, Any]]) -> list[float]:
    """The agents' packed nanosecond samples as milliseconds."""
    samples: list[float] = []
    for result in results:
        packed = array("q")
        packed.frombytes(result["latencies_ns"])
        samples.extend(value / 1e6 for value in packed)
    return samples
