"""Durable JetStream pull consumers that turn events into activity rows.

One ``AuditConsumer`` per stream (board events; security and connection events). Each fetched
message gets exactly one of three outcomes:

- stored (or already stored: same ``event_id``) and committed, then ``ack`` — never before commit;
- unstorable (not JSON, not an envelope, no organization, refused by Postgres as data): written to
  ``audit.dead_letters`` with the reason, then ``term`` so it is not redelivered forever;
- Postgres or the network failed: ``nak(delay)`` and back off, so the message comes back later.

NATS or Postgres restarts never end the loop: it re-declares the stream and consumer, backs off
and carries on. ``stop()`` makes it finish the batch in hand (acking what it committed) and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace

from libs.common.messaging import consume_span, declare_stream, stream_exists

from .chain import append
from .metrics import AuditMetrics
from .records import Unstorable, to_record

log = logging.getLogger(__name__)

#: Seconds one fetch waits for messages; also the longest ``stop()`` waits for an idle fetch.
FETCH_TIMEOUT = 1.0
#: Deliveries after which an error we cannot classify dead-letters the message (a bug, not an outage).
MAX_UNKNOWN_FAILURES = 10
ACQUIRE_TIMEOUT = 5.0

#: Postgres or the network is down or overloaded: retry without limit, it will pass.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)
#: Postgres refuses the data itself (SQLSTATE 22xxx, 54xxx; e.g. a NUL in jsonb): fails on every delivery.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.exceptions.ProgramLimitExceededError,  # e.g. a value too long for its index
    orjson.JSONDecodeError,
)


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    subjects: tuple[str, ...]
    durable: str
    filter_subject: str | None = None


class Backoff:
    """Capped exponential delay: quick retries for a blip, a slow steady pace for an outage."""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self.first, self.cap, self.current = first, cap, 0.0

    def next(self) -> float:
        self.current = min(self.cap, self.current * 2 if self.current else self.first)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


class AuditConsumer:
    def __init__(
        self,
        spec: ConsumerSpec,
        *,
        js: JetStreamContext,
        pool: asyncpg.Pool,
        tracer: trace.Tracer,
        metrics: AuditMetrics,
        batch: int = 100,
        ack_wait: float = 30.0,
        replicas: int = 1,
    ) -> None:
        self.spec = spec
        self.js = js
        self.pool = pool
        self.tracer = tracer
        self.metrics = metrics
        self.batch = batch
        self.ack_wait = ack_wait  # a crash mid-batch delays those messages by this much
        self.replicas = replicas
        self.backoff = Backoff()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        spec = self.spec
        if not await stream_exists(self.js, spec.stream):  # publishers declare it too, identically
            await declare_stream(self.js, spec.stream, replicas=self.replicas)
        config = ConsumerConfig(
            name=spec.durable,
            durable_name=spec.durable,
            description="audit activity log",
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_ack_pending=max(1000, 2 * self.batch),
            filter_subject=spec.filter_subject,
        )
        await self.js.add_consumer(spec.stream, config)  # create, or update to this config
        return await self.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)

    async def run(self) -> None:
        """Consume until ``stop()``; every failure short of cancellation is retried."""
        while not self._stopping.is_set():
            try:
                subscription = await self._subscribe()
            except Exception as exc:
                log.warning("cannot subscribe to %s: %s", self.spec.stream, exc)
                await self._pause(self.backoff.next())
                continue
            log.info("consuming", extra={"stream": self.spec.stream, "consumer": self.spec.durable})
            try:
                await self._consume(subscription)
            except Exception:  # a bug must not end consumption for good: log, back off, resubscribe
                log.exception("consumer loop failed", extra={"stream": self.spec.stream})
                await self._pause(self.backoff.next())
            finally:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            try:
                messages = await subscription.fetch(self.batch, timeout=FETCH_TIMEOUT)
            except (nats.errors.TimeoutError, TimeoutError):
                continue  # nothing new yet
            except Exception as exc:  # connection lost, consumer deleted, ...: subscribe afresh
                log.warning("fetch from %s failed: %s", self.spec.stream, exc)
                await self._pause(self.backoff.next())
                return
            for index, msg in enumerate(messages):
                if not await self.handle(msg):
                    # Postgres is unavailable: hand the rest back too and wait before fetching again.
                    delay = self.backoff.current
                    for rest in messages[index + 1 :]:
                        await self._settle(rest.nak(delay=max(delay, 1.0)))
                    await self._pause(delay)
                    break
            else:
                self.backoff.reset()

    async def handle(self, msg: Msg) -> bool:
        """Store, dead-letter or retry one message; False when it was handed back for later."""
        stream = self.spec.stream
        with consume_span(self.tracer, msg, name=f"{stream} audit") as span:
            try:
                record = to_record(stream, msg.subject, msg.data, msg.headers, received_at=datetime.now(UTC))
            except Unstorable as exc:
                return await self._dead_letter(msg, str(exc))
            except Exception as exc:
                return await self._unexpected(msg, exc)
            span.set_attribute("messaging.message.id", record.event_id)
            started = time.perf_counter()
            try:
                async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                    row_id = await append(conn, record)
            except DATA_ERRORS as exc:
                return await self._dead_letter(msg, f"refused by Postgres: {exc}")
            except TRANSIENT_ERRORS as exc:
                return await self._retry(msg, exc)
            except Exception as exc:
                return await self._unexpected(msg, exc)
            self.metrics.insert_seconds.labels(stream).observe(time.perf_counter() - started)
            (self.metrics.stored if row_id is not None else self.metrics.duplicates).labels(stream).inc()
            log.debug("stored" if row_id is not None else "duplicate", extra={"event_id": record.event_id})
            await self._settle(msg.ack())
            return True

    async def _unexpected(self, msg: Msg, exc: Exception) -> bool:
        """An error we cannot classify (a bug?): retry a few times, then keep it as a dead letter."""
        if msg.metadata.num_delivered >= MAX_UNKNOWN_FAILURES:
            log.exception("giving up on a message", extra={"subject": msg.subject})
            return await self._dead_letter(msg, f"failed {MAX_UNKNOWN_FAILURES} times: {exc!r}")
        log.exception("unexpected failure storing a message", extra={"subject": msg.subject})
        return await self._retry(msg, exc)

    async def _retry(self, msg: Msg, exc: BaseException) -> bool:
        delay = max(self.backoff.next(), 1.0)
        log.warning("cannot store yet, retrying in %.1fs: %s", delay, exc, extra={"stream": self.spec.stream})
        self.metrics.retried.labels(self.spec.stream).inc()
        await self._settle(msg.nak(delay=delay))
        return False

    async def _dead_letter(self, msg: Msg, reason: str) -> bool:
        meta = msg.metadata
        headers = {key: value.replace("\x00", "") for key, value in (msg.headers or {}).items()}
        text = msg.data.decode("utf-8", errors="replace").replace("\x00", "")
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                await conn.execute(
                    """INSERT INTO dead_letters
                           (stream, stream_seq, stored_at, subject, payload, payload_text, reason, headers,
                            num_delivered)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                       ON CONFLICT ON CONSTRAINT dead_letters_message_key DO NOTHING""",
                    meta.stream,
                    meta.sequence.stream,
                    meta.timestamp,
                    msg.subject.replace("\x00", ""),
                    msg.data,
                    text,
                    reason.replace("\x00", ""),
                    headers,
                    meta.num_delivered,
                )
        except Exception as exc:  # the dead letter must be kept before the message is dropped
            return await self._retry(msg, exc)
        log.warning(
            "dead-lettered", extra={"stream": meta.stream, "stream_seq": meta.sequence.stream, "reason": reason}
        )
        self.metrics.dead_lettered.labels(self.spec.stream).inc()
        await self._settle(msg.term())
        return True

    async def _settle(self, reply: Awaitable[None]) -> None:
        """Send an ack/nak/term; if NATS is gone it is lost, and redelivery is harmless (idempotent)."""
        try:
            await reply
        except Exception as exc:
            log.warning("could not acknowledge a message: %s", exc)

    async def refresh_lag(self) -> None:
        """Copy the consumer's pending counts from JetStream into the lag gauges."""
        info = await self.js.consumer_info(self.spec.stream, self.spec.durable)
        labels = (self.spec.stream, self.spec.durable)
        self.metrics.lag.labels(*labels).set(info.num_pending or 0)
        self.metrics.ack_pending.labels(*labels).set(info.num_ack_pending or 0)
