"""What every service tells the audit log besides board events: refusals and connection lifecycle.

The contract says every refusal lands in the audit log. Requests must not wait for JetStream, so
events go through a bounded queue drained by one task that publishes each with its ``event_id``
as ``Nats-Msg-Id`` (a retry is harmless), retrying while NATS is away and declaring the
``SECURITY_EVENTS`` stream again if it went missing. Nothing here is silent: every event is
counted by outcome (``liveboard_audit_feed_events_total{outcome=published|dropped_queue_full|
dropped_unpublishable}``), the queue length is a gauge, and a drop is logged (at most once per
``LOG_EVERY`` seconds, with the count since the last line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError
from opentelemetry import context, trace
from prometheus_client import CollectorRegistry, Counter, Gauge

from .correlation import current_correlation_id
from .errors import ApiError
from .events import Envelope
from .identity import TokenRejected, refusal_reason
from .ids import ID_RE
from .messaging import JETSTREAM, declare_stream, js_publish
from .settings import CommonSettings
from .subjects import SECURITY_STREAM, security_event
from .web import METRICS, TRACER

log = logging.getLogger(__name__)

LOG_EVERY = 10.0
ATTEMPTS = 6


@dataclass
class _Pending:
    subject: str
    envelope: Envelope
    otel_context: context.Context


class AuditFeed:
    """A service's security and connection events on their way to JetStream (see the module docstring)."""

    def __init__(
        self,
        source: str,
        js: JetStreamContext,
        tracer: trace.Tracer,
        registry: CollectorRegistry,
        *,
        replicas: int = 1,
        max_pending: int = 10_000,
        enabled: bool = True,
        attempts: int = ATTEMPTS,
        publish_timeout: float = 5.0,
    ) -> None:
        self.source = source
        self.attempts = attempts
        self.publish_timeout = publish_timeout
        self.js = js
        self.tracer = tracer
        self.replicas = replicas
        self.enabled = enabled
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task[None] | None = None
        self._dropped_since_log = 0
        self._last_drop_log = 0.0
        self.events = Counter(
            "liveboard_audit_feed_events_total",
            "Security and connection events for the audit log, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "liveboard_refusals_total",
            "Refused requests reported to the audit log, by reason",
            ["reason"],
            registry=registry,
        )
        pending = Gauge("liveboard_audit_feed_pending", "Events waiting to be published", registry=registry)
        pending.set_function(self._queue.qsize)

    # -- what services call ------------------------------------------------------------------

    def refusal(
        self,
        error: ApiError,
        *,
        ip: str | None,
        path: str | None,
        user_id: str | None = None,
        organization_id: str | None = None,
        **extra: Any,
    ) -> None:
        """A refused request (``security.<source>.<reason>``); never carries the token."""
        audit = dict(error.audit or {})
        reason = audit.pop("reason", None) or refusal_reason(error)
        organization_id = audit.pop("organization_id", None) or organization_id
        data: dict[str, Any] = {"ip": ip, "reason": reason, "path": path, "code": error.code, "source": self.source}
        if organization_id is not None:
            data["organization_id"] = organization_id
        data.update(audit)
        data.update(extra)
        envelope = Envelope(
            event_type=f"security.{reason}", data=data, user_id=user_id, correlation_id=current_correlation_id()
        )
        self.refusals.labels(reason).inc()
        log.info("refused", extra={"reason": reason, "path": path, "ip": ip, "user_id": user_id})
        self.publish(security_event(self.source, reason), envelope)

    def security(self, reason: str, data: dict[str, Any], *, user_id: str | None = None) -> None:
        """A security event that is not a request refusal (an abusive socket, a revoked room)."""
        body = {"source": self.source, "reason": reason, **data}
        self.refusals.labels(reason).inc()
        self.publish(
            security_event(self.source, reason),
            Envelope(
                event_type=f"security.{reason}", data=body, user_id=user_id, correlation_id=current_correlation_id()
            ),
        )

    def publish(self, subject: str, envelope: Envelope) -> None:
        if not self.enabled:
            return
        try:
            self._queue.put_nowait(_Pending(subject, envelope, context.get_current()))
        except asyncio.QueueFull:
            self._dropped("dropped_queue_full", subject)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain(), name=f"{self.source}-audit-feed")

    async def stop(self, timeout: float = 3.0) -> None:
        """Publish what is queued (for up to ``timeout`` seconds), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            left = self._queue.qsize()
            log.warning("audit feed stopped with events unpublished", extra={"unpublished": left})
            self.events.labels("dropped_unpublishable").inc(left)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def _drain(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            token = context.attach(item.otel_context)
            try:
                await self._publish_one(item)
            finally:
                context.detach(token)

    async def _publish_one(self, item: _Pending) -> None:
        envelope = item.envelope
        for attempt in range(self.attempts):
            try:
                await js_publish(
                    self.js,
                    self.tracer,
                    item.subject,
                    envelope.to_json(),
                    msg_id=envelope.event_id,
                    correlation_id=envelope.correlation_id,
                    timeout=self.publish_timeout,
                )
                self.events.labels("published").inc()
                return
            except asyncio.CancelledError:
                raise
            except NoStreamResponseError:  # the stream is gone (a fresh NATS): declare it again
                log.warning("SECURITY_EVENTS stream missing; declaring it", extra={"subject": item.subject})
                try:
                    await declare_stream(self.js, SECURITY_STREAM, replicas=self.replicas)
                except Exception as exc:
                    log.warning("cannot declare SECURITY_EVENTS: %s", exc)
            except Exception as exc:  # NATS away or slow: retry with the same msg id
                log.info("audit event not published yet: %s", exc, extra={"subject": item.subject})
            if attempt + 1 < self.attempts:
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
        self._dropped("dropped_unpublishable", item.subject)

    def _dropped(self, outcome: str, subject: str) -> None:
        self.events.labels(outcome).inc()
        self._dropped_since_log += 1
        now = time.monotonic()
        if now - self._last_drop_log >= LOG_EVERY:
            log.warning(
                "audit events dropped",
                extra={"outcome": outcome, "dropped": self._dropped_since_log, "subject": subject},
            )
            self._dropped_since_log = 0
            self._last_drop_log = now


AUDIT_FEED = web.AppKey("audit_feed", AuditFeed)
#: The authenticated user of a REST request, set by whatever verified its token (for refusal reports).
CALLER_ID = web.RequestKey("caller_user_id", str)


def audit_feed_ctx(source: str, settings: CommonSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """``cleanup_ctx``: declare ``SECURITY_EVENTS`` and run this service's feed (after NATS is up,
    stopped before NATS drains, so queued events still go out on shutdown)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        js = app[JETSTREAM]
        try:
            await declare_stream(js, SECURITY_STREAM, replicas=settings.nats_stream_replicas)
        except Exception as exc:  # the feed declares it again when a publish finds it missing
            log.warning("cannot declare SECURITY_EVENTS at start-up: %s", exc)
        feed = AuditFeed(
            source,
            js,
            app[TRACER],
            app[METRICS],
            replicas=settings.nats_stream_replicas,
            enabled=getattr(settings, "audit_events", True),
        )
        feed.start()
        app[AUDIT_FEED] = feed
        yield
        await feed.stop()

    return ctx


@web.middleware
async def report_refusals(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Every 401/403 — and every ``hidden`` not_found — becomes a security event of this service."""
    try:
        return await handler(request)
    except ApiError as exc:
        feed = request.app.get(AUDIT_FEED)
        if feed is not None and (exc.status in (401, 403) or exc.audit is not None):
            user_id = exc.user_id if isinstance(exc, TokenRejected) else request.get(CALLER_ID)
            organization_id = request.match_info.get("org") or request.query.get("organization_id")
            feed.refusal(
                exc,
                ip=request.remote,
                path=request.path,
                user_id=user_id,
                organization_id=organization_id if organization_id and ID_RE.fullmatch(organization_id) else None,
            )
        raise
