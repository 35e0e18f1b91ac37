"""The fast broadcast path (services/realtime/fastpath.py) is python-socketio's emit, only cheaper.

Raw clients record every Engine.IO packet as it arrives, over websocket (one frame each) and
long-polling (``\\x1e``-separated payloads), so the tests see exactly what is on the wire:

* byte identity: what ``broadcast`` sends is what python-socketio's own room emit sends from a
  stock server (same serializer), frame by frame and packet by packet;
* delivery: with members joining, leaving and dropping while a stream of events goes out, every
  member receives each event it should exactly once, in order, and an emit or ack to one socket
  lands exactly between the broadcasts sent before and after it;
* a member that stops reading is dropped as a slow consumer without holding the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from libs.common.devstack import free_port
from liveboard.bench.eio import SocketIOClient
from services.realtime import fastpath
from services.realtime.server import LiveboardAsyncServer

NS = "/workspace"
ROOM = "board:b"
EVENT_PREFIX = "42/workspace,"


# ---------------------------------------------------------------------------------------- server


@dataclass
class Server:
    sio: LiveboardAsyncServer
    url: str
    seq: int = 0


@contextlib.asynccontextmanager
async def serve(fast: bool) -> AsyncIterator[Server]:
    sio = LiveboardAsyncServer(
        fast_path=fast,
        serializer=fastpath.OrjsonPacket,
        async_mode="aiohttp",
        async_handlers=False,
        cors_allowed_origins="*",
        logger=False,
        engineio_logger=False,
    )
    app = web.Application()
    sio.attach(app)
    port = free_port()
    server = Server(sio, f"http://127.0.0.1:{port}")

    @sio.on("connect", namespace=NS)
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if isinstance(auth, dict) and auth.get("join"):
            await sio.enter_room(sid, ROOM, namespace=NS)

    @sio.on("join", namespace=NS)
    async def join(sid: str, data: Any = None) -> int:
        await sio.enter_room(sid, ROOM, namespace=NS)
        return server.seq

    @sio.on("leave", namespace=NS)
    async def leave(sid: str, data: Any = None) -> int:
        await sio.leave_room(sid, ROOM, namespace=NS)
        return server.seq

    @sio.on("marker", namespace=NS)
    async def marker(sid: str, data: Any = None) -> dict[str, int]:
        before = server.seq
        await sio.emit("marker", {"before": before}, to=sid, namespace=NS)
        return {"before": before, "after": server.seq}

    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


async def stream(server: Server, count: int, pad: str = "") -> None:
    """``count`` events with increasing ``seq`` through the fast path, yielding now and then."""
    for _ in range(count):
        server.seq += 1
        assert server.sio.broadcast("task_moved", {"seq": server.seq, "pad": pad}, ROOM, NS)
        if server.seq % 7 == 0:
            await asyncio.sleep(0.001)


# ---------------------------------------------------------------------------------------- clients


class WsClient(SocketIOClient):
    """Records each received frame (first byte, payload) and each Engine.IO packet, in order."""

    def __init__(self, url: str, auth: dict[str, Any] | None = None) -> None:
        super().__init__(url, None)
        self.auth = auth
        self.frames: list[tuple[int, bytes]] = []
        self.packets: list[str] = []

    def _frame(self, b0: int, payload: bytes) -> None:
        self.frames.append((b0, payload))
        super()._frame(b0, payload)

    def _packet(self, data: bytes) -> None:
        if data[:1] == b"0" and self.auth:  # our own CONNECT, with the auth payload the server reads
            self._send(b"40" + self._prefix + orjson.dumps(self.auth))
            return
        self.packets.append(data.decode())
        super()._packet(data)


class PollingClient:
    """Engine.IO v4 long-polling by hand: one GET in flight, POSTs for what the client sends."""

    def __init__(self, url: str, auth: dict[str, Any] | None = None) -> None:
        self.base = f"{url}/socket.io/?EIO=4&transport=polling"
        self.auth = auth
        self.packets: list[str] = []
        self.payloads: list[str] = []
        self.session = aiohttp.ClientSession()
        self.sid = ""
        self._next_id = 0
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._poller: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def connect(self) -> PollingClient:
        async with self.session.get(self.base) as response:
            self.sid = orjson.loads((await response.text())[1:])["sid"]
        await self._post("40" + NS + "," + (orjson.dumps(self.auth).decode() if self.auth else ""))
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def call(self, event: str, data: Any = None) -> Any:
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._acks[self._next_id] = future
        await self._post(f"42{NS},{self._next_id}" + orjson.dumps([event, data]).decode())
        return await asyncio.wait_for(future, 10)

    async def close(self) -> None:
        if self._poller is not None:
            with contextlib.suppress(Exception):
                await self._post("1")
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        await self.session.close()

    async def _post(self, body: str) -> None:
        async with self.session.post(f"{self.base}&sid={self.sid}", data=body.encode()) as response:
            assert response.status == 200, await response.text()

    async def _poll(self) -> None:
        while True:
            async with self.session.get(f"{self.base}&sid={self.sid}") as response:
                if response.status != 200:
                    return
                text = await response.text()
            self.payloads.append(text)
            for packet in text.split("\x1e"):
                await self._handle(packet)

    async def _handle(self, packet: str) -> None:
        if packet == "2":
            await self._post("3")
        elif packet == "1":
            raise asyncio.CancelledError
        elif packet.startswith("40" + NS):
            self.connected.set()
        elif packet.startswith("43" + NS + ","):
            body = packet[len(NS) + 3 :]
            bracket = body.index("[")
            future = self._acks.pop(int(body[:bracket]))
            self.packets.append(packet)
            future.set_result(orjson.loads(body[bracket:])[0])
        elif packet.startswith("4"):
            self.packets.append(packet)


def events(packets: list[str]) -> list[tuple[str, Any]]:
    """(name, payload) of every Socket.IO EVENT in ``packets``."""
    out = []
    for packet in packets:
        if packet.startswith(EVENT_PREFIX):
            name, payload = orjson.loads(packet[len(EVENT_PREFIX) :])
            out.append((name, payload))
    return out


def seqs(packets: list[str]) -> list[int]:
    return [payload["seq"] for name, payload in events(packets) if name == "task_moved"]


async def settle(clients: list[Any], expected_last: int, timeout: float = 10.0) -> None:
    """Until every client has seen ``expected_last`` (those still in the room), bounded."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if all((seqs(c.packets) or [0])[-1] == expected_last for c in clients):
            return
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------- tests

PAYLOADS: list[Any] = [
    {"seq": 1},
    {"seq": 2, "text": 'é ✓ 漢字 \u2028 "quoted" \\ back/slash', "none": None, "flag": True, "float": 1.5},
    {"seq": 3, "nested": {"list": [1, 2, {"deep": ["x"] * 30}]}, "pad": "p" * 200},  # 16-bit frame length
    {"seq": 4, "big": "b" * 70_000},  # 64-bit frame length
    {"seq": 5, "empty": {}, "ints": [0, -1, 2**53]},
]


async def received_by_transport(fast: bool) -> tuple[list[tuple[int, bytes]], list[str], list[str]]:
    async with serve(fast) as server:
        ws = await WsClient(server.url, {"join": True}).connect()
        poll = await PollingClient(server.url, {"join": True}).connect()
        try:
            for payload in PAYLOADS:
                if fast:
                    assert server.sio.broadcast("task_moved", payload, ROOM, NS)
                else:
                    await server.sio.emit("task_moved", payload, room=ROOM, namespace=NS)
                server.seq = payload["seq"]
            await settle([ws, poll], len(PAYLOADS))
            frames = [f for f in ws.frames if f[1].startswith(EVENT_PREFIX.encode())]
            return (
                frames,
                [p for p in ws.packets if p.startswith(EVENT_PREFIX)],
                [p for p in poll.packets if p.startswith(EVENT_PREFIX)],
            )
        finally:
            ws.close()
            await poll.close()


async def test_broadcast_is_byte_identical_to_python_socketio_emit():
    fast_frames, fast_ws, fast_polling = await received_by_transport(fast=True)
    stock_frames, stock_ws, stock_polling = await received_by_transport(fast=False)
    assert len(fast_frames) == len(PAYLOADS)
    assert fast_frames == stock_frames  # websocket: same opcode/FIN byte, same payload bytes
    assert fast_ws == stock_ws
    assert fast_polling == stock_polling and len(fast_polling) == len(PAYLOADS)
    assert [p["seq"] for _, p in events(fast_polling)] == [1, 2, 3, 4, 5]


async def test_every_member_gets_every_event_once_in_order_while_members_come_and_go():
    rng = random.Random(7)
    total = 600
    async with serve(fast=True) as server:
        url = server.url
        static = [await WsClient(url, {"join": True}).connect() for _ in range(4)]
        static += [await PollingClient(url, {"join": True}).connect() for _ in range(2)]
        joiners = [await WsClient(url).connect() for _ in range(3)] + [await PollingClient(url).connect()]
        leavers = [await WsClient(url, {"join": True}).connect() for _ in range(3)]
        leavers += [await PollingClient(url, {"join": True}).connect()]
        droppers = [await WsClient(url, {"join": True}).connect() for _ in range(2)]
        markers = [await WsClient(url, {"join": True}).connect(), await PollingClient(url, {"join": True}).connect()]
        acks: dict[int, list[dict[str, int]]] = {id(m): [] for m in markers}

        async def act(client: Any, what: str) -> Any:
            await asyncio.sleep(rng.uniform(0.005, 0.15))
            if what == "drop":
                client.abort()
                return None
            return await client.call(what, {})

        async def mark(client: Any) -> None:
            for _ in range(12):
                await asyncio.sleep(rng.uniform(0.001, 0.02))
                acks[id(client)].append(await client.call("marker", {}))

        try:
            jobs = [act(c, "join") for c in joiners] + [act(c, "leave") for c in leavers]
            jobs += [act(c, "drop") for c in droppers] + [mark(c) for c in markers]
            answers = await asyncio.gather(stream(server, total, pad="x" * 300), *jobs)
            await settle(static + joiners + markers, total)
        finally:
            for client in static + joiners + leavers + droppers + markers:
                if isinstance(client, PollingClient):
                    await client.close()
                else:
                    client.close()

        for client in static + markers:  # in the room throughout: everything, once, in order
            assert seqs(client.packets) == list(range(1, total + 1))
        for client, joined_at in zip(joiners, answers[1 : 1 + len(joiners)], strict=True):
            got = seqs(client.packets)  # from right after the join to the end, once, in order
            assert got == list(range(joined_at + 1, total + 1)), (joined_at, got[:5])
        for client, left_at in zip(leavers, answers[1 + len(joiners) : 1 + len(joiners) + len(leavers)], strict=True):
            assert seqs(client.packets) == list(range(1, left_at + 1))
        for client in droppers:  # whatever arrived before the abort is a gapless prefix
            got = seqs(client.packets)
            assert got == list(range(1, len(got) + 1))

        for client in markers:  # an emit to one socket and its ack sit exactly where they were sent
            stream_pos = 0
            positions: dict[str, list[int]] = {"marker": [], "ack": []}
            for packet in client.packets:
                if packet.startswith(EVENT_PREFIX):
                    name, payload = orjson.loads(packet[len(EVENT_PREFIX) :])
                    if name == "task_moved":
                        stream_pos = payload["seq"]
                    elif name == "marker":
                        positions["marker"].append(stream_pos)
                elif packet.startswith("43" + NS):
                    positions["ack"].append(stream_pos)
            sent = acks[id(client)]
            assert len(positions["marker"]) == len(positions["ack"]) == len(sent) == 12
            for at_marker, at_ack, ack in zip(positions["marker"], positions["ack"], sent, strict=True):
                assert ack["before"] <= at_marker <= ack["after"]
                assert at_ack == ack["after"]  # the ack is written the moment the handler returns


async def test_a_member_that_stops_reading_is_dropped_and_the_others_get_everything(monkeypatch):
    monkeypatch.setattr(fastpath, "MAX_BUFFERED", 256 << 10)
    async with serve(fast=True) as server:
        healthy = [await WsClient(server.url, {"join": True}).connect() for _ in range(2)]
        stuck = await WsClient(server.url, {"join": True}).connect()
        stuck.transport.pause_reading()  # the kernel buffers fill, then the server's
        disconnected = asyncio.Event()

        @server.sio.on("disconnect", namespace=NS)
        async def gone(sid: str, reason: Any = None) -> None:
            if reason == fastpath.SLOW_CONSUMER:
                disconnected.set()

        try:
            await stream(server, 3000, pad="s" * 2000)
            await asyncio.wait_for(disconnected.wait(), 10)
            await settle(healthy, 3000)
        finally:
            for client in [*healthy, stuck]:
                client.close()
        for client in healthy:
            assert seqs(client.packets) == list(range(1, 3001))
        participants = list(server.sio.manager.get_participants(NS, ROOM))
        assert len(participants) == 2  # the stuck one left the room with its disconnect


async def test_skip_sid_leaves_out_one_member():
    async with serve(fast=True) as server:
        clients = [await WsClient(server.url, {"join": True}).connect() for _ in range(3)]
        sids = [sid for sid, _ in server.sio.manager.get_participants(NS, ROOM)]
        try:
            assert server.sio.broadcast("task_moved", {"seq": 1}, ROOM, NS, skip_sid=sids[0])
            await asyncio.sleep(0.2)
            got = sorted(len(seqs(c.packets)) for c in clients)
        finally:
            for client in clients:
                client.close()
        assert got == [0, 1, 1]
