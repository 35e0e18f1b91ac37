"""A Socket.IO v5 client over one Engine.IO v4 websocket, written against the wire format.

The load generator must never be the unmeasured bottleneck, so it does not use a client library:
each connection is one ``asyncio.Protocol`` that does the HTTP upgrade, parses server frames
(unmasked, never fragmented by Socket.IO servers but handled anyway) and speaks just enough of
the protocols: ``0`` open → ``40/workspace,{auth}``; ping ``2`` → pong ``3``; events
``42/workspace,[name, payload]``; acks ``43/workspace,<id>[payload]``. Receiving a broadcast
costs one slice and one ``orjson.loads``; no task, no future, no message object.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

NAMESPACE = "/workspace"
_OPEN, _CLOSE, _PING, _MESSAGE = ord("0"), ord("1"), ord("2"), ord("4")

#: ``on_event(client, name, payload, received_ns)`` — called for every ``42`` packet.
EventHandler = Callable[["SocketIOClient", str, Any, int], None]


class ConnectRefused(Exception):
    """The server answered the namespace CONNECT with CONNECT_ERROR (``err.data`` in JS)."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.data = data
        self.code = data.get("data", {}).get("code") if isinstance(data, dict) else None


def _mask(payload: bytes, key: bytes) -> bytes:
    """RFC 6455 client masking with big-integer XOR (one C call, no Python loop)."""
    n = len(payload)
    if not n:
        return payload
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(n, "little")


def client_frame(text: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (the server rejects unmasked ones)."""
    key = os.urandom(4)
    n = len(text)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + key + _mask(text, key)


class SocketIOClient(asyncio.Protocol):
    """One websocket connection; ``connect`` resolves once the namespace is joined."""

    def __init__(
        self, url: str, token: str | None, on_event: EventHandler | None = None, namespace: str = NAMESPACE
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        self.path = (parts.path.rstrip("/") or "") + "/socket.io/?EIO=4&transport=websocket"
        self.token = token
        self.namespace = namespace
        self._prefix = namespace.encode() + b","
        self._event_prefix = b"42" + self._prefix
        self._ack_prefix = b"43" + self._prefix
        self.on_event = on_event
        self.transport: asyncio.Transport | None = None
        self.sid: str | None = None
        self.connected: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] | None = None
        self._buf = bytearray()
        self._upgraded = False
        self._frag = bytearray()
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self.tag: Any = None  # free for the agent using this client
        #: Why the connection ended, in the server's words where it said any (``None`` while open);
        #: ``closed_by_us`` when this side closed it (``close``/``abort``).
        self.close_reason: str | None = None
        self.closed_by_us = False
        self.opened_ns = 0
        self.closed_ns = 0

    # ------------------------------------------------------------------ public

    async def connect(self, timeout: float = 30.0, local_host: str | None = None) -> SocketIOClient:
        loop = asyncio.get_running_loop()
        self.connected = loop.create_future()
        self.closed = loop.create_future()
        local = (local_host, 0) if local_host else None
        await asyncio.wait_for(loop.create_connection(lambda: self, self.host, self.port, local_addr=local), timeout)
        await asyncio.wait_for(self.connected, timeout)
        return self

    def emit(self, event: str, payload: Any, *, ack: bool = False) -> asyncio.Future[Any] | None:
        """Send an event; with ``ack`` the future resolves to the server's ack argument."""
        future = None
        ident = b""
        if ack:
            self._next_id += 1
            ident = str(self._next_id).encode()
            future = asyncio.get_running_loop().create_future()
            self._acks[self._next_id] = future
        self._send(self._event_prefix + ident + orjson.dumps([event, payload]))
        return future

    async def call(self, event: str, payload: Any, timeout: float = 30.0) -> Any:
        future = self.emit(event, payload, ack=True)
        assert future is not None
        return await asyncio.wait_for(future, timeout)

    def close(self) -> None:
        """Leave the namespace and close the websocket (this side's decision)."""
        if self.close_reason is None:
            self.closed_by_us = True
            self.close_reason = "closed by the bench"
        self._close()

    def abort(self) -> None:
        if self.close_reason is None:
            self.closed_by_us = True
            self.close_reason = "aborted by the bench"
        if self.transport is not None:
            self.transport.abort()

    def _ended(self, reason: str) -> None:
        """The server ended the connection: keep its first word on why."""
        if self.close_reason is None:
            self.close_reason = reason
            self.closed_ns = time.monotonic_ns()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self._send(b"41" + self._prefix)
                self.transport.write(client_frame(b"", 0x8))
            finally:
                self.transport.close()

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        self.opened_ns = time.monotonic_ns()
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"connection lost: {exc or 'closed'}")
        self._ended(f"TCP connection lost ({exc})" if exc else "TCP connection closed by the server")
        if self.connected is not None and not self.connected.done():
            self.connected.set_exception(error)
        for future in self._acks.values():
            if not future.done():
                future.set_exception(error)
        self._acks.clear()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self._fail(ConnectionError(f"websocket upgrade refused: {status.decode(errors='replace')}"))
                return
            del buf[: end + 4]
            self._upgraded = True
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if b1 & 0x80:
                self._fail(ConnectionError("server sent a masked frame"))
                return
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            self._frame(b0, payload)
        del buf[:pos]

    # ------------------------------------------------------------------ protocol

    def _frame(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode == 0x0:  # continuation
            self._frag += payload
            if b0 & 0x80:
                payload, self._frag = bytes(self._frag), bytearray()
                self._packet(payload)
            return
        if opcode in (0x1, 0x2):
            if not b0 & 0x80:
                self._frag = bytearray(payload)
                return
            self._packet(payload)
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            text = payload[2:].decode(errors="replace")
            self._ended(f"websocket close frame {code}" + (f" {text!r}" if text else ""))
            self._close()
        elif opcode == 0x9 and self.transport is not None:  # websocket ping (not Engine.IO's)
            self.transport.write(client_frame(payload, 0xA))

    def _packet(self, data: bytes) -> None:
        kind = data[0] if data else -1
        if kind == _MESSAGE:
            if data.startswith(self._event_prefix):
                if self.on_event is not None:
                    received = time.monotonic_ns()
                    args = orjson.loads(data[len(self._event_prefix) :])
                    self.on_event(self, args[0], args[1] if len(args) > 1 else None, received)
            elif data.startswith(self._ack_prefix):
                body = data[len(self._ack_prefix) :]
                bracket = body.find(b"[")
                future = self._acks.pop(int(body[:bracket]), None)
                if future is not None and not future.done():
                    args = orjson.loads(body[bracket:])
                    future.set_result(args[0] if args else None)
            elif data.startswith(b"40" + self._prefix):
                self.sid = orjson.loads(data[len(self._prefix) + 2 :]).get("sid")
                if self.connected is not None and not self.connected.done():
                    self.connected.set_result(None)
            elif data.startswith(b"44" + self._prefix):
                error = ConnectRefused(orjson.loads(data[len(self._prefix) + 2 :]))
                if self.connected is not None and not self.connected.done():
                    self.connected.set_exception(error)
                self._ended(f"connect refused {error.code}")
                self._close()
            elif data.startswith(b"41" + self._prefix):
                self._ended("the server left the namespace (Socket.IO DISCONNECT)")
                self._close()
        elif kind == _PING:
            self._send(b"3" + data[1:])
        elif kind == _OPEN:
            auth = {"token": self.token} if self.token else None
            self._send(b"40" + self._prefix + (orjson.dumps(auth) if auth else b""))
        elif kind == _CLOSE:
            self._ended("Engine.IO CLOSE from the server")
            self._close()

    def _send(self, packet: bytes) -> None:
        """Send one whole Engine.IO packet (``42/workspace,...`` is MESSAGE + Socket.IO EVENT)."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("not connected")
        self.transport.write(client_frame(packet))

    def _fail(self, error: Exception) -> None:
        self._ended(str(error))
        if self.connected is not None and not self.connected.done():
            self.connected.set_exception(error)
        if self.transport is not None:
            self.transport.abort()
