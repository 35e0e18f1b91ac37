"""What auth tells the rest of the system: membership changes and refused requests.

* ``auth.membership.changed.<user>`` (core NATS, after commit): realtime drops cached scopes and
  evicts sockets from rooms the user may no longer enter. Fire-and-forget is enough because scope
  tokens expire within minutes anyway; the event only makes the change felt within a second.
* ``security.auth.<reason>`` (JetStream, stream ``SECURITY_EVENTS``): every refusal, as an
  ``Envelope`` the audit service stores like any other event. Refused requests must not wait for
  JetStream, so refusals go through a bounded queue drained by one task; under a flood the excess
  is dropped and counted rather than growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import context, trace
from prometheus_client import CollectorRegistry, Counter

from libs.common.correlation import current_correlation_id
from libs.common.errors import ApiError
from libs.common.events import Envelope
from libs.common.identity import refusal_event, refusal_reason
from libs.common.messaging import js_publish, publish
from libs.common.subjects import membership_changed
from libs.common.web import DEPENDENCY_ERRORS

log = logging.getLogger(__name__)

SOURCE = "auth"


@dataclass(frozen=True)
class MembershipChange:
    """One user's access to one organization changed (``role`` None when removed)."""

    user_id: str
    organization_id: str
    role: str | None
    divisions: list[str] | None
    change: str  # "upserted" | "removed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "organization_id": self.organization_id,
            "role": self.role,
            "divisions": self.divisions,
            "change": self.change,
        }


async def publish_membership_changes(client: NATS, tracer: trace.Tracer, changes: list[MembershipChange]) -> None:
    """Announce committed changes; a NATS hiccup is logged, never turned into a failed request."""
    for change in changes:
        try:
            await publish(client, tracer, membership_changed(change.user_id), orjson.dumps(change.to_dict()))
        except DEPENDENCY_ERRORS as exc:
            log.warning("membership change not announced: %s", exc, extra=change.to_dict())


@dataclass
class _Pending:
    subject: str
    envelope: Envelope
    otel_context: context.Context


class RefusalReporter:
    """Turns refusals into ``security.auth.<reason>`` events on JetStream, off the request path."""

    def __init__(
        self,
        js: JetStreamContext,
        tracer: trace.Tracer,
        registry: CollectorRegistry,
        *,
        max_pending: int = 10000,
    ) -> None:
        self.js = js
        self.tracer = tracer
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_pending)
        self._task: asyncio.Task[None] | None = None
        self.refusals = Counter("auth_refusals_total", "Requests refused, by reason", ["reason"], registry=registry)
        self.dropped = Counter(
            "auth_security_events_dropped_total", "Security events dropped (queue full or NATS down)", registry=registry
        )

    def report(
        self,
        error: ApiError,
        *,
        ip: str | None,
        path: str | None,
        user_id: str | None = None,
        organization_id: str | None = None,
    ) -> None:
        subject, envelope = refusal_event(
            SOURCE,
            error,
            ip=ip,
            path=path,
            user_id=user_id,
            organization_id=organization_id,
            correlation_id=current_correlation_id(),
        )
        self.refusals.labels(refusal_reason(error)).inc()
        log.info(
            "refused",
            extra={"reason": envelope.data["reason"], "path": path, "ip": ip, "user_id": user_id},
        )
        try:
            self._queue.put_nowait(_Pending(subject, envelope, context.get_current()))
        except asyncio.QueueFull:
            self.dropped.inc()

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain_forever(), name="auth-security-events")

    async def stop(self, timeout: float = 2.0) -> None:
        """Give queued events a moment to go out, then stop the publishing task."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain_forever(self) -> None:
        while True:
            pending = await self._queue.get()
            token = context.attach(pending.otel_context)
            try:
                await js_publish(
                    self.js,
                    self.tracer,
                    pending.subject,
                    pending.envelope.to_json(),
                    msg_id=pending.envelope.event_id,
                    correlation_id=pending.envelope.correlation_id,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # JetStream down or slow: this event is lost, the service goes on
                self.dropped.inc()
                log.warning("security event not published: %s", exc, extra={"subject": pending.subject})
            finally:
                context.detach(token)
                self._queue.task_done()
