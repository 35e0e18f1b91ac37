"""NATS and JetStream: connection as a ``cleanup_ctx`` resource, idempotent stream declaration,
traced publish with ``Nats-Msg-Id``, traced consumption.

Publishing always goes through ``publish``/``js_publish`` so every message carries
``traceparent`` and the correlation id in its headers; consumers call ``consume_span`` to continue
that trace. This is the nats-py instrumentation the ecosystem lacks, written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
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

from .nats_permissions import SERVICES, inbox_prefix
from .settings import CommonSettings, ConfigError
from .subjects import STREAMS
from .tracing import continued, inject

log = logging.getLogger(__name__)

NATS_CLIENT = web.AppKey("nats_client", NATS)
JETSTREAM = web.AppKey("jetstream", JetStreamContext)
#: Coroutines run after every reconnect (e.g. realtime re-reads what it may have missed).
NATS_RECONNECT_HOOKS = web.AppKey("nats_reconnect_hooks", list)
MSG_ID_HEADER = "Nats-Msg-Id"


def connect_options(settings: CommonSettings, service: str | None = None) -> dict[str, Any]:
    """nats-py ``connect`` options for the configured credentials and TLS, and the service's
    private inbox prefix (``nats_permissions`` lets each service subscribe only to its own)."""
    options: dict[str, Any] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password or ""
    if settings.nats_nkey_seed_file:
        options["nkeys_seed"] = _readable(settings.nats_nkey_seed_file, "NATS_NKEY_SEED_FILE")
    if settings.nats_creds_file:
        options["user_credentials"] = _readable(settings.nats_creds_file, "NATS_CREDS_FILE")
    if settings.nats_tls_ca_file or settings.nats_tls_cert_file:
        context = ssl.create_default_context(
            cafile=_readable(settings.nats_tls_ca_file, "NATS_TLS_CA_FILE") if settings.nats_tls_ca_file else None
        )
        if settings.nats_tls_cert_file:
            if not settings.nats_tls_key_file:
                raise ConfigError("configuration error: NATS_TLS_KEY_FILE must be set with NATS_TLS_CERT_FILE")
            context.load_cert_chain(
                _readable(settings.nats_tls_cert_file, "NATS_TLS_CERT_FILE"),
                _readable(settings.nats_tls_key_file, "NATS_TLS_KEY_FILE"),
            )
        options["tls"] = context
    if service in SERVICES:
        options["inbox_prefix"] = inbox_prefix(service)
    return options


def _readable(path: str, variable: str) -> str:
    if not os.access(path, os.R_OK):
        raise ConfigError(f"configuration error: {variable}={path!r} is not a readable file")
    return path


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout: float = 30.0,
    reconnect_hooks: list[Callable[[], Awaitable[None]]] | None = None,
    **options: Any,
) -> NATS:
    """Connect with reconnects forever: a NATS restart must never take a service down.
    ``options`` are nats-py's (credentials, TLS, inbox prefix: ``connect_options``).

    Credentials NATS refuses on the first connection stop start-up with one line (``ConfigError``)
    instead of retrying forever; once connected, a refusal (say, a rotated password) is logged as
    an error on every attempt while reconnects go on.
    """
    refused = asyncio.Event()
    connected = False

    async def on_error(exc: Exception) -> None:
        text = str(exc).lower()
        if "authorization violation" in text or "authentication" in text:
            log.error("nats refused this service's credentials: %s", exc)
            if not connected:
                refused.set()
        elif "permissions violation" in text:  # a grant missing in nats_permissions: a bug
            log.error("nats refused a subject: %s", exc)
        else:
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
        attempt = asyncio.ensure_future(
            nats.connect(
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
                **options,
            )
        )
        refusal = asyncio.ensure_future(refused.wait())
        await asyncio.wait([attempt, refusal], return_when=asyncio.FIRST_COMPLETED)
        refusal.cancel()
        if refused.is_set() and not attempt.done():
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            raise ConfigError(
                "configuration error: NATS refused the credentials (NATS_USER/NATS_PASSWORD, "
                "NATS_NKEY_SEED_FILE or NATS_CREDS_FILE)"
            )
        try:
            client = attempt.result()
        except (OSError, nats.errors.NoServersError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        connected = True
        return client


def nats_ctx(settings: CommonSettings, service: str) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` generator: connect as ``service``, expose client and JetStream, drain on shutdown."""
    options = connect_options(settings, service)  # a bad credential file stops start-up here

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        hooks: list[Callable[[], Awaitable[None]]] = []
        app[NATS_RECONNECT_HOOKS] = hooks
        client = await connect(settings.nats_url, f"liveboard-{service}", reconnect_hooks=hooks, **options)
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
