"""The fast broadcast path: one encoding per board event, the same bytes to every member.

Why: stock python-socketio delivers a room emit with one task per recipient, and python-engineio
puts each packet on a per-socket queue drained by a per-socket writer task that re-encodes it
and awaits a send. That costs 60-115 µs of CPU per delivered message and ~31 KB per idle
connection. Here a broadcast encodes the Socket.IO packet, the Engine.IO packet and the
WebSocket frame once, then writes that frame to each member's transport synchronously.

Three pieces, all behind python-socketio's normal API:

* ``FastSocket`` (an Engine.IO socket): once upgraded to an uncompressed websocket, every packet
  to it — broadcasts, acks, single emits, pings — is written straight to its transport by the
  caller, in call order. There is no queue and no writer task, so nothing can reorder or
  interleave: a frame is one ``transport.write`` and writes happen in the order packets are
  sent. Polling (and still-upgrading) sockets keep python-engineio's queue, drained by the
  long-poll (or, at upgrade, flushed to the websocket before direct writes start). Pings are a
  timer, not a sleeping task; the receive loop needs no extra task per message. A socket whose
  unsent bytes pass ``MAX_BUFFERED`` is a slow consumer: it is dropped (it reconnects and
  catches up with ``since_seq``) instead of growing memory without bound.
* ``FastEngineServer``: ``protocol.ProtocolEngineServer`` (python-engineio with the protocol's
  rules and the unauthenticated-transport limits, shared with the stock path) creating
  ``FastSocket``s and websockets without permessage-deflate (Node's engine.io default:
  per-connection compression would make the shared frame impossible and costs more CPU than the
  bytes it saves on small events).
* ``broadcast``: the room emit used by ``WebSocketServer._deliver``.

Ordering: ``_deliver`` runs under the board feed's lock and ``broadcast`` does not yield, so
board events reach each socket in ``seq`` order, each exactly once; an ack or emit to one socket
that was sent before the broadcast is on the wire (or in the polling queue) before it, and one
sent after is behind it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .protocol import GuardedWebSocket, ProtocolEngineServer, ProtocolSocket

log = logging.getLogger(__name__)

#: Unsent bytes a websocket may hold before it is dropped as a slow consumer (a 5,000-card
#: snapshot is ~1.5 MB, so legitimate bursts stay well under).
MAX_BUFFERED = 8 << 20
SLOW_CONSUMER = "slow consumer"


def fast_path_enabled(config: Any) -> bool:
    """``REALTIME_FAST_PATH`` (default on); off gives stock python-socketio delivery, for comparison."""
    return bool(getattr(config, "fast_path", True))


# ---------------------------------------------------------------------------------------- encoding


class OrjsonJson:
    """The ``json`` module interface python-socketio calls, backed by orjson (5-10x faster)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class OrjsonPacket(sio_packet.Packet):
    """Socket.IO packets encoded with orjson; a ``serializer`` of this server only (no global)."""

    json = OrjsonJson


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, unfragmented server frame (RFC 6455 §5.2)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big")
    return header + payload


def frame_of(encoded: str | bytes) -> bytes:
    """The websocket frame of an encoded Engine.IO packet (text, or binary as raw bytes)."""
    if isinstance(encoded, str):
        return ws_frame(encoded.encode())
    return ws_frame(bytes(encoded), 0x2)


# ---------------------------------------------------------------------------------------- sockets


class _DetachedQueue:
    """Stands in for a websocket's Engine.IO queue once packets go straight to the transport.

    An ``asyncio.Queue`` with its ``Event`` is four deques, ~3 KB per socket, unused from then on;
    python-engineio may still call ``put``/``join`` on it while closing, which must be harmless.
    """

    def put_nowait(self, item: Any) -> None:
        pass

    async def put(self, item: Any) -> None:
        pass

    async def join(self) -> None:
        pass

    def get_nowait(self) -> Any:
        raise asyncio.QueueEmpty

    async def get(self) -> Any:
        return None  # what python-engineio's poll() reads as "closed"

    def task_done(self) -> None:
        pass

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0


DETACHED_QUEUE = _DetachedQueue()


class FastSocket(ProtocolSocket):
    """An Engine.IO socket that, on an uncompressed websocket, writes each packet directly.

    Instances start life as python-engineio ``AsyncSocket``s (``FastEngineServer`` switches their
    class when they are registered), so new state lives in class-level defaults.
    """

    _out: Any = None  # the transport, while direct writes are on

    def write_frame(self, frame: bytes, pkt: eio_packet.Packet) -> None:
        """Send an already framed packet now (websocket) or queue ``pkt`` (polling, upgrading)."""
        out = self._out
        if out is None:
            self.queue.put_nowait(pkt)
            return
        if out.is_closing():
            return
        out.write(frame)
        if out.get_write_buffer_size() > MAX_BUFFERED:
            self._drop_slow_consumer(out)

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self._out is None:
            await super().send(pkt)
        elif await self.check_ping_timeout():
            self.write_frame(frame_of(pkt.encode()), pkt)

    def _drop_slow_consumer(self, out: Any) -> None:
        log.warning("dropping a slow consumer", extra={"eio_sid": self.sid, "buffered": out.get_write_buffer_size()})
        self._out = None
        self.server.start_background_task(self.close, wait=False, abort=True, reason=SLOW_CONSUMER)
        out.abort()

    def send_now(self, pkt: eio_packet.Packet) -> None:
        """Pings (``ProtocolSocket``'s timer): written directly once the websocket took over."""
        if self._out is not None:
            self.write_frame(frame_of(pkt.encode()), pkt)
        else:
            self.queue.put_nowait(pkt)

    # -------------------------------------------------------------- websocket transport

    async def _websocket_handler(self, ws: Any) -> Any:
        response: web.WebSocketResponse = ws._sock
        if response.compress:  # a compressed websocket cannot share frames: the stock loop
            return await super()._websocket_handler(ws)
        if self.connected:  # upgrade from polling: the stock probe/upgrade handshake
            if not await self._upgrade_handshake(ws):
                return None
        else:
            self.connected = True
            self.upgraded = True
        transport = ws.environ["aiohttp.request"].transport
        if not self._flush_queue(transport):
            await ws.close()
            return None
        self.queue = DETACHED_QUEUE
        self._out = transport
        self._response = response
        try:
            await self._receive_loop(response)
        finally:
            self._out = None
            self._response = None
            await ws.close()
            await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        return None

    async def _upgrade_handshake(self, ws: Any) -> bool:
        """python-engineio's upgrade: ``2probe`` → ``3probe``, end the poll, wait for ``5``."""
        self.upgrading = True
        try:
            probe = eio_packet.Packet(encoded_packet=await ws.wait())
        except OSError:
            self.upgrading = False
            return False
        if probe.packet_type != eio_packet.PING or probe.data != "probe":
            self.upgrading = False
            return False
        await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
        await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending long-poll
        try:
            upgrade = eio_packet.Packet(encoded_packet=await ws.wait())
        except OSError:
            self.upgrading = False
            return False
        if upgrade.packet_type != eio_packet.UPGRADE:
            self.upgraded = self.upgrading = False
            return False
        self.upgraded, self.upgrading = True, False
        return True

    def _flush_queue(self, transport: Any) -> bool:
        """Write what was queued before the websocket took over, in order; False if closing."""
        while True:
            try:
                pkt = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return True
            self.queue.task_done()
            if pkt is None:
                return False
            if pkt.packet_type != eio_packet.NOOP:
                transport.write(frame_of(pkt.encode()))

    async def _receive_loop(self, response: web.WebSocketResponse) -> None:
        """Read packets until the client goes away or sends what may not be decoded; no task or
        timer per message. Returning closes the transport (``_websocket_handler``)."""
        timeout = self.server.ping_interval + self.server.ping_timeout
        limit = self.server.max_http_buffer_size
        while True:
            try:
                message = await response.receive(timeout)
            except (TimeoutError, OSError, RuntimeError):
                return  # client silent past its ping deadline, or the transport failed / closed
            data = message.data
            if not isinstance(data, str | bytes) or len(data) > limit:
                return  # close, error, or (aiohttp enforces it too) over the transport cap
            if not await self.inbound(data):  # undecodable, or too large before authenticating
                return
            try:
                await self.receive(eio_packet.Packet(encoded_packet=data))
            except eio_exceptions.UnknownPacketError:
                pass  # OPEN, PING or NOOP from a client: ignored, as python-engineio and Node do
            except eio_exceptions.SocketIsClosedError:
                return
            except Exception:  # our bug, not the client's: logged, and the transport is closed
                log.exception("websocket receive failed", extra={"eio_sid": self.sid})
                return


class _UncompressedWebSocket(GuardedWebSocket):
    """python-engineio's aiohttp websocket (guarded), without permessage-deflate (as Node's engine.io)."""

    compress = False


class FastEngineServer(ProtocolEngineServer):
    """The protocol-hardened python-engineio server with ``FastSocket``s and uncompressed websockets."""

    socket_class = FastSocket
    websocket_class = _UncompressedWebSocket


# ---------------------------------------------------------------------------------------- broadcast


def broadcast(sio: Any, event: str, data: Any, room: str, namespace: str, skip_sid: str | None = None) -> bool:
    """Emit ``event`` to every local member of ``room`` (but ``skip_sid``) with one encoding.

    Returns False when not handled: binary payloads (attachments) are left to python-socketio.
    """
    encoded = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data]).encode()
    if not isinstance(encoded, str):
        return False
    members = sio.manager.rooms.get(namespace, {}).get(room)
    if not members:
        return True
    skip = members.get(skip_sid) if skip_sid is not None else None
    pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
    frame = ws_frame(pkt.encode().encode())  # pkt keeps its encoding cached for queued sends
    sockets = sio.eio.sockets
    for eio_sid in list(members.values()):
        socket = sockets.get(eio_sid)
        if socket is None or socket.closed or eio_sid == skip:
            continue
        out = getattr(socket, "_out", None)
        if out is None:  # polling, upgrading, or a stock socket: its own queue keeps the order
            socket.queue.put_nowait(pkt)
        elif not out.is_closing():  # FastSocket.write_frame, inlined: this loop is the hot path
            out.write(frame)
            if out.get_write_buffer_size() > MAX_BUFFERED:
                socket._drop_slow_consumer(out)
    return True
