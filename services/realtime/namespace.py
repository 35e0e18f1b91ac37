"""The ``/workspace`` namespace: one method per client event, each validate → authorize → delegate.

Everything common to every event — session lookup, rate limit, size cap, the server span
(continuing a ``traceparent`` from the payload), the correlation id, turning ``ApiError`` into
``{ok: false, error}`` (or an ``error`` event when the client asked for no ack), metrics — happens
once, in ``trigger_event``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import jwt
import socketio
from socketio.exceptions import ConnectionRefusedError as SocketRefused

from libs.common.correlation import correlation_id_var, new_correlation_id
from libs.common.errors import ApiError
from libs.common.events import utc_now_iso
from libs.common.identity import MAX_TOKEN_BYTES, TokenRejected, refusal_reason
from libs.common.scopes import Scope
from libs.common.tracing import continued

from . import payloads
from .boards_client import MUTATIONS
from .limits import MessageLimiter
from .rooms import Session, user_room

if TYPE_CHECKING:
    from .server import WebSocketServer

log = logging.getLogger(__name__)

NAMESPACE = "/workspace"
#: Events a client may send (anything else is ``invalid_payload``).
CLIENT_EVENTS = frozenset(
    {
        "join_board",
        "leave_board",
        "list_boards",
        "user_presence",
        "user_typing",
        "user_cursor",
        "refresh_token",
        *MUTATIONS,
    }
)


def _refuse(code: str, message: str) -> SocketRefused:
    return SocketRefused(message, {"code": code, "message": message})


def _client_ip(environ: dict[str, Any]) -> str:
    """The client's address: ``request.remote`` of the handshake request, which the shared
    middleware has already set from trusted proxies' headers (``TRUSTED_PROXIES``,
    libs/common/forwarded.py), for websocket and polling alike. (python-engineio's own
    ``REMOTE_ADDR`` is always ``127.0.0.1``.)"""
    request = environ.get("aiohttp.request")
    return (request.remote if request is not None else None) or environ.get("REMOTE_ADDR") or "unknown"


def _token_from(environ: dict[str, Any], auth: Any) -> str | None:
    if isinstance(auth, dict) and isinstance(auth.get("token"), str) and auth["token"]:
        return auth["token"]
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def token_expiry(token: str) -> float:
    """``exp`` of an already verified Supabase token (auth checked the signature)."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return 0.0
    return float(exp) if isinstance(exp, int | float) else 0.0


class WorkspaceNamespace(socketio.AsyncNamespace):
    def __init__(self, server: WebSocketServer) -> None:
        super().__init__(NAMESPACE)
        self.ws = server

    # ------------------------------------------------------------------ dispatch

    async def trigger_event(self, event: Any, *args: Any) -> Any:
        """``event`` is whatever the client sent as the name, so it is compared, never hashed or
        sliced, until it is known to be a string."""
        if isinstance(event, str) and event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid, payload_args = args[0], args[1:]
        ws = self.ws
        session = ws.manager.sessions.get(sid)
        started = time.perf_counter()
        name = event if isinstance(event, str) and event in CLIENT_EVENTS else "unknown"
        ws.metrics.events_in.labels(name).inc()
        ws.manager.count_event(session)
        reply: dict[str, Any]
        if session is None:
            reply = self._error(ApiError("unauthorized", "not connected"))
        elif session.ending or not session.limiter.allow():
            reply = self._error(ApiError("rate_limited", "too many messages; slow down"))
            if not session.ending and session.limiter.abusive():
                session.ending = True
                log.warning("disconnecting an abusive socket", extra={"sid": sid, "user_id": session.user_id})
                ws.publish_security("rate_limited", session, {"sid": sid})
                ws.spawn(ws.sio.disconnect(sid, namespace=NAMESPACE), name="realtime-disconnect-abusive")
        else:
            session.touch()
            reply = await self._dispatch(session, event, payload_args)
        ws.metrics.latency.labels(name).observe(time.perf_counter() - started)
        if not reply["ok"]:
            ws.manager.count_event(session, error=True)
            ws.metrics.errors.labels(reply["error"]["code"]).inc()
            if not ws.ack_requested():
                shown = event[:64] if isinstance(event, str) else None
                await self.emit("error", {**reply["error"], "event": shown}, to=sid)
        return reply

    async def _dispatch(self, session: Session, event: Any, args: tuple[Any, ...]) -> dict[str, Any]:
        if not isinstance(event, str):  # the protocol layer closes such transports; never internal here
            return self._error(ApiError("invalid_payload", "event names are strings"))
        handler = getattr(self, f"handle_{event}", None) if event in CLIENT_EVENTS else None
        if event in MUTATIONS:
            handler = self._mutation(event)
        carrier = args[0] if len(args) == 1 and isinstance(args[0], dict) else None
        with continued(
            self.ws.tracer,
            f"socket {event if handler else 'unknown'}",
            carrier,
            correlation_id=self._correlation(carrier),
        ) as span:
            span.set_attribute("socket.sid", session.sid)
            try:
                if handler is None:
                    raise ApiError("invalid_payload", f"unknown event {event[:64]!r}")
                if payloads.encoded_size(args) > self.ws.config.max_message_bytes:
                    raise ApiError(
                        "payload_too_large", f"messages are limited to {self.ws.config.max_message_bytes} bytes"
                    )
                payloads.check_json(args)
                data = payloads.payload_object(args)
                payloads.correlation_id(data)  # a malformed one is refused on every event (CONTRACT §7)
                result = await handler(session, data)
                log.debug("socket event handled", extra={"event": event, "sid": session.sid})
                return {"ok": True, "data": result}
            except ApiError as exc:
                span.set_attribute("error.code", exc.code)
                log.debug("socket event refused", extra={"event": event, "sid": session.sid, "code": exc.code})
                if exc.status in (401, 403) or exc.audit is not None:
                    self.ws.report_refusal(exc, session, event if handler else "unknown")
                return self._error(exc)
            except Exception:
                log.exception("socket handler failed", extra={"event": event, "sid": session.sid})
                return self._error(ApiError("internal", "internal error"))

    @staticmethod
    def _correlation(carrier: dict[str, Any] | None) -> str:
        """The client's correlation id when valid (bad ones are refused by the handler), else new."""
        if carrier is not None:
            try:
                given = payloads.correlation_id(carrier)
            except ApiError:
                given = None
            if given:
                return given
        return new_correlation_id()

    @staticmethod
    def _error(exc: ApiError) -> dict[str, Any]:
        return {"ok": False, "error": exc.to_dict()}

    # ------------------------------------------------------------------ connection

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        ws = self.ws
        ip = _client_ip(environ)
        try:
            session = await self._admit(sid, environ, auth, ip)
        except SocketRefused as exc:
            ws.close_transport_later(sid)
            ws.manager.stats.refused_connections += 1
            code = exc.error_args.get("data", {}).get("code", "unauthorized")
            ws.metrics.refusals.labels(code).inc()
            ws.publish_security(
                code,
                None,
                {"ip": ip, "reason": exc.error_args["data"].get("reason", code), "origin": environ.get("HTTP_ORIGIN")},
            )
            raise
        ws.manager.add(session)
        await ws.sio.enter_room(sid, user_room(session.user_id or "anonymous", sid), namespace=NAMESPACE)
        session.rooms.add(user_room(session.user_id or "anonymous", sid))
        await ws.session_scopes.enter_org_rooms(session)
        ws.schedule_token_timers(session)
        ws.session_scopes.schedule(session)
        ws.publish_connection("opened", session, {"organizations": [m.id for m in session.scope.organizations]})
        ws.spawn(self._welcome(session), name="realtime-welcome")

    async def _admit(self, sid: str, environ: dict[str, Any], auth: Any, ip: str) -> Session:
        ws, config = self.ws, self.ws.config
        if ws.draining:
            raise _refuse("server_full", "server is shutting down; reconnect shortly")
        origin = environ.get("HTTP_ORIGIN")
        if origin and config.allowed_origins and origin.rstrip("/") not in config.allowed_origins:
            raise _refuse("forbidden", "origin not allowed")
        if not ws.connect_limiter.allow(ip):
            raise _refuse("rate_limited", "too many connection attempts; retry in a minute")
        if len(ws.manager.sessions) >= config.max_concurrent_connections:
            raise _refuse("server_full", "server is at its connection limit")
        token = _token_from(environ, auth)
        limiter = MessageLimiter(config.rate_limit_messages)
        if token is None:
            if config.enforce_authentication:
                raise _refuse("unauthorized", "a token is required (auth.token)")
            return Session(sid, None, None, ip, Scope(sub=None), "", None, float("inf"), limiter)
        try:
            scope_token, scope = await ws.scopes.scope_for(token, ip=ip, path=f"socket.io:{NAMESPACE} connect")
        except ApiError as exc:
            code = exc.code if exc.code in ("unauthorized", "forbidden") else "unavailable"
            refused = _refuse(code, exc.message)
            refused.error_args["data"]["reason"] = refusal_reason(exc)
            raise refused from None
        if scope.sub is None:
            raise _refuse("unauthorized", "a user token is required")
        return Session(sid, scope.sub, scope.email, ip, scope, scope_token, token, token_expiry(token), limiter)

    async def _welcome(self, session: Session) -> None:
        await self.emit(
            "connection_established",
            {
                "sid": session.sid,
                "user_id": session.user_id,
                "email": session.email,
                "organizations": [m.to_dict() for m in session.scope.organizations],
                "expires_at": session.expires_at if session.expires_at != float("inf") else None,
                "timestamp": utc_now_iso(),
            },
            to=session.sid,
        )

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        await self.ws.forget(sid, str(reason) if reason is not None else None)

    # ------------------------------------------------------------------ boards

    async def handle_join_board(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        board_id = payloads.require_id(data, "board_id")
        organization_id = payloads.require_id(data, "organization_id")
        division_id = payloads.require_id(data, "division_id", optional=True)
        since_seq = payloads.optional_seq(data, "since_seq")
        return await self.ws.join_board(session, board_id, organization_id, division_id, since_seq)

    async def handle_leave_board(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        board_id = payloads.require_id(data, "board_id")
        left = await self.ws.leave_board(session, board_id)
        return {"board_id": board_id, "left": left}

    async def handle_list_boards(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        """The organization's boards this user may read (boards decides), for a board picker."""
        organization_id = payloads.require_id(data, "organization_id")
        division_id = payloads.require_id(data, "division_id", optional=True)
        correlation_id = correlation_id_var.get()
        return await self.ws.session_scopes.call(
            session,
            lambda token: self.ws.boards.list_boards(
                token, organization_id, division_id, correlation_id=correlation_id
            ),
        )

    def _mutation(self, event: str) -> Any:
        async def handle(session: Session, data: dict[str, Any]) -> dict[str, Any]:
            board_id = payloads.require_id(data, "board_id")
            op_id = payloads.client_op_id(data)
            payload, correlation_id = payloads.command_payload(data), correlation_id_var.get()
            result = await self.ws.session_scopes.call(
                session,
                lambda token: self.ws.boards.call(
                    event, token, payload, client_op_id=op_id, correlation_id=correlation_id, ip=session.ip
                ),
            )
            if isinstance(result, dict) and result.get("conflict"):
                await self.emit(
                    "task_conflict",
                    {
                        "board_id": board_id,
                        "task_id": result.get("task_id"),
                        "conflict": result["conflict"],
                        "task": result.get("task"),
                        "client_op_id": op_id,
                        "timestamp": utc_now_iso(),
                    },
                    to=session.sid,
                )
            return result

        return handle

    # ------------------------------------------------------------------ ephemeral

    def _joined(self, session: Session, data: dict[str, Any]) -> str:
        board_id = payloads.require_id(data, "board_id")
        if board_id not in session.boards:
            raise ApiError("forbidden", "join the board first")
        return board_id

    async def handle_user_presence(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        board_id = self._joined(session, data)
        status = payloads.require_choice(data, "status", ("online", "away"))
        await self.ws.set_presence(session, board_id, status)
        return {"board_id": board_id, "status": status}

    async def handle_user_typing(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        board_id = self._joined(session, data)
        task_id = payloads.require_id(data, "task_id", optional=True)
        is_typing = payloads.require_bool(data, "is_typing")
        await self.ws.typing(session, board_id, task_id, is_typing)
        return {"board_id": board_id, "task_id": task_id, "is_typing": is_typing}

    async def handle_user_cursor(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        board_id = self._joined(session, data)
        x, y = payloads.require_number(data, "x"), payloads.require_number(data, "y")
        task_id = payloads.require_id(data, "task_id", optional=True)
        await self.ws.cursor(session, board_id, x, y, task_id)
        return {"board_id": board_id}

    async def handle_refresh_token(self, session: Session, data: dict[str, Any]) -> dict[str, Any]:
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError("invalid_payload", "token must be a non-empty string")
        if len(token) > MAX_TOKEN_BYTES:  # auth's own cap, applied before the token travels over NATS
            raise TokenRejected("token_too_large", f"tokens over {MAX_TOKEN_BYTES} bytes are refused")
        return await self.ws.refresh(session, token)
