"""Getting committed events onto JetStream: at least once, stored once.

The event row is written in the mutation's transaction, so Postgres knows about every event
before anyone else does. Two paths then publish it to ``kanban.events.<org>.<board>.<type>`` with
``Nats-Msg-Id = event_id`` (JetStream drops a second copy inside its duplicate window):

- the **publisher**, right after commit: the request hands its events over and answers at once
  (the user's change is committed; a slow JetStream must not hold their ack — docs/decisions.md
  "Acked at commit"). One task per process publishes what was handed over, in commit order,
  pipelining up to ``PIPELINE`` publishes, and marks them published in batches;
- the **relay**, for rows whose ``published_at`` is still NULL (the process died between commit
  and publish, NATS was away, the publisher's queue was full). It wakes on ``NOTIFY
  boards_outbox`` (sent by the committing transaction), waits a short grace so the publisher can
  finish, and also sweeps periodically and once at start-up. Rows are claimed ``FOR UPDATE SKIP
  LOCKED`` so several replicas share the work instead of racing on it.

JetStream acknowledges a write before it is on disk (``sync_interval``), so an acknowledged event
can still be lost when a NATS host crashes. Postgres is the source of truth: after every
reconnection to NATS the relay **rewinds**: rows published within the last
``republish_window`` seconds are marked unpublished and published again. Copies JetStream still
holds are dropped as duplicates (the window is its duplicate window); the ones it lost are stored.

The relay never gives up: NATS or Postgres errors are logged, it waits and tries again, and a
lost LISTEN connection is replaced. It also prunes events past the retention (if one is set) and
remembered client operations past theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
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

_UNPUBLISHED = f"""
    SELECT {EVENT_COLUMNS} FROM kanban_board_events
    WHERE published_at IS NULL AND created_at < clock_timestamp() - make_interval(secs => $1)
    ORDER BY board_id, seq LIMIT $2
    FOR UPDATE SKIP LOCKED
"""
#: Inline publishes are marked in batches at most this often (seconds); well under ``grace``.
MARK_INTERVAL = 0.02
_MARK = "UPDATE kanban_board_events SET published_at = clock_timestamp() WHERE event_id = any($1::uuid[])"
_REWIND = """UPDATE kanban_board_events SET published_at = NULL
             WHERE published_at > clock_timestamp() - make_interval(secs => $1)"""
#: Publishes the publisher has in flight at once (they go out in order; acks are awaited together).
PIPELINE = 64
#: Events waiting for the publisher beyond this are left to the relay (JetStream away or slow).
QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class OutboxConfig:
    replicas: int = 1
    sweep_interval: float = 5.0
    #: How long the relay leaves a fresh row to the inline publisher.
    grace: float = 1.0
    batch: int = 500
    publish_timeout: float = 2.0
    #: Seconds of published events the relay publishes again after a NATS (re)connection: what a
    #: crashed NATS host may have acknowledged without storing (its ``sync_interval``, 2 min by
    #: default). Equal to the stream's duplicate window, so copies it kept are not stored twice.
    republish_window: float = 120.0
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
        self._mark_lock = asyncio.Lock()
        self._queue: deque[StoredEvent] = deque()
        self._publish_soon = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        #: Set on every NATS reconnect: the relay rewinds before its next sweep.
        self._rewind_due = False
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

    async def _publish_traced(self, event: StoredEvent, name: str) -> bool:
        """``_publish_one`` inside the trace of the request that committed ``event`` (the
        publisher and the relay run outside it, in tasks of their own)."""
        with continued(self.tracer, name, event.trace_context, kind=trace.SpanKind.INTERNAL):
            return await self._publish_one(event)

    def _nats_up(self) -> bool:
        client = self.nats_client()
        return client is not None and client.is_connected

    async def publish(self, events: list[StoredEvent]) -> None:
        """After commit, from the request: hand the events to the publisher and return at once.

        Best effort, the relay covers every failure: with NATS away, or too much already waiting,
        the events are left to it.
        """
        if not events:
            return
        if not (self._stream_ready and self._nats_up()) or len(self._queue) + len(events) > QUEUE_LIMIT:
            self.wake()
            return
        self._queue.extend(events)
        self._idle.clear()
        self._publish_soon.set()

    async def _publisher(self) -> None:
        """Publish what requests handed over, in order, ``PIPELINE`` at a time."""
        while True:
            if not self._queue:
                self._idle.set()
                await self._publish_soon.wait()
                self._publish_soon.clear()
                continue
            batch = [self._queue.popleft() for _ in range(min(PIPELINE, len(self._queue)))]
            # Tasks start in creation order and each writes its PUB before its first wait, so the
            # batch goes out in commit order; the acks are then awaited together.
            outcomes = await asyncio.gather(
                *(self._publish_traced(e, "boards.outbox publish") for e in batch), return_exceptions=True
            )
            done: list[str] = []
            for event, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, PUBLISH_ERRORS):
                    log.warning("publish failed; the relay will retry: %s", outcome, extra={"event_id": event.event_id})
                    self._stream_ready = False
                elif isinstance(outcome, BaseException):  # a bug: logged in full, the row stays the relay's
                    log.error("publish failed unexpectedly; the relay will retry", exc_info=outcome)
                    self._stream_ready = False
                else:
                    done.append(event.event_id)
            if done:
                self.published.labels("inline").inc(len(done))
                self._to_mark.extend(done)
                self._mark_soon.set()
            if not self._stream_ready:  # NATS or the stream went away: the rest is the relay's
                self._queue.clear()
                self.wake()

    async def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until the publisher has nothing left; for a clean shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self._idle.is_set()

    async def nats_reconnected(self) -> None:
        """A new NATS connection (perhaps to a server that lost writes): rewind, then sweep."""
        self._rewind_due = True
        self.wake()

    async def rewind(self) -> int:
        """Mark the events published within ``republish_window`` unpublished again (see module)."""
        async with self._mark_lock:
            self._to_mark.clear()  # published before the reconnect: to be published again instead
            status = await self.pool.execute(_REWIND, self.config.republish_window)
        count = int(status.split()[-1])
        if count:
            log.info("republishing the %d events of the last %.0fs", count, self.config.republish_window)
        return count

    async def _mark_published(self) -> None:
        """Set ``published_at`` for inline publishes, many rows per statement, off the request path.

        A mark that fails (Postgres away) is dropped: the relay republishes those rows later and
        JetStream drops the copies it still remembers (duplicate window).
        """
        while True:
            await self._mark_soon.wait()
            self._mark_soon.clear()
            async with self._mark_lock:  # never across a rewind: a mark after it would undo it
                batch, self._to_mark = self._to_mark, []
                try:
                    await self.pool.execute(_MARK, batch)
                except Exception as exc:  # usually a lost database; nothing here may stop the loop
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
                        await self._publish_traced(event, "boards.outbox relay")
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
        """The relay, the publisher and its marking; returns only when cancelled."""
        await asyncio.gather(self._relay(), self._publisher(), self._mark_published())

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
                if self._rewind_due and self._nats_up():
                    self._rewind_due = False
                    try:
                        await self.rewind()
                    except BaseException:
                        self._rewind_due = True  # Postgres away: again on the next pass
                        raise
                    grace = 0.0
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
