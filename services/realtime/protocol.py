"""Engine.IO as the protocol says, and transports that never authenticate held to account.

Why this exists: python-engineio is lenient where the Engine.IO protocol (and Node's engine.io,
the reference) is strict, and hostile input turned that leniency into open connections and
error-level tracebacks. This module is the Engine.IO layer of *both* realtime paths (the fast
path's ``FastSocket``/``FastEngineServer`` build on it; ``REALTIME_FAST_PATH=false`` uses it
directly), so every rule below holds on either:

* **Bad input closes that transport, with one rate-limited warning line.** An undecodable
  websocket packet (``abc``, empty, ``b…`` base64 outside polling), an undecodable polling body,
  a duplicate concurrent long-poll GET, an aborted GET, or a malformed Socket.IO packet
  (``server.LiveboardAsyncServer``) ends the session; nothing is logged at error level and no
  traceback is written (``ClientErrors``). The stock websocket handler no longer lets a decode
  error escape into aiohttp, which wrote a JSON 500 into the upgraded stream.
* **Handshake checks Node's engine.io makes:** ``transport`` is required, methods other than
  GET/POST/OPTIONS are 400, a second upgrade of one session is refused.
* **Heartbeats are timers** (a ping timer, then a pong deadline), so a silent session — polling
  or websocket — is closed ``ping_interval + ping_timeout`` after its last pong, not whenever
  python-engineio's sweep comes round (up to ~20 s later), and the handshake announces fractional
  intervals correctly (python-engineio truncates ``pingInterval`` to whole seconds).
* **Closing never waits for a client to poll** (``close(wait=False)``): python-engineio's
  ``disconnect`` otherwise blocks until a silent polling client fetches its CLOSE packet.
* **Unauthenticated transports** (no admitted namespace CONNECT yet, ``TransportGuard``): at most
  ``PREAUTH_MAX_BYTES`` per message (larger ones close the transport before any decoding; an
  oversized CONNECT is answered ``connect_error`` ``unauthorized``/``token_too_large`` first), a
  deadline (``WEBSOCKET_AUTH_TIMEOUT``) to authenticate, a cap per client address, and a count
  in ``/api/v1/websocket/stats``.

python-engineio internals used (pinned in pyproject.toml): ``AsyncSocket.handle_get_request``,
``handle_post_request``, ``_websocket_handler``, ``_upgrade_websocket``, ``schedule_ping``,
``last_ping``, ``queue``; ``AsyncServer.sockets``, ``_async``, ``_log_error_once``,
``_bad_request``, ``reason``; the aiohttp driver's ``WebSocket``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import engineio
import orjson
from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_drivers.aiohttp import WebSocket as EngineWebSocket
from engineio.async_socket import AsyncSocket

from libs.common.identity import MAX_TOKEN_BYTES

log = logging.getLogger(__name__)

#: The largest message (websocket frame or polling body) a transport may send before it has
#: authenticated: a CONNECT with the largest token we accept, plus framing and the rest of ``auth``.
PREAUTH_MAX_BYTES = MAX_TOKEN_BYTES + 2048
#: How often a pending long-poll checks that its client is still there (aiohttp does not cancel
#: handlers when the client goes away).
POLL_ABORT_CHECK = 1.0
#: How long a poll arriving during a websocket upgrade waits for the upgrade's outcome.
UPGRADE_WAIT = 1.0
#: Engine.IO packet types a client may send on a websocket, as their first character.
_WS_PACKET_TYPES = frozenset("0123456")


class ClientErrors:
    """Bad input from a client is the client's error: one warning line per kind per interval.

    Never a traceback and never error level (anyone could fill the logs otherwise); what was
    suppressed in between is counted on the next line, and every occurrence in ``counts``.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def report(self, kind: str, **extra: Any) -> None:
        self.counts[kind] += 1
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] += 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        log.warning("client protocol error: %s", kind, extra={**extra, "kind": kind, "suppressed": suppressed})


class TransportGuard:
    """What an Engine.IO transport may do before one of its namespaces is admitted.

    ``pending`` maps each open unauthenticated transport to its client address; ``per_address``
    counts them, so one address cannot hold more than ``max_per_address`` open, and
    ``/api/v1/websocket/stats`` reports ``len(pending)`` as ``unauthenticated_transports``.
    """

    def __init__(
        self,
        *,
        auth_timeout: float,
        max_per_address: int,
        namespace: str,
        on_oversized_connect: Callable[[str], None] | None = None,
    ) -> None:
        self.auth_timeout = auth_timeout
        self.max_per_address = max_per_address
        self.namespace = namespace
        self.on_oversized_connect = on_oversized_connect
        self.errors = ClientErrors()
        self.pending: dict[str, str] = {}
        self.per_address: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- accounting

    def admit(self, socket: ProtocolSocket, ip: str) -> bool:
        """A new transport (False: this address already holds its share of unauthenticated ones)."""
        if self.per_address[ip] >= self.max_per_address:
            self.errors.report("too many unauthenticated transports from one address", ip=ip)
            return False
        socket.client_ip = ip
        self.unauthenticated(socket)
        return True

    def unauthenticated(self, socket: ProtocolSocket) -> None:
        """``socket`` has no admitted namespace (new, or it left its last one): start its deadline."""
        socket.authenticated = False
        if socket.sid not in self.pending:
            self.pending[socket.sid] = socket.client_ip
            self.per_address[socket.client_ip] += 1
        socket.arm_auth_deadline(self.auth_timeout)

    def authenticated(self, socket: ProtocolSocket) -> None:
        socket.authenticated = True
        socket.cancel_auth_deadline()
        self._forget(socket.sid)

    def closed(self, sid: str) -> None:
        self._forget(sid)

    def _forget(self, sid: str) -> None:
        ip = self.pending.pop(sid, None)
        if ip is not None:
            self.per_address[ip] -= 1
            if self.per_address[ip] <= 0:
                del self.per_address[ip]

    def unauthenticated_count(self) -> int:
        return len(self.pending)

    # ---------------------------------------------------------------- helpers

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A task this guard keeps a reference to; a failure is logged (never swallowed)."""
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("transport task failed", exc_info=task.exception())

    def oversized_connect(self, data: str | bytes, ip: str) -> str | None:
        """The Socket.IO ``connect_error`` packet answering an over-cap CONNECT (None: not a CONNECT).

        Only the prefix is looked at: the payload itself is never decoded.
        """
        head = data[:256]
        if isinstance(head, bytes):
            head = head.decode("ascii", "replace")
        if not head.startswith("40"):
            return None
        rest = head[2:]
        namespace = "/"
        if rest.startswith("/"):
            end = rest.find(",")
            namespace = (rest if end == -1 else rest[:end]).split("?", 1)[0]
        if namespace != self.namespace:
            body: dict[str, Any] = {"message": "Invalid namespace"}
        else:
            message = f"tokens over {MAX_TOKEN_BYTES} bytes are refused"
            body = {
                "message": message,
                "data": {"code": "unauthorized", "message": message, "reason": "token_too_large"},
            }
            if self.on_oversized_connect is not None:
                self.on_oversized_connect(ip)
        prefix = "4" if namespace == "/" else f"4{namespace},"
        return prefix + orjson.dumps(body).decode()


class ProtocolSocket(AsyncSocket):
    """python-engineio's socket with the protocol's rules (module docstring); both paths use it.

    Instances start life as ``AsyncSocket``s (``SocketTable`` switches their class when
    python-engineio registers them), so new state lives in class-level defaults.
    """

    authenticated = False
    connecting = 0  # namespace CONNECTs being admitted right now
    prepaid: list[bool] | None = None  # the handshake-limit answer spent when the transport opened
    client_ip = "unknown"
    _response: web.WebSocketResponse | None = None
    _ping_handle: asyncio.TimerHandle | None = None
    _pong_handle: asyncio.TimerHandle | None = None
    _auth_handle: asyncio.TimerHandle | None = None
    _polling = False

    @property
    def guard(self) -> TransportGuard:
        return self.server.guard

    # -------------------------------------------------------------- sending

    async def send(self, pkt: eio_packet.Packet) -> None:
        if pkt.packet_type == eio_packet.OPEN and isinstance(pkt.data, dict):
            # python-engineio sends int(interval) * 1000: 0.3 s would be announced as 0 ms.
            interval = self.server.ping_interval + self.server.ping_interval_grace_period
            pkt.data["pingInterval"] = round(interval * 1000)
        await super().send(pkt)

    def send_now(self, pkt: eio_packet.Packet) -> None:
        """Send ``pkt`` without awaiting (timers): queued here, written directly by ``FastSocket``."""
        self.queue.put_nowait(pkt)

    # -------------------------------------------------------------- heartbeat: timers, not tasks

    def schedule_ping(self) -> None:
        """After a pong (or the handshake): the next ping in ``ping_interval`` seconds."""
        if self._pong_handle is not None:
            self._pong_handle.cancel()
            self._pong_handle = None
        if self.last_ping:
            self.last_ping = None
            self._ping_handle = asyncio.get_running_loop().call_later(
                self.server.ping_interval, self._ping_due, context=contextvars.Context()
            )  # not the context it was set in (a request's correlation id and span)

    def _ping_due(self) -> None:
        self._ping_handle = None
        if self.closing or self.closed:
            return
        self.last_ping = time.time()
        self.send_now(eio_packet.Packet(eio_packet.PING))
        self._pong_handle = asyncio.get_running_loop().call_later(
            self.server.ping_timeout, self._pong_overdue, context=contextvars.Context()
        )

    def _pong_overdue(self) -> None:
        """No pong within ``ping_timeout``: the client is gone (Node's engine.io does the same)."""
        self._pong_handle = None
        if not (self.closing or self.closed):
            self.guard.spawn(self.close(wait=False, abort=False, reason=self.server.reason.PING_TIMEOUT))

    # -------------------------------------------------------------- authentication deadline

    def arm_auth_deadline(self, timeout: float) -> None:
        self.cancel_auth_deadline()
        self._auth_handle = asyncio.get_running_loop().call_later(
            timeout, self._auth_overdue, context=contextvars.Context()
        )

    def cancel_auth_deadline(self) -> None:
        if self._auth_handle is not None:
            self._auth_handle.cancel()
            self._auth_handle = None

    def _auth_overdue(self) -> None:
        self._auth_handle = None
        if self.closing or self.closed or self.authenticated:
            return
        if self.connecting:  # a CONNECT is being admitted (auth may be slow): judge it first
            self.arm_auth_deadline(self.guard.auth_timeout)
            return
        self.guard.errors.report("no namespace CONNECT with a valid token in time", ip=self.client_ip)
        self.guard.spawn(self.close(wait=False, abort=False, reason=self.server.reason.SERVER_DISCONNECT))

    # -------------------------------------------------------------- closing

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        """Close without waiting for the client to fetch queued packets, and end the websocket.

        ``wait`` is ignored: python-engineio would block until a polling client that may never
        poll again has fetched its CLOSE packet (``queue.join()``).
        """
        for handle in (self._ping_handle, self._pong_handle, self._auth_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._pong_handle = self._auth_handle = None
        await super().close(wait=False, abort=abort, reason=reason)
        response = self._response
        if response is not None and not response.closed:
            # Engine.IO v4 clients ignore a CLOSE packet on a websocket: close the WebSocket itself
            # (close frame, the client answers) so the receive loop ends now, not at the ping deadline.
            self._response = None
            self.guard.spawn(response.close())

    async def reject(self, kind: str, **extra: Any) -> None:
        """Bad input: one rate-limited warning, then this transport is closed."""
        self.guard.errors.report(kind, ip=self.client_ip, **extra)
        await self.close(wait=False, abort=False, reason=self.server.reason.TRANSPORT_ERROR)

    # -------------------------------------------------------------- inbound messages

    async def inbound(self, data: str | bytes) -> bool:
        """Whether one websocket message may be decoded; False: the transport is to be closed.

        Checked before any decoding: the size cap of unauthenticated transports (an oversized
        CONNECT is first answered with ``connect_error``), then the packet type.
        """
        if not self.authenticated and len(data) > PREAUTH_MAX_BYTES:
            answer = self.guard.oversized_connect(data, self.client_ip)
            if answer is not None:
                await self.send(eio_packet.Packet(eio_packet.MESSAGE, answer))
            self.guard.errors.report("message over the unauthenticated cap", ip=self.client_ip, size=len(data))
            return False
        if isinstance(data, str) and (not data or data[0] not in _WS_PACKET_TYPES):
            self.guard.errors.report("undecodable Engine.IO packet", ip=self.client_ip, size=len(data))
            return False
        return True

    # -------------------------------------------------------------- polling

    async def handle_get_request(self, environ: dict[str, Any]) -> Any:
        connections = [s.strip() for s in environ.get("HTTP_CONNECTION", "").lower().split(",")]
        if "upgrade" in connections and environ.get("HTTP_UPGRADE", "").lower() in self.upgrade_protocols:
            return await super().handle_get_request(environ)
        if self.upgrading:
            # A poll while the websocket upgrade completes: clients pause polling during an
            # upgrade, so wait for its outcome; once upgraded, polling is refused (as Node does).
            deadline = time.monotonic() + UPGRADE_WAIT
            # python-engineio flips ``upgrading`` itself (no event to wait on); this path is rare.
            while self.upgrading and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        if self.upgraded:
            return self.server._bad_request("Unexpected HTTP request")
        if self._polling:
            # Two concurrent long-polls: the protocol closes the session (the pending one gets
            # CLOSE, this one 400); python-engineio would leave both waiting.
            self.guard.errors.report("duplicate concurrent poll", ip=self.client_ip)
            raise eio_exceptions.EngineIOError("duplicate poll")
        if not await self.check_ping_timeout():
            raise eio_exceptions.EngineIOError("ping timeout")
        self._polling = True
        request = environ.get("aiohttp.request")
        task = asyncio.ensure_future(super().handle_get_request(environ))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=POLL_ABORT_CHECK)
                if done:
                    return task.result()
                transport = request.transport if request is not None else None
                if request is not None and (transport is None or transport.is_closing()):
                    # The client went away mid-poll: end the session now (as Node's engine.io
                    # does) instead of holding its packets for a request nobody reads.
                    log.debug("long-poll aborted by the client", extra={"eio_sid": self.sid})
                    task.cancel()
                    return await task  # python-engineio closes the session and raises QueueEmpty
        finally:
            self._polling = False
            if not task.done():
                task.cancel()

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        cap = self.server.max_http_buffer_size
        if not self.authenticated:
            cap = min(cap, PREAUTH_MAX_BYTES)
        length = environ.get("CONTENT_LENGTH")
        declared = int(length) if length and length.isdigit() else None
        if declared is not None and declared > self.server.max_http_buffer_size:
            self.guard.errors.report("polling body over the transport cap", ip=self.client_ip, size=declared)
            raise eio_exceptions.ContentTooLongError()
        body = await read_capped(environ["wsgi.input"], cap)
        if len(body) > cap:
            answer = self.guard.oversized_connect(body, self.client_ip)
            self.guard.errors.report("message over the unauthenticated cap", ip=self.client_ip, size=declared)
            if answer is None:
                raise eio_exceptions.ContentTooLongError()
            # Answer the CONNECT (the pending or next GET carries it, then CLOSE): a client sees why.
            await self.send(eio_packet.Packet(eio_packet.MESSAGE, answer))
            await self.close(wait=False, abort=False, reason=self.server.reason.TRANSPORT_ERROR)
            return
        try:
            packets = eio_payload.Payload(encoded_payload=body.decode("utf-8")).packets
        except (ValueError, KeyError, IndexError) as exc:  # UnicodeDecodeError is a ValueError
            self.guard.errors.report("undecodable polling body", ip=self.client_ip, error=type(exc).__name__)
            raise eio_exceptions.EngineIOError("undecodable payload") from None
        for pkt in packets:
            if self.closed:
                return
            await self.receive(pkt)

    # -------------------------------------------------------------- websocket (stock loop)

    async def _websocket_handler(self, ws: Any) -> Any:
        self._response = ws._sock
        try:
            return await super()._websocket_handler(ws)
        finally:
            self._response = None


async def read_capped(stream: Any, cap: int) -> bytes:
    """The request body, or its first ``cap + 1`` bytes when it is larger (never more in memory)."""
    buf = bytearray()
    while len(buf) <= cap:
        chunk = await stream.read(cap + 1 - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


class GuardedWebSocket(EngineWebSocket):
    """python-engineio's aiohttp websocket, whose ``wait`` refuses what ``ProtocolSocket.inbound``
    refuses (an ``OSError`` ends python-engineio's loop cleanly, where a decode error escaped into
    aiohttp as a 500 written into the upgraded stream)."""

    compress = True

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=self.compress)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock

    async def wait(self) -> Any:
        msg = await self._sock.receive()
        data = msg.data
        if not isinstance(data, str | bytes):
            raise OSError()
        socket = getattr(self.handler, "__self__", None)
        if isinstance(socket, ProtocolSocket) and not await socket.inbound(data):
            raise OSError("refused message")
        return data


class SocketTable(dict):
    """python-engineio builds ``AsyncSocket`` inline; registering one here gives it the server's
    ``socket_class``."""

    socket_class: type[AsyncSocket] = ProtocolSocket

    def __setitem__(self, sid: str, socket: Any) -> None:
        if type(socket) is AsyncSocket:
            socket.__class__ = self.socket_class
        super().__setitem__(sid, socket)


class ProtocolEngineServer(engineio.AsyncServer):
    """python-engineio's server with ``ProtocolSocket``s, the handshake checks and quiet client errors."""

    socket_class: type[AsyncSocket] = ProtocolSocket
    websocket_class: type[EngineWebSocket] = GuardedWebSocket
    #: Set by ``WebSocketServer`` right after construction.
    guard: TransportGuard

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._async = {**self._async, "websocket": self.websocket_class}

    @property
    def sockets(self) -> SocketTable:
        return self._socket_table

    @sockets.setter
    def sockets(self, value: dict[str, Any]) -> None:
        table = SocketTable(value)
        table.socket_class = self.socket_class
        self._socket_table = table

    async def handle_request(self, request: web.Request) -> Any:
        """Node's engine.io answers python-engineio does not give: a missing ``transport`` (it
        defaulted to polling) and methods other than GET, POST and OPTIONS are 400 (aiohttp
        answered 405); a websocket for a session that is upgrading or upgraded is accepted and
        closed at once (python-engineio raced a second upgrade, or answered 400)."""
        if request.method not in ("GET", "POST", "OPTIONS"):
            problem = "Bad request method"
        elif request.method != "OPTIONS" and request.query.get("transport") not in ("polling", "websocket"):
            problem = "Invalid transport"
        else:
            socket = self.sockets.get(request.query.get("sid", ""))
            if (
                socket is not None
                and request.query.get("transport") == "websocket"
                and request.headers.get("Upgrade", "").lower() == "websocket"
                and (socket.upgrading or socket.upgraded)
            ):
                self.guard.errors.report("second websocket for one session")
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                await ws.close()
                return ws
            if socket is not None and socket.closed and request.method == "POST":
                # python-engineio raised KeyError (a 500) for a POST to a closed session
                return web.Response(status=400, text='"Session closed"', content_type="text/plain")
            return await super().handle_request(request)
        self.guard.errors.report("bad Engine.IO request", problem=problem)
        return web.Response(status=400, text=orjson.dumps(problem).decode(), content_type="text/plain")

    def _log_error_once(self, message: str, message_key: str) -> None:
        """python-engineio logs these (bad session ids, versions, transports) at error level: they
        are the client's errors."""
        self.guard.errors.report(f"Engine.IO {message_key}")
