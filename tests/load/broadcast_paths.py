"""Three ways to deliver one room broadcast, measured in isolation (no NATS, no boards).

    .venv/bin/python tests/load/broadcast_paths.py [--members 1000] [--rounds 200] [--loop uvloop]

* ``stock``  — ``await sio.emit(room=...)`` on stock python-socketio/engineio: a task per
  recipient, a queue and a writer task per socket;
* ``queue``  — the event encoded once (``fastpath.broadcast``) and the same Engine.IO packet put on
  each stock socket's queue, drained by its writer task (ordering kept by the queue);
* ``direct`` — the fast path as shipped: encoded once, framed once, written to each websocket's
  transport by the broadcaster (``FastSocket``; ordering kept by writing in call order);
* ``floor``  — only ``transport.write`` of a ready-made frame to each member: what any server
  pays per message on this machine (the kernel's send, and on loopback the receiver's TCP).

A server process holds ``--members`` websocket members of one room, two reader processes read
them; the server's user and system CPU per delivered message is printed for each way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import resource
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NS = "/workspace"
ENVELOPE = {
    "event_type": "task_moved",
    "data": {"task_id": "t" * 36, "task": {"title": "card", "description": "d" * 600}},
    "seq": 0,
    "correlation_id": "bench.x.1.1",
}


def _reader(url: str, count: int, rounds: int, ready: Any) -> None:
    import uvloop

    from liveboard.bench.eio import SocketIOClient

    async def main() -> None:
        got = [0]
        done = asyncio.Event()

        def on_event(*_: Any) -> None:
            got[0] += 1
            if got[0] == count * rounds:
                done.set()

        clients = [await SocketIOClient(url, None, on_event).connect() for _ in range(count)]
        ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 120)
        for client in clients:
            client.close()

    uvloop.run(main())


async def measure(way: str, members: int, rounds: int) -> tuple[float, float]:
    from aiohttp import web

    from services.realtime import fastpath
    from services.realtime.server import LiveboardAsyncServer

    sio = LiveboardAsyncServer(
        fast_path=way in ("direct", "floor"),
        serializer=fastpath.OrjsonPacket,
        async_mode="aiohttp",
        async_handlers=False,
        cors_allowed_origins="*",
    )

    @sio.on("connect", namespace=NS)
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await sio.enter_room(sid, "room", namespace=NS)

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    context = multiprocessing.get_context("spawn")
    ready = [context.Event() for _ in range(2)]
    readers = [
        context.Process(target=_reader, args=(f"http://127.0.0.1:{port}", members // 2, rounds, ready[i]))
        for i in range(2)
    ]
    for reader in readers:
        reader.start()
    for event in ready:
        await asyncio.get_running_loop().run_in_executor(None, event.wait, 60)
    await asyncio.sleep(1)
    transports = [socket._out for socket in sio.eio.sockets.values()] if way == "floor" else []
    frame = fastpath.ws_frame(b"42/workspace," + fastpath.OrjsonJson.dumps(["task_moved", ENVELOPE]).encode())
    began = resource.getrusage(resource.RUSAGE_SELF)
    for number in range(rounds):
        envelope = {**ENVELOPE, "seq": number + 1}
        if way == "floor":
            for transport in transports:
                transport.write(frame)
        elif way == "stock":
            await sio.emit("task_moved", envelope, room="room", namespace=NS)
        else:
            assert fastpath.broadcast(sio, "task_moved", envelope, "room", NS)
        await asyncio.sleep(0.02)
    ended = resource.getrusage(resource.RUSAGE_SELF)
    for reader in readers:
        await asyncio.get_running_loop().run_in_executor(None, reader.join, 120)
    await runner.cleanup()
    delivered = members // 2 * 2 * rounds
    return ((ended.ru_utime - began.ru_utime) / delivered * 1e6, (ended.ru_stime - began.ru_stime) / delivered * 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--way", action="append", choices=("stock", "queue", "direct", "floor"), default=None)
    args = parser.parse_args()
    if not 2 <= args.members <= 5000 or not 1 <= args.rounds <= 2000:
        parser.error("--members 2..5000 and --rounds 1..2000")
    print(f"{args.members} members, {args.rounds} broadcasts, {args.loop}")
    print(f"{'way':<8} {'user µs/msg':>12} {'system µs/msg':>14} {'total':>8}")
    for way in args.way or ["stock", "queue", "direct", "floor"]:
        run = uvloop_run if args.loop == "uvloop" else asyncio.run
        user, system = run(measure(way, args.members, args.rounds))
        print(f"{way:<8} {user:12.2f} {system:14.2f} {user + system:8.2f}", flush=True)
    return 0


def uvloop_run(coro: Any) -> Any:
    import uvloop

    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
