"""Auth over NATS (queue group ``auth``): the token exchange ``auth.v1.exchange`` and the
directory query ``auth.v1.directory`` (``directory.py``).

Realtime and boards exchange over NATS rather than HTTP: no service URL to configure, load spread
over auth replicas by the queue group, and the trace continues through the message headers.

Request ``{"token": ..., "ip"?: ..., "path"?: ...}`` (``ip``/``path`` describe the end user's
request, for the security event if it is refused). Reply ``{"ok": true, "data": <exchange body>}``
or ``{"ok": false, "error": {"code", "message", "reason"}}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from nats.aio.msg import Msg
from opentelemetry import trace

from libs.common.audit_feed import AUDIT_FEED
from libs.common.db import PG_POOL
from libs.common.errors import ApiError
from libs.common.identity import TokenRejected, refusal_reason
from libs.common.messaging import NATS_CLIENT, consume_span
from libs.common.subjects import AUTH_DIRECTORY, AUTH_EXCHANGE
from libs.common.web import DEPENDENCY_ERRORS, TRACER, validate

from .directory import DirectoryQuery, directory
from .state import AUTH
from .tokens import exchange

log = logging.getLogger(__name__)

QUEUE = "auth"
#: Exchanges handled at once per replica; beyond that, requests wait in the subscription's queue.
MAX_CONCURRENT = 256


def _error(exc: ApiError) -> dict[str, Any]:
    return {"ok": False, "error": {**exc.to_dict(), "reason": refusal_reason(exc)}}


def _text(value: Any, limit: int = 256) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _request(msg: Msg) -> dict[str, Any]:
    try:
        request = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        raise ApiError("invalid_payload", "request is not JSON") from None
    if not isinstance(request, dict):
        raise ApiError("invalid_payload", "request must be a JSON object")
    return request


async def _exchange(app: web.Application, request: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(request.get("token"), str):
        raise ApiError("invalid_payload", 'request must be {"token": string}')
    return await exchange(app[AUTH], app[PG_POOL], request["token"])


async def _directory(app: web.Application, request: dict[str, Any]) -> dict[str, Any]:
    query = validate(DirectoryQuery, request)
    async with app[PG_POOL].acquire() as conn:
        return await directory(conn, query.organization_id, query.division_id, query.user_ids)


Handler = Callable[[web.Application, dict[str, Any]], Awaitable[dict[str, Any]]]
#: What auth answers over NATS, each in queue group ``auth``.
HANDLERS: dict[str, Handler] = {AUTH_EXCHANGE: _exchange, AUTH_DIRECTORY: _directory}


async def _answer(app: web.Application, msg: Msg, handler: Handler) -> None:
    request: dict[str, Any] = {}
    with consume_span(app[TRACER], msg, kind=trace.SpanKind.SERVER, name=f"{msg.subject} process"):
        try:
            request = _request(msg)
            reply = {"ok": True, "data": await handler(app, request)}
        except ApiError as exc:
            feed = app.get(AUDIT_FEED)
            if exc.status in (401, 403) and feed is not None:
                feed.refusal(
                    exc,
                    ip=_text(request.get("ip")),
                    path=_text(request.get("path")) or f"nats:{msg.subject}",
                    user_id=exc.user_id if isinstance(exc, TokenRejected) else None,
                )
            reply = _error(exc)
        except DEPENDENCY_ERRORS as exc:
            log.warning("%s failed on a dependency: %s", msg.subject, exc)
            reply = _error(ApiError("unavailable", "a backing service is unavailable; retry shortly"))
        except Exception:
            log.exception("%s failed", msg.subject)
            reply = _error(ApiError("internal", "internal error"))
        if msg.reply:
            try:
                await msg.respond(orjson.dumps(reply))
            except DEPENDENCY_ERRORS as exc:  # the requester gave up or NATS went away: it retries
                log.info("reply to %s not sent: %s", msg.subject, exc)


async def exchange_responder(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: answer exchanges and directory queries while the app runs; finish the ones
    in flight on shutdown."""
    slots = asyncio.Semaphore(MAX_CONCURRENT)
    running: set[asyncio.Task[None]] = set()

    def responder(handler: Handler) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            await slots.acquire()

            async def run() -> None:
                try:
                    await _answer(app, msg, handler)
                finally:
                    slots.release()

            task = asyncio.create_task(run())
            running.add(task)
            task.add_done_callback(running.discard)

        return on_message

    subscriptions = [
        await app[NATS_CLIENT].subscribe(subject, queue=QUEUE, cb=responder(handler))
        for subject, handler in HANDLERS.items()
    ]
    yield
    for subscription in subscriptions:
        try:
            await subscription.unsubscribe()
        except DEPENDENCY_ERRORS as exc:
            log.info("unsubscribe failed: %s", exc)
    if running:
        await asyncio.wait(running, timeout=5)
