"""Getting committed events onto JetStream: at least once, stored once.

The event row is written in the mutation's transaction, so Postgres knows about every event
before anyone else does. Two paths then publish it to ``kanban.events.<org>.<board>.<type>`` with
``Nats-Msg-Id = event_id`` (JetStream drops a second copy inside its duplicate window):

- **inline**, right after commit, from the request that made it — the fast path;
- the **relay**, for rows whose ``published_at`` is still NULL (the process died between commit
  and publish, or NATS was away). It wakes on ``NOTIFY boards_outbox`` (sent by the committing
  transaction), waits a short grace so the inline path can finish, and also sweeps periodically
  and once at start-up. Rows are claimed ``FOR UPDATE SKIP LOCKED`` so several replicas share
  the work instead of racing on it.

The relay never gives up: NATS or Postgres errors are logged, it waits and tries again, and a
lost LISTEN connection is replaced. It also prunes events past the retention (if one is set) and
remembered client operations past theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import nats.errors
from nats.aio.client import Client as NATS
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter

from libs.common import subjects
from libs.common.messaging import declare_stream, js_publish
from libs.common.tracing import continued

from .mutation import OUTBOX_CHANNEL, StoredEvent
from .records import EVENT_COLUMNS

log = logging.getLogger(__name__)

#: What a failed publish may raise: NATS away, no stream, timeouts, sockets.
PUBLISH_ERRORS = (nats.errors.Error, TimeoutError, OSError)
#: What a lost database may raise.
DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

_UNPUBLISHED = f"""
    SELECT {EVENT_COLUMNS} FROM kanban_board_events
    WHERE published_at IS NULL AND created_at < clock_timestamp() - make_interval(secs => $1)
    ORDER BY board_id, seq LIMIT $2
    FOR UPDATE SKIP LOCKED
"""
#: Inline publishes are marked in batches at most this often (seconds); well under ``grace``.
MARK_INTERVAL = 0.02
_MARK = "UPDATE kanban_board_events SET published_at = clock_timestamp() WHERE event_id = any($1::uuid[])"


@dataclass(frozen=True)
class OutboxConfig:
    replicas: int = 1
    sweep_interval: float = 5.0
    #: How long the relay leaves a fresh row to the inline publisher.
    grace: float = 1.0
    batch: int = 500
    publish_timeout: float = 2.0
    #: Days of events kept for catch-up (``None``: all of them).
    retention_days: float | None = None
    client_op_retention_hours: float = 24.0 * 7
    housekeeping_interval: float = 3600.0


def event_of(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        board_id=row["board_id"],
        organization_id=row["organization_id"],
        seq=row["seq"],
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        data=row["payload"],
        actor=row["actor"],
        correlation_id=row["correlation_id"],
        created_at=row["created_at"],
        trace_context=row["trace_context"],
    )


class Outbox:
    """Publishes committed events; ``run`` is the relay (one per process, a ``cleanup_ctx`` task)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        listen_connection: Callable[[], Awaitable[asyncpg.Connection]],
        nats_client: Callable[[], NATS | None],
        tracer: trace.Tracer,
        config: OutboxConfig,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.pool = pool
        self.listen_connection = listen_connection
        self.nats_client = nats_client
        self.tracer = tracer
        self.config = config
        self._wake = asyncio.Event()
        self._to_mark: list[str] = []
        self._mark_soon = asyncio.Event()
        self._stream_ready = False
        self._last_housekeeping = 0.0
        self.published = Counter(
            "boards_events_published_total",
            "Board events acknowledged by JetStream, by path",
            ["path"],
            registry=registry,
        )

    # --- publishing -----------------------------------------------------------------------

    async def _publish_one(self, event: StoredEvent) -> bool:
        client = self.nats_client()
        ack = await js_publish(
            client.jetstream(),  # type: ignore[union-attr]
            self.tracer,
            event.subject,
            event.envelope().to_json(),
            msg_id=event.event_id,
            correlation_id=event.correlation_id,
            timeout=self.config.publish_timeout,
        )
        return not ack.duplicate

    def _nats_up(self) -> bool:
        client = self.nats_client()
        return client is not None and client.is_connected

    async def publish(self, events: list[StoredEvent]) -> None:
        """After commit, from the request: best effort, the relay covers every failure."""
        if not events:
            return
        if not (self._stream_ready and self._nats_up()):
            self.wake()
            return
        done: list[str] = []
        for event in events:
            try:
                await self._publish_one(event)
            except PUBLISH_ERRORS as exc:
                log.warning("publish failed; the relay will retry: %s", exc, extra={"event_id": event.event_id})
                self._stream_ready = False
                self.wake()
                break
            done.append(event.event_id)
        if done:
            self.published.labels("inline").inc(len(done))
            self._to_mark.extend(done)
            self._mark_soon.set()

    async def _mark_published(self) -> None:
        """Set ``published_at`` for inline publishes, many rows per statement, off the request path.

        A mark that fails (Postgres away) is dropped: the relay republishes those rows later and
        JetStream drops the copies it still remembers (duplicate window).
        """
        while True:
            await self._mark_soon.wait()
            self._mark_soon.clear()
            batch, self._to_mark = self._to_mark, []
            try:
                await self.pool.execute(_MARK, batch)
            except Exception as exc:  # usually DATABASE_ERRORS; nothing here may stop the loop
                log.warning("could not mark %d events published: %s", len(batch), exc)
            await asyncio.sleep(MARK_INTERVAL)

    # --- the relay ------------------------------------------------------------------------

    def wake(self, *_: object) -> None:
        self._wake.set()

    async def ensure_stream(self) -> bool:
        if self._stream_ready:
            return True
        client = self.nats_client()
        if client is None or not client.is_connected:
            return False
        try:
            await declare_stream(client.jetstream(), subjects.BOARD_EVENTS_STREAM, replicas=self.config.replicas)
        except PUBLISH_ERRORS as exc:
            log.warning("cannot declare %s yet: %s", subjects.BOARD_EVENTS_STREAM, exc)
            return False
        self._stream_ready = True
        return True

    async def sweep(self, grace: float | None = None) -> int:
        """Publish unpublished rows older than ``grace`` seconds; returns how many were published."""
        grace = self.config.grace if grace is None else grace
        total = 0
        while await self.ensure_stream():
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(_UNPUBLISHED, grace, self.config.batch)
                done: list[str] = []
                for row in rows:
                    event = event_of(row)
                    try:
                        with continued(
                            self.tracer, "boards.outbox relay", event.trace_context, kind=trace.SpanKind.INTERNAL
                        ):
                            await self._publish_one(event)
                    except PUBLISH_ERRORS as exc:
                        log.warning("relay publish failed: %s", exc, extra={"event_id": event.event_id})
                        self._stream_ready = False
                        break
                    done.append(event.event_id)
                if done:
                    await conn.execute(_MARK, done)
            total += len(done)
            if done:
                self.published.labels("relay").inc(len(done))
                log.info("relay published %d events", len(done))
            if len(done) < self.config.batch:
                break
        return total

    async def housekeeping(self) -> None:
        """Prune events past retention (published ones only) and old client operations."""
        async with self.pool.acquire() as conn:
            if self.config.retention_days is not None:
                await conn.execute(
                    """DELETE FROM kanban_board_events WHERE published_at IS NOT NULL
                       AND created_at < clock_timestamp() - make_interval(secs => $1)""",
                    self.config.retention_days * 86400.0,
                )
            await conn.execute(
                "DELETE FROM kanban_client_ops WHERE created_at < clock_timestamp() - make_interval(secs => $1)",
                self.config.client_op_retention_hours * 3600.0,
            )

    async def run(self) -> None:
        """The relay and the marking of inline publishes; returns only when cancelled."""
        await asyncio.gather(self._relay(), self._mark_published())

    async def _relay(self) -> None:
        while True:
            try:
                await self._listen_and_sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever broke, the relay must outlive it
                log.warning("outbox relay: %s; retrying", exc)
                await asyncio.sleep(min(self.config.sweep_interval, 1.0))

    async def _listen_and_sweep(self) -> None:
        # A connection of its own: LISTEN lives as long as its connection, which a pool may recycle.
        listener = await self.listen_connection()
        try:
            await listener.add_listener(OUTBOX_CHANNEL, self.wake)
            listener.add_termination_listener(self.wake)
            grace = 0.0  # the first pass after (re)connecting: whatever a crash left behind
            while not listener.is_closed():
                published = await self.sweep(grace)
                grace = self.config.grace
                if time.monotonic() - self._last_housekeeping > self.config.housekeeping_interval:
                    await self.housekeeping()
                    self._last_housekeeping = time.monotonic()
                if published == 0 or not self._stream_ready:
                    await self._wait(self.config.sweep_interval)
                    if self._wake.is_set():  # a commit somewhere: give its own publisher a moment
                        self._wake.clear()
                        await asyncio.sleep(self.config.grace)
        finally:
            listener.terminate()

    async def _wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
