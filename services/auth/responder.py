"""The token exchange over NATS: request ``auth.v1.exchange`` (queue group ``auth``).

Realtime and boards exchange over NATS rather than HTTP: no service URL to configure, load spread
over auth replicas by the queue group, and the trace continues through the message headers.

Request ``{"token": ..., "ip"?: ..., "path"?: ...}`` (``ip``/``path`` describe the end user's
request, for the security event if it is refused). Reply ``{"ok": true, "data": <exchange body>}``
or ``{"ok": false, "error": {"code", "message", "reason"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from nats.aio.msg import Msg
from opentelemetry import trace

from libs.common.db import PG_POOL
from libs.common.errors import ApiError
from libs.common.identity import TokenRejected, refusal_reason
from libs.common.messaging import NATS_CLIENT, consume_span
from libs.common.subjects import AUTH_EXCHANGE
from libs.common.web import DEPENDENCY_ERRORS, TRACER

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


async def _answer(app: web.Application, msg: Msg) -> None:
    state = app[AUTH]
    request: dict[str, Any] = {}
    with consume_span(app[TRACER], msg, kind=trace.SpanKind.SERVER, name=f"{AUTH_EXCHANGE} process"):
        try:
            try:
                request = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                raise ApiError("invalid_payload", "request is not JSON") from None
            if not isinstance(request, dict) or not isinstance(request.get("token"), str):
                request = {}
                raise ApiError("invalid_payload", 'request must be {"token": string}')
            reply = {"ok": True, "data": await exchange(state, app[PG_POOL], request["token"])}
        except ApiError as exc:
            if exc.status in (401, 403) and state.refusals is not None:
                state.refusals.report(
                    exc,
                    ip=_text(request.get("ip")),
                    path=_text(request.get("path")) or f"nats:{AUTH_EXCHANGE}",
                    user_id=exc.user_id if isinstance(exc, TokenRejected) else None,
                )
            reply = _error(exc)
        except DEPENDENCY_ERRORS as exc:
            log.warning("exchange failed on a dependency: %s", exc)
            reply = _error(ApiError("unavailable", "a backing service is unavailable; retry shortly"))
        except Exception:
            log.exception("exchange failed")
            reply = _error(ApiError("internal", "internal error"))
        if msg.reply:
            with contextlib.suppress(*DEPENDENCY_ERRORS):
                await msg.respond(orjson.dumps(reply))


async def exchange_responder(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: answer exchanges while the app runs; finish the ones in flight on shutdown."""
    slots = asyncio.Semaphore(MAX_CONCURRENT)
    running: set[asyncio.Task[None]] = set()

    async def on_message(msg: Msg) -> None:
        await slots.acquire()

        async def run() -> None:
            try:
                await _answer(app, msg)
            finally:
                slots.release()

        task = asyncio.create_task(run())
        running.add(task)
        task.add_done_callback(running.discard)

    subscription = await app[NATS_CLIENT].subscribe(AUTH_EXCHANGE, queue=QUEUE, cb=on_message)
    yield
    with contextlib.suppress(*DEPENDENCY_ERRORS):
        await subscription.unsubscribe()
    if running:
        await asyncio.wait(running, timeout=5)
