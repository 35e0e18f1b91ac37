"""NATS and JetStream: connection as a ``cleanup_ctx`` resource, idempotent stream declaration,
traced publish with ``Nats-Msg-Id``, traced consumption.

Publishing always goes through ``publish``/``js_publish`` so every message carries
``traceparent`` and the correlation id in its headers; consumers call ``consume_span`` to continue
that trace. This is the nats-py instrumentation the ecosystem lacks, written once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import nats
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError
from opentelemetry import trace

from .subjects import STREAMS
from .tracing import continued, inject

log = logging.getLogger(__name__)

NATS_CLIENT = web.AppKey("nats_client", NATS)
JETSTREAM = web.AppKey("jetstream", JetStreamContext)
#: Coroutines run after every reconnect (e.g. realtime re-reads what it may have missed).
NATS_RECONNECT_HOOKS = web.AppKey("nats_reconnect_hooks", list)
MSG_ID_HEADER = "Nats-Msg-Id"


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout: float = 30.0,
    reconnect_hooks: list[Callable[[], Awaitable[None]]] | None = None,
) -> NATS:
    """Connect with reconnects forever: a NATS restart must never take a service down."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")
        for hook in reconnect_hooks or ():
            try:
                await hook()
            except Exception:
                log.exception("reconnect hook failed")

    servers = [part.strip() for part in url.split(",") if part.strip()]
    deadline = asyncio.get_running_loop().time() + connect_timeout
    while True:
        try:
            return await nats.connect(
                servers=servers,
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                ping_interval=10,
                max_outstanding_pings=3,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
        except (OSError, nats.errors.NoServersError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


def nats_ctx(url: str, name: str) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` generator: connect, expose client and JetStream, drain on shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hooks: list[Callable[[], Awaitable[None]]] = []
        app[NATS_RECONNECT_HOOKS] = hooks
        client = await connect(url, name, reconnect_hooks=hooks)
        app[NATS_CLIENT] = client
        app[JETSTREAM] = client.jetstream()
        yield
        try:
            await asyncio.wait_for(client.drain(), timeout=5)
        except Exception:  # drain of a broken connection: closing is all that is left
            log.warning("nats drain failed; closing", exc_info=True)
        if not client.is_closed:
            try:
                await client.close()
            except Exception:  # the server is already gone; nothing left to close cleanly
                log.warning("nats close failed", exc_info=True)

    return ctx


async def ensure_stream(
    js: JetStreamContext,
    name: str,
    subjects: Sequence[str],
    *,
    replicas: int = 1,
    max_age: float | None = None,
    duplicate_window: float = 120.0,
) -> None:
    """Declare a stream; an existing one is updated to this config (idempotent, race-safe)."""
    config = StreamConfig(
        name=name,
        subjects=list(subjects),
        num_replicas=replicas,
        max_age=max_age,
        duplicate_window=duplicate_window,
    )
    try:
        await js.add_stream(config)
    except BadRequestError as exc:  # exists with another config, or raced with another pod
        if exc.err_code not in (10058, 10065):  # stream name in use / subjects overlap
            raise
        await js.update_stream(config)


async def declare_stream(js: JetStreamContext, name: str, *, replicas: int = 1) -> None:
    """Declare one of the shared streams (``subjects.STREAMS``) with its one configuration."""
    await ensure_stream(js, name, STREAMS[name], replicas=replicas)


async def stream_exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
        return True
    except NotFoundError:
        return False


def _headers(extra: dict[str, str] | None, correlation_id: str | None) -> dict[str, str]:
    headers: dict[str, str] = dict(extra or {})
    inject(headers, correlation_id)
    return headers


async def js_publish(
    js: JetStreamContext,
    tracer: trace.Tracer,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    correlation_id: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> PubAck:
    """Publish to JetStream under a PRODUCER span; ``msg_id`` makes retries harmless."""
    with tracer.start_as_current_span(
        f"{subject} publish",
        kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject, "messaging.message.id": msg_id},
    ) as span:
        all_headers = _headers(headers, correlation_id)
        all_headers[MSG_ID_HEADER] = msg_id
        ack = await js.publish(subject, payload, timeout=timeout, headers=all_headers)
        span.set_attribute("messaging.nats.duplicate", bool(ack.duplicate))
        return ack


async def publish(
    client: NATS,
    tracer: trace.Tracer,
    subject: str,
    payload: bytes,
    *,
    correlation_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Core NATS publish (fire and forget) with trace headers."""
    with tracer.start_as_current_span(
        f"{subject} publish",
        kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject},
    ):
        await client.publish(subject, payload, headers=_headers(headers, correlation_id))


async def request(
    client: NATS,
    tracer: trace.Tracer,
    subject: str,
    payload: bytes,
    *,
    timeout: float = 5.0,
    correlation_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Msg:
    """Request/reply under a CLIENT span, carrying trace headers to the responder."""
    with tracer.start_as_current_span(
        f"{subject} request",
        kind=trace.SpanKind.CLIENT,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject},
    ):
        return await client.request(subject, payload, timeout=timeout, headers=_headers(headers, correlation_id))


@contextmanager
def consume_span(
    tracer: trace.Tracer, msg: Msg, *, kind: trace.SpanKind = trace.SpanKind.CONSUMER, name: str | None = None
) -> Iterator[trace.Span]:
    """A span that continues the trace carried in ``msg``'s headers."""
    attributes: dict[str, Any] = {"messaging.system": "nats", "messaging.destination.name": msg.subject}
    with continued(tracer, name or f"{msg.subject} process", msg.headers, kind=kind, attributes=attributes) as span:
        yield span
