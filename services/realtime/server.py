"""``WebSocketServer``: the Socket.IO server with everything the namespace delegates to.

The seed's vocabulary is kept (``WebSocketServer`` with ``.sio`` and ``.stats``, a connection and
room manager, ``WebSocketConfig``); the behaviour is DESIGN.md's: rooms are entered only after
boards confirms the board's organization/division against the caller's scope, board events come
from the committed event stream (never from the handler), ephemeral events cross replicas through
the NATS client manager, and a SIGTERM drains sockets in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import web
from engineio import packet as eio_packet
from nats.aio.client import Client as NATS
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from socketio import packet as sio_packet

from libs.common.access import Access, membership_change
from libs.common.audit_feed import AUDIT_FEED, AuditFeed
from libs.common.errors import ApiError
from libs.common.events import BOARD_EVENT_TYPES, Envelope, utc_now_iso
from libs.common.identity import ScopeClient, SupabaseVerifier
from libs.common.messaging import JETSTREAM, NATS_CLIENT, NATS_RECONNECT_HOOKS
from libs.common.scopes import ScopeVerifier
from libs.common.subjects import (
    MEMBERSHIP_CHANGED_WILDCARD,
    connection_event,
)
from libs.common.tasks import stop_tasks

from . import decoding, fastpath, protocol
from .boards_client import BoardsClient
from .config import WebSocketConfig
from .feeds import FeedRegistry
from .limits import ConnectionRateLimiter
from .namespace import NAMESPACE, WorkspaceNamespace, _client_ip, token_expiry
from .nats_manager import NatsPubSubManager
from .presence import PRESENCE_HEARTBEAT, Awareness, PresenceStore
from .rooms import ConnectionManager, Session, board_room, room_kind
from .session_scopes import SessionScopes

log = logging.getLogger(__name__)

_ACK_REQUESTED: ContextVar[bool] = ContextVar("ack_requested", default=False)
#: While a namespace CONNECT is admitted: the handshake-limit answer its transport already paid
#: for (one-shot), so one connection spends one token of the per-address bucket, not two.
_PREPAID: ContextVar[list[bool] | None] = ContextVar("prepaid_handshake", default=None)
#: Names the Socket.IO clients themselves use for the connection's lifecycle (socket.io-client's
#: RESERVED_EVENTS, python-socketio's): a broadcast under one of them would reach the app's own
#: lifecycle handlers (a forged ``connect_error`` looks like a refused connection).
SOCKETIO_RESERVED = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener", "message"}
)
#: Event names a client may not send (socket.io-parser's RESERVED_EVENTS): python-socketio would
#: run the namespace's own ``connect``/``disconnect`` handlers for them.
CLIENT_RESERVED = SOCKETIO_RESERVED - {"message"}
#: Event names an admin broadcast may not use: the clients' lifecycle names and every event the
#: server itself sends (persisted board events, control events), so a broadcast cannot forge them.
RESERVED_EVENTS = frozenset(
    {
        *SOCKETIO_RESERVED,
        "connection_established",
        "resync_required",
        "task_conflict",
        "token_expiring",
        "session_expired",
        "board_access_revoked",
        "server_shutdown",
        "error",
        "user_presence",
        "user_typing",
        "user_cursor",
        *BOARD_EVENT_TYPES,
    }
)


class HandshakeLimiter(ConnectionRateLimiter):
    """The per-address handshake bucket, spent when an Engine.IO transport opens (so transports
    that never send a CONNECT count too); the transport's first CONNECT uses that answer."""

    def allow(self, ip: str) -> bool:
        prepaid = _PREPAID.get()
        if prepaid:
            return prepaid.pop()
        return super().allow(ip)


class LiveboardAsyncServer(socketio.AsyncServer):
    """python-socketio with the Socket.IO protocol's rules, and the ack flag for handlers.

    Records whether the client asked for an ack, so errors without one become ``error`` events:
    python-socketio does not pass the ack id to handlers; this is the one place it is known.
    Handlers run inline (``async_handlers=False``) so one socket's events are handled in order,
    and the context variable is visible to them.

    Protocol (``_handle_eio_message``): a packet python-socketio cannot decode, or one Node's
    socket.io-parser would refuse (unknown type, an EVENT that is not a non-empty array named by a
    string, a reserved event name, a CONNECT whose payload is not an object, a client CONNECT_ERROR,
    a second CONNECT to a connected namespace) closes the transport with one rate-limited warning —
    python-socketio raised into python-engineio (a traceback) and left the connection open. An
    unknown namespace gets ``{"message": "Invalid namespace"}`` as Socket.IO v5 sends it.
    Transports are accounted in ``guard`` (``protocol.TransportGuard``): admitted when they open,
    authenticated when a namespace CONNECT is admitted, unauthenticated again (with a new
    deadline) when they leave their last namespace.

    With ``fast_path`` (``REALTIME_FAST_PATH``, default on) the Engine.IO layer is
    ``fastpath.FastEngineServer``: websocket packets are written directly, in order, and board
    events are broadcast with one encoding (see ``fastpath``); the API is python-socketio's.
    Otherwise it is ``protocol.ProtocolEngineServer`` (python-engineio's delivery).
    """

    def __init__(
        self,
        *,
        fast_path: bool = False,
        guard: protocol.TransportGuard | None = None,
        limiter: HandshakeLimiter | None = None,
        **kwargs: Any,
    ) -> None:
        """Without ``guard`` and ``limiter`` (benchmarks and tests that drive the server directly)
        transports get a minute to authenticate and addresses are not limited."""
        self.fast_path = fast_path  # read by _engineio_server_class, which super().__init__ calls
        super().__init__(**kwargs)
        unlimited = 1 << 30
        if guard is None:  # (not ``or``: an empty guard or limiter has len 0)
            guard = protocol.TransportGuard(auth_timeout=60, max_per_address=unlimited, namespace=NAMESPACE)
        self.guard = guard
        self.limiter = limiter if limiter is not None else HandshakeLimiter(unlimited)
        self.eio.guard = self.guard

    def _engineio_server_class(self) -> Any:
        return fastpath.FastEngineServer if self.fast_path else protocol.ProtocolEngineServer

    # -------------------------------------------------------------- transports

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        """A new transport: counted for its address; it spends a handshake token now."""
        await super()._handle_eio_connect(eio_sid, environ)
        socket = self.eio.sockets.get(eio_sid)
        if not isinstance(socket, protocol.ProtocolSocket):
            return None
        ip = _client_ip(environ)
        if not self.guard.admit(socket, ip):
            self.environ.pop(eio_sid, None)
            return False  # python-engineio answers the handshake 401
        socket.prepaid = [ConnectionRateLimiter.allow(self.limiter, ip)]
        return None

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        """Answer a client-closed polling session's outstanding GET with NOOP, as Node's engine.io does.

        python-engineio leaves that long-poll waiting until its timeout (45 s), and clients that
        wait for it on close (python-socketio's) hang that long. A server-side close needs
        nothing here: python-engineio queues the CLOSE packet itself.
        """
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and not socket.upgraded and reason == self.eio.reason.CLIENT_DISCONNECT:
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))
        self.guard.closed(eio_sid)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def _reject(self, eio_sid: str, kind: str) -> None:
        socket = self.eio.sockets.get(eio_sid)
        if isinstance(socket, protocol.ProtocolSocket):
            await socket.reject(kind)
        else:  # pragma: no cover - every socket of our engine servers is a ProtocolSocket
            await self.eio.disconnect(eio_sid)

    def _connected(self, eio_sid: str, namespace: str) -> bool:
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        return sid is not None and self.manager.is_connected(sid, namespace)

    def _left_namespace(self, eio_sid: str | None) -> None:
        """A transport without an admitted namespace is unauthenticated again: a new deadline."""
        socket = self.eio.sockets.get(eio_sid) if eio_sid else None
        if isinstance(socket, protocol.ProtocolSocket) and not (socket.closing or socket.closed):
            if not any(self._connected(eio_sid, ns) for ns in self.namespace_handlers):
                self.guard.unauthenticated(socket)

    # -------------------------------------------------------------- Socket.IO packets

    def _packet_problem(self, eio_sid: str, pkt: Any) -> str | None:
        """Why socket.io-parser / Node's server would refuse ``pkt`` (None: it is valid)."""
        kind, data = pkt.packet_type, pkt.data
        namespace = pkt.namespace or "/"
        if kind not in range(7):
            return "unknown Socket.IO packet type"
        if kind == sio_packet.CONNECT:
            if data is not None and not isinstance(data, dict):
                return "CONNECT payload is not an object"
            if self._connected(eio_sid, namespace):
                return "CONNECT to a namespace already connected"
        elif kind == sio_packet.CONNECT_ERROR:
            return "CONNECT_ERROR from a client"
        elif kind in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            if not (isinstance(data, list) and data and isinstance(data[0], str)):
                return "EVENT payload is not an array starting with the event name"
            if data[0] in CLIENT_RESERVED:
                return "reserved event name"
        elif kind in (sio_packet.ACK, sio_packet.BINARY_ACK):
            if not isinstance(data, list) or pkt.id is None:
                return "ACK without an id and an array payload"
        if kind in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK) and pkt.attachment_count < 1:
            return "binary packet without attachments"
        return None

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """Decode and check before dispatching (python-socketio's dispatch, which decodes unchecked)."""
        if eio_sid in self._binary_packet:
            if not isinstance(data, bytes):
                await self._reject(eio_sid, "text packet where a binary attachment was due")
                return
            await super()._handle_eio_message(eio_sid, data)
            return
        if not isinstance(data, str):
            await self._reject(eio_sid, "binary data without a packet")
            return
        try:
            pkt = self.packet_class(encoded_packet=data)
        except (ValueError, TypeError, IndexError, RecursionError):  # orjson's errors are ValueErrors
            await self._reject(eio_sid, "undecodable Socket.IO packet")
            return
        problem = self._packet_problem(eio_sid, pkt)
        if problem is not None:
            await self._reject(eio_sid, problem)
            return
        namespace = pkt.namespace or "/"
        if pkt.packet_type == sio_packet.CONNECT:
            await self._handle_connect(eio_sid, namespace, pkt.data)
        elif not self._connected(eio_sid, namespace):
            # Not connected (never, or refused, or disconnected by the server while this was in
            # flight): dropped, as python-socketio does; Node would close the transport.
            self.guard.errors.report("packet for a namespace not connected", namespace=namespace[:64])
        elif pkt.packet_type == sio_packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, namespace, self.reason.CLIENT_DISCONNECT)
        elif pkt.packet_type == sio_packet.EVENT:
            await self._handle_event(eio_sid, namespace, pkt.id, pkt.data)
        elif pkt.packet_type == sio_packet.ACK:
            await self._handle_ack(eio_sid, namespace, pkt.id, pkt.data)
        else:  # BINARY_EVENT, BINARY_ACK: wait for the attachments
            self._binary_packet[eio_sid] = pkt

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or "/"
        served = (
            namespace in self.handlers
            or namespace in self.namespace_handlers
            or self.namespaces == "*"
            or namespace in self.namespaces
        )  # python-socketio's own rule
        if not served:
            await self._send_packet(
                eio_sid,
                self.packet_class(sio_packet.CONNECT_ERROR, data={"message": "Invalid namespace"}, namespace=namespace),
            )
            return
        socket = self.eio.sockets.get(eio_sid)
        if not isinstance(socket, protocol.ProtocolSocket):  # pragma: no cover - see _reject
            await super()._handle_connect(eio_sid, namespace, data)
            return
        prepaid, socket.prepaid = socket.prepaid, None
        token = _PREPAID.set(prepaid)
        socket.connecting += 1
        try:
            await super()._handle_connect(eio_sid, namespace, data)
        finally:
            socket.connecting -= 1
            _PREPAID.reset(token)
        if self._connected(eio_sid, namespace) and not (socket.closing or socket.closed):
            self.guard.authenticated(socket)

    async def _handle_disconnect(self, eio_sid: str, namespace: str | None, reason: Any = None) -> None:
        await super()._handle_disconnect(eio_sid, namespace, reason)
        self._left_namespace(eio_sid)

    async def disconnect(self, sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace or "/")
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        self._left_namespace(eio_sid)

    def broadcast(self, event: str, data: Any, room: str, namespace: str, skip_sid: str | None = None) -> bool:
        """One encoding for the local members of ``room`` (fast path); False: the caller must ``emit``."""
        return self.fast_path and fastpath.broadcast(self, event, data, room, namespace, skip_sid)

    async def _handle_event_internal(
        self, server: Any, sid: str, eio_sid: str, data: Any, namespace: str, id: Any
    ) -> None:
        token = _ACK_REQUESTED.set(id is not None)
        try:
            await super()._handle_event_internal(server, sid, eio_sid, data, namespace, id)
        finally:
            _ACK_REQUESTED.reset(token)


@dataclass
class SocketMetrics:
    events_in: Counter
    events_out: Counter
    errors: Counter
    refusals: Counter
    latency: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry, server: WebSocketServer) -> SocketMetrics:
        connections = Gauge("liveboard_socket_connections", "Open Socket.IO connections", registry=registry)
        connections.set_function(lambda: len(server.manager.sessions))
        rooms = Gauge("liveboard_socket_rooms", "Rooms with members, by type", ["type"], registry=registry)
        for kind in ("board", "org", "division", "user"):
            rooms.labels(kind).set_function(lambda kind=kind: server.rooms_of_kind(kind))
        feeds = Gauge("liveboard_board_feeds", "Boards this replica is subscribed to", registry=registry)
        feeds.set_function(lambda: len(server.feeds.feeds))
        pending = Gauge(
            "liveboard_socket_unauthenticated_transports",
            "Open Engine.IO transports without an admitted namespace CONNECT",
            registry=registry,
        )
        pending.set_function(server.guard.unauthenticated_count)
        return cls(
            events_in=Counter(
                "liveboard_socket_events_in_total", "Client events received", ["event"], registry=registry
            ),
            events_out=Counter(
                "liveboard_socket_events_out_total", "Board events delivered to rooms", ["event"], registry=registry
            ),
            errors=Counter(
                "liveboard_socket_errors_total", "Client events answered with an error", ["code"], registry=registry
            ),
            refusals=Counter(
                "liveboard_socket_refused_connections_total", "Refused handshakes", ["code"], registry=registry
            ),
            latency=Histogram(
                "liveboard_socket_handler_seconds",
                "Socket event handling time",
                ["event"],
                registry=registry,
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            ),
        )


class WebSocketServer:
    """The realtime server of one process; ``attach`` wires it into an aiohttp application."""

    def __init__(self, config: WebSocketConfig, tracer: trace.Tracer, registry: CollectorRegistry | None = None):
        self.config = config
        self.tracer = tracer
        self.manager = ConnectionManager()
        self.nats: NATS | None = None
        self.client_manager = NatsPubSubManager(lambda: self.nats)
        fast = fastpath.fast_path_enabled(config)
        self.connect_limiter = HandshakeLimiter(config.rate_limit_connections)
        self.guard = protocol.TransportGuard(
            auth_timeout=config.auth_timeout,
            max_per_address=config.rate_limit_connections,
            namespace=NAMESPACE,
            on_oversized_connect=self._oversized_connect,
        )
        self.sio = LiveboardAsyncServer(
            fast_path=fast,
            guard=self.guard,
            limiter=self.connect_limiter,
            namespaces=[NAMESPACE],  # the main namespace "/" is not served: "Invalid namespace"
            # EVENTs whose JSON only the lenient stdlib reads still get an ack (decoding.py).
            serializer=decoding.tolerant(fastpath.OrjsonPacket if fast else sio_packet.Packet),
            async_mode="aiohttp",
            client_manager=self.client_manager,
            # Origins are checked in the connect handler so a refusal carries a code (CONTRACT §7).
            cors_allowed_origins="*",
            async_handlers=False,
            max_http_buffer_size=config.transport_max_bytes,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            logger=False,
            engineio_logger=False,
        )
        self.sio.register_namespace(WorkspaceNamespace(self))
        self.boards = BoardsClient(
            lambda: self.nats, tracer, timeout=config.boards_timeout, http_url=config.boards_service_url
        )
        self.feeds = FeedRegistry(
            lambda: self.nats,
            self.boards,
            tracer,
            deliver=self._deliver,
            resync=self._resync,
            reader_token=self._reader_token,
        )
        self.awareness = Awareness(self._send_ephemeral)
        self.presence = PresenceStore()
        self.scopes = ScopeClient(config.auth_service_url, tracer=tracer)  # NATS-backed once connected
        self.access = self._access()
        self.session_scopes = SessionScopes(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.metrics = SocketMetrics.register(registry or CollectorRegistry(), self)
        self.draining = False
        #: The service's audit feed (``libs.common.audit_feed``), set once NATS is connected.
        self.audit: AuditFeed | None = None

    def _access(self) -> Access:
        """Verifies admin REST callers; shares ``scopes`` so one membership change clears one cache."""
        config = self.config
        return Access(
            ScopeVerifier(config.scope_jwks_url, leeway=config.jwt_leeway_seconds),
            self.scopes,
            supabase=SupabaseVerifier.from_settings(config)
            if config.supabase_jwt_secret or config.supabase_jwks_url
            else None,
        )

    def _oversized_connect(self, ip: str) -> None:
        """A CONNECT over the unauthenticated cap, answered ``unauthorized``/``token_too_large``."""
        self.manager.stats.refused_connections += 1
        self.metrics.refusals.labels("unauthorized").inc()
        self.publish_security("token_too_large", None, {"ip": ip, "reason": "token_too_large"})

    @property
    def stats(self) -> Any:
        """The seed's ``server.stats`` (``active_connections``, ``total_connections``, ...)."""
        return self.manager.stats

    @staticmethod
    def ack_requested() -> bool:
        return _ACK_REQUESTED.get()

    def rooms_of_kind(self, kind: str) -> int:
        return sum(1 for room in self.manager.room_counts() if room_kind(room) == kind)

    # ------------------------------------------------------------------ lifecycle

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app, socketio_path="socket.io")
        # Every other method reaches Engine.IO too, which answers 400 as Node's engine.io does.
        app.router.add_route("*", "/socket.io/", self.sio.eio.handle_request)
        app.cleanup_ctx.append(self._runtime)
        app.on_shutdown.insert(0, self._drain)

    async def _runtime(self, app: web.Application) -> AsyncIterator[None]:
        """Runs after NATS is connected: scope client, subscriptions, background loops."""
        self.nats = app[NATS_CLIENT]
        await self.scopes.close()
        self.scopes = ScopeClient(self.config.auth_service_url, nats=self.nats, tracer=self.tracer)
        self.access = self._access()
        self.audit = app[AUDIT_FEED]
        try:
            await self.presence.open(self.nats, app[JETSTREAM], replicas=self.config.nats_stream_replicas)
        except Exception as exc:  # presence degrades to this replica's sockets until NATS is back
            log.error("presence store unavailable; presence is local to this replica: %s", exc)
        membership = await self.nats.subscribe(MEMBERSHIP_CHANGED_WILDCARD, cb=self._on_membership_changed)
        app[NATS_RECONNECT_HOOKS].append(self.feeds.resync_all)
        app[NATS_RECONNECT_HOOKS].append(self._rewatch_presence)
        tasks = [
            asyncio.create_task(self._sweep_loop(), name="realtime-sweep"),
            asyncio.create_task(self._presence_loop(), name="realtime-presence"),
        ]
        yield
        await stop_tasks(tasks)
        await self.presence.close()
        with contextlib.suppress(Exception):
            await membership.unsubscribe()
        for board_id in list(self.feeds.feeds):
            await self.feeds.detach(board_id)
        await self.access.close()
        await self.boards.close()

    async def _drain(self, app: web.Application) -> None:
        """SIGTERM: refuse new sockets, tell the rest to reconnect elsewhere, close them in batches."""
        self.draining = True
        sids = list(self.manager.sessions)
        log.info("draining", extra={"connections": len(sids)})
        if sids:
            await self._disconnect_in_batches(sids)
        # A namespace disconnect leaves the Engine.IO transport open, and a browser keeps it open.
        # Close every transport, then wake each one's writer: python-engineio's writer otherwise
        # sleeps until the next ping deadline (45 s) before closing the websocket, and aiohttp
        # waits for those handlers.
        transports = list(self.sio.eio.sockets.values())
        with contextlib.suppress(Exception):
            await self.sio.eio.disconnect()
        for transport in transports:
            queue = getattr(transport, "queue", None)
            if queue is not None:
                with contextlib.suppress(Exception):
                    queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self.sio.shutdown()
        log.info("drained", extra={"transports": len(transports)})

    async def _disconnect_in_batches(self, sids: list[str]) -> None:
        deadline = time.monotonic() + max(0.5, self.config.drain_seconds * 0.8)
        batch = max(50, len(sids) // max(1, int(self.config.drain_seconds * 10)))
        for start in range(0, len(sids), batch):
            for sid in sids[start : start + batch]:
                with contextlib.suppress(Exception):
                    await self.sio.emit(
                        "server_shutdown",
                        {"reconnect_after_ms": random.randint(250, 3000)},
                        to=sid,
                        namespace=NAMESPACE,
                        ignore_queue=True,
                    )
                    await self.sio.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
            if time.monotonic() > deadline:
                continue
            await asyncio.sleep(0.1)

    async def _sweep_loop(self) -> None:
        interval = min(self.config.cleanup_interval, max(0.5, self.config.connection_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")

    async def sweep(self) -> None:
        """Close idle sockets and forget stale rate-limit state."""
        now = time.monotonic()
        idle = [s.sid for s in self.manager.sessions.values() if now - s.last_seen > self.config.connection_timeout]
        for sid in idle:
            await self.sio.emit("session_expired", {"reason": "idle"}, to=sid, namespace=NAMESPACE, ignore_queue=True)
            await self.sio.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
        self.connect_limiter.sweep()

    async def _rewatch_presence(self) -> None:
        if self.presence.kv is None and self.nats is not None:  # it could not be opened at start-up
            try:
                await self.presence.open(self.nats, self.nats.jetstream(), replicas=self.config.nats_stream_replicas)
                log.info("presence store available again")
            except Exception as exc:
                log.error("presence store still unavailable: %s", exc)
            return
        self.presence.rewatch()

    async def _presence_loop(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_HEARTBEAT)
            await self.presence.heartbeat()

    # ------------------------------------------------------------------ sessions

    def close_transport_later(self, sid: str, grace: float = 2.0) -> None:
        """A refused handshake leaves an Engine.IO session with no namespace; close it soon, so
        refused clients cannot hold transports open (clients normally close it themselves)."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        if eio_sid is None:
            return

        async def close() -> None:
            if eio_sid in self.sio.eio.sockets and self.sio.manager.sid_from_eio_sid(eio_sid, NAMESPACE) is None:
                with contextlib.suppress(Exception):
                    await self.sio.eio.disconnect(eio_sid)

        asyncio.get_running_loop().call_later(grace, self._spawn, close)

    async def forget(self, sid: str, reason: str | None) -> None:
        session = self.manager.sessions.get(sid)
        if session is None:
            return
        for handle in session.timers:
            handle.cancel()
        self.session_scopes.cancel(session)
        for board_id in list(session.boards):
            await self._leave(session, board_id, notify=True)
        self.manager.remove(sid)
        self.awareness.forget(sid)
        self.publish_connection("closed", session, {"reason": reason})

    def schedule_token_timers(self, session: Session) -> None:
        for handle in session.timers:
            handle.cancel()
        session.timers.clear()
        if session.expires_at == float("inf"):
            return
        loop = asyncio.get_running_loop()
        remaining = session.expires_at - time.time()
        warn_in = remaining - self.config.token_expiry_warning
        # A fresh context each: a timer keeps the context it was set in (here the connect
        # handler's span and correlation id) alive until it fires, minutes later, per socket.
        if remaining > 0:  # already inside the warning window: warn now (after the welcome)
            session.timers.append(
                loop.call_later(
                    max(0.05, warn_in), self._spawn, self._token_expiring, session, context=contextvars.Context()
                )
            )
        session.timers.append(
            loop.call_later(
                max(0.0, remaining), self._spawn, self._session_expired, session, context=contextvars.Context()
            )
        )

    def _spawn(self, func: Any, *args: Any) -> None:
        self.spawn(func(*args))

    async def _token_expiring(self, session: Session) -> None:
        await self.sio.emit(
            "token_expiring", {"expires_at": session.expires_at}, to=session.sid, namespace=NAMESPACE, ignore_queue=True
        )

    async def _session_expired(self, session: Session) -> None:
        if self.manager.sessions.get(session.sid) is not session or session.expires_at > time.time() + 1:
            return
        await self.sio.emit(
            "session_expired", {"reason": "token_expired"}, to=session.sid, namespace=NAMESPACE, ignore_queue=True
        )
        await self.sio.disconnect(session.sid, namespace=NAMESPACE, ignore_queue=True)

    async def fresh_scope_token(self, session: Session) -> str:
        """The session's scope token, renewed through auth when it is about to expire."""
        return await self.session_scopes.token(session)

    async def refresh(self, session: Session, token: str) -> dict[str, Any]:
        scope_token, scope = await self.scopes.scope_for(token)
        if scope.sub != session.user_id:
            raise ApiError("forbidden", "refresh_token must be for the same user")
        changed = scope.organizations != session.scope.organizations
        session.supabase_token, session.scope_token, session.scope = token, scope_token, scope
        session.expires_at = token_expiry(token)
        self.schedule_token_timers(session)
        self.session_scopes.schedule(session)
        if changed:
            await self.session_scopes.recheck_rooms(session)
        return {"expires_at": session.expires_at}

    async def _on_membership_changed(self, msg: Any) -> None:
        """A user's access changed: renew their sockets' scope, leave boards they lost."""
        change = membership_change(msg.data)
        if change is None:
            log.warning("ignoring a malformed membership change", extra={"subject": msg.subject})
            return
        await self.session_scopes.membership_changed(*change)

    async def revoke_board(self, session: Session, board_id: str) -> None:
        """Take the socket out of a board it may no longer read, and tell it so."""
        await self._leave(session, board_id, notify=True)
        await self.sio.emit(
            "board_access_revoked", {"board_id": board_id}, to=session.sid, namespace=NAMESPACE, ignore_queue=True
        )
        self.publish_security("board_access_revoked", session, {"board_id": board_id})

    async def end_session(self, session: Session, reason: str) -> None:
        """``session_expired {reason}``, then disconnect (the client reconnects and is admitted afresh)."""
        if self.manager.sessions.get(session.sid) is not session:
            return
        await self.sio.emit(
            "session_expired", {"reason": reason}, to=session.sid, namespace=NAMESPACE, ignore_queue=True
        )
        await self.sio.disconnect(session.sid, namespace=NAMESPACE, ignore_queue=True)

    def spawn(self, coro: Any, *, name: str | None = None) -> asyncio.Task[Any]:
        """A background task this server keeps a reference to (and whose failure is logged)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception(), extra={"task": task.get_name()})

    # ------------------------------------------------------------------ boards

    async def join_board(
        self, session: Session, board_id: str, organization_id: str, division_id: str | None, since_seq: int | None
    ) -> dict[str, Any]:
        config = self.config
        rejoin = board_id in session.boards  # e.g. after resync_required: the socket counts once
        if len(session.boards) - rejoin >= config.max_rooms_per_connection:
            raise ApiError("too_many_rooms", f"a connection may join at most {config.max_rooms_per_connection} boards")
        if self.manager.members(board_id) - rejoin >= config.max_connections_per_room:
            raise ApiError("room_full", f"this board already has {config.max_connections_per_room} connections")
        access = await self.session_scopes.call(session, lambda token: self.boards.access(token, board_id))
        token = session.scope_token
        if config.validate_scope and (
            access.get("organization_id") != organization_id
            or (division_id is not None and access.get("division_id") != division_id)
        ):
            raise ApiError("forbidden", "the board does not belong to that organization or division")
        if rejoin:  # only once the re-join is allowed: a refused one leaves the socket where it was
            await self._leave(session, board_id, notify=False)
        feed = await self.feeds.attach(board_id)
        loaded: dict[str, Any] = {}

        async def load() -> int:
            loaded.clear()
            if since_seq is not None:
                try:
                    answer = await self.boards.events(token, board_id, since_seq=since_seq)
                    events = answer.get("events", [])
                    last = events[-1]["seq"] if events else since_seq
                    # Everything missed fits in one answer (and the client is not "ahead" of the board).
                    if since_seq <= answer.get("seq", last) <= last:
                        loaded["events"] = events
                        return last
                except ApiError as exc:
                    if exc.code != "resync_required":
                        raise
            snapshot = await self.boards.snapshot(token, board_id)
            loaded["snapshot"] = snapshot
            return int(snapshot["seq"])

        async def enter() -> None:
            await self.sio.enter_room(session.sid, board_room(board_id), namespace=NAMESPACE)
            self.manager.join_board(session, board_id, access.get("organization_id", organization_id))

        try:
            seq = await load()
            seq = await self.feeds.join(feed, seq, enter, load)
        finally:
            await self.feeds.release(board_id, self.manager.members(board_id), joined=True)
        entry = {"user_id": session.user_id, "email": session.email, "status": "online"}
        await self.presence.set(board_id, session.sid, entry)
        await self._send_ephemeral(board_id, "user_presence", entry, session.sid)
        self.publish_connection(
            "joined", session, {"board_id": board_id, "organization_id": access.get("organization_id")}
        )
        answer = {
            "board_id": board_id,
            "organization_id": access.get("organization_id"),
            "division_id": access.get("division_id"),
            "seq": seq,
            "can_write": bool(access.get("can_write")),
            "presence": self.presence.members(board_id),
        }
        answer.update(loaded)
        return answer

    async def leave_board(self, session: Session, board_id: str) -> bool:
        if board_id not in session.boards:
            return False
        await self._leave(session, board_id, notify=True)
        return True

    async def _leave(self, session: Session, board_id: str, *, notify: bool) -> None:
        organization_id = session.boards.get(board_id)
        await self.sio.leave_room(session.sid, board_room(board_id), namespace=NAMESPACE)
        last = self.manager.leave_board(session, board_id)
        for typing_board, task_id in self.awareness.forget(session.sid, board_id):
            await self._send_ephemeral(
                typing_board,
                "user_typing",
                {
                    "user_id": session.user_id,
                    "email": session.email,
                    "task_id": task_id,
                    "is_typing": False,
                },
                session.sid,
            )
        await self.presence.remove(board_id, session.sid)
        if notify:
            await self._send_ephemeral(
                board_id,
                "user_presence",
                {"user_id": session.user_id, "email": session.email, "status": "offline"},
                session.sid,
            )
            self.publish_connection("left", session, {"board_id": board_id, "organization_id": organization_id})
        if last:
            await self.feeds.release(board_id, 0)

    def _reader_token(self, board_id: str) -> str | None:
        """A current member's scope token, to read events the room missed."""
        now = time.time()
        for sid in self.manager.board_members.get(board_id, ()):
            session = self.manager.sessions.get(sid)
            if session is not None and session.scope_token and session.scope.expires_at - now > 5:
                return session.scope_token
        return None

    async def _deliver(self, board_id: str, envelope: dict[str, Any]) -> None:
        """One committed event to every local member of the board (the sender included)."""
        event_type = envelope["event_type"]
        self.metrics.events_out.labels(event_type).inc()
        room = board_room(board_id)
        if not self.sio.broadcast(event_type, envelope, room, NAMESPACE):  # synchronous: seq order holds
            await self.sio.emit(event_type, envelope, room=room, namespace=NAMESPACE, ignore_queue=True)
        if event_type == "board_deleted":
            for sid in list(self.manager.board_members.get(board_id, ())):
                session = self.manager.sessions.get(sid)
                if session is not None:
                    self.spawn(self._leave(session, board_id, notify=False), name="realtime-leave-deleted-board")

    async def _resync(self, board_id: str) -> None:
        await self.sio.emit(
            "resync_required", {"board_id": board_id}, room=board_room(board_id), namespace=NAMESPACE, ignore_queue=True
        )

    # ------------------------------------------------------------------ ephemeral

    async def _send_ephemeral(self, board_id: str, event: str, data: dict[str, Any], skip_sid: str) -> None:
        """To the other members of the board on every replica; never persisted, no ``seq``."""
        envelope = {
            "event_type": event,
            "data": data,
            "user_id": data.get("user_id"),
            "timestamp": utc_now_iso(),
            "board_id": board_id,
        }
        if event == "user_presence":  # CONTRACT §4 lists these at the top level as well
            envelope.update({"email": data.get("email"), "status": data.get("status")})
        await self.sio.emit(event, envelope, room=board_room(board_id), skip_sid=skip_sid, namespace=NAMESPACE)

    async def set_presence(self, session: Session, board_id: str, status: str) -> None:
        entry = {"user_id": session.user_id, "email": session.email, "status": status}
        await self.presence.set(board_id, session.sid, entry)
        await self._send_ephemeral(board_id, "user_presence", entry, session.sid)

    async def typing(self, session: Session, board_id: str, task_id: str | None, is_typing: bool) -> None:
        data = {"user_id": session.user_id, "email": session.email, "task_id": task_id, "is_typing": is_typing}
        self.awareness.typing_changed(session.sid, board_id, task_id, is_typing, {**data, "is_typing": False})
        await self._send_ephemeral(board_id, "user_typing", data, session.sid)

    async def cursor(self, session: Session, board_id: str, x: float, y: float, task_id: str | None) -> None:
        data = {"user_id": session.user_id, "email": session.email, "x": x, "y": y, "task_id": task_id}
        await self.awareness.cursor(session.sid, board_id, data)

    # ------------------------------------------------------------------ audit feed

    def publish_connection(self, event: str, session: Session, data: dict[str, Any]) -> None:
        if self.audit is None:
            return
        body = {"sid": session.sid, "ip": session.ip, **data}
        self.audit.publish(
            connection_event(event),
            Envelope(
                event_type=f"connection.{event}", data=body, user_id=session.user_id, board_id=data.get("board_id")
            ),
        )

    def publish_security(self, reason: str, session: Session | None, data: dict[str, Any]) -> None:
        if self.audit is None:
            return
        body = dict(data)
        if session is not None:
            body.setdefault("ip", session.ip)
        self.audit.security(reason, body, user_id=session.user_id if session else None)

    def report_refusal(self, error: ApiError, session: Session, event: str) -> None:
        """A socket event refused here (boards reports its own refusals; ``reported`` marks them)."""
        if self.audit is None or error.reported:
            return
        self.audit.refusal(error, ip=session.ip, path=f"socket:{event[:64]}", user_id=session.user_id, sid=session.sid)
