"""The transaction every mutation runs in: the rules of DESIGN.md "boards" made into one function.

``Mutations.run`` is the only way ``actions`` touches the database for writing:

1. remember ``(user, client_op_id)`` first — a retry, even one racing the original, waits on that
   row and then returns the stored result instead of writing again;
2. lock the board row (``FOR UPDATE``): a board's mutations are serialized, so ``seq`` is gapless
   and every other lock a mutation takes is taken under this one (no lock-order deadlocks);
3. check the caller's scope against the board's organization and division: a board the caller
   may not read answers exactly like a missing one (``not_found``, no existence oracle);
4. let the command validate and write (``Tx``), each ``emit`` taking the next ``seq``;
5. insert the event rows, store the new ``seq``, ``NOTIFY`` the relay — same transaction;
6. after commit, hand the events to the outbox for publishing.

Before all that, a request waits in a small per-board queue of this process (``_queue_for``), so a
hot board cannot take every pooled connection. Deadlocks and serialization failures (which the
board lock makes unlikely, but Postgres may still report under FK checks) are retried here and
never reach a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram

from libs.common import subjects
from libs.common.errors import ApiError, hidden, not_found
from libs.common.events import Envelope
from libs.common.scopes import Scope
from libs.common.tracing import current_trace_id, inject

from .queries import hide_if_foreign
from .records import BOARD_COLUMNS, iso

log = logging.getLogger(__name__)

#: Channel the relay LISTENs on; the payload is the board id.
OUTBOX_CHANNEL = "boards_outbox"
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
ATTEMPTS = 5
#: Transactions of one board this process lets reach Postgres at once: one running, one already
#: waiting on the row lock so it starts the moment the first commits.
IN_FLIGHT_PER_BOARD = 2
#: How many card/column -> board answers to keep (they never change, so only memory bounds it).
OWNER_CACHE_SIZE = 100_000


@dataclass(frozen=True)
class Caller:
    """Who asks, and the request's correlation and idempotency ids."""

    scope: Scope
    correlation_id: str | None = None
    client_op_id: str | None = None

    @property
    def user_id(self) -> str:
        return self.scope.sub or ""

    def who(self) -> dict[str, Any]:
        """``{id, email}`` as the seed's ``moved_by`` carries it."""
        return {"id": self.scope.sub, "email": self.scope.email}


@dataclass(frozen=True)
class StoredEvent:
    """One committed event row: what the outbox publishes and the REST catch-up returns."""

    board_id: str
    organization_id: str
    seq: int
    event_id: str
    event_type: str
    data: dict[str, Any]
    actor: str | None
    correlation_id: str | None
    created_at: datetime
    trace_context: dict[str, str] | None = None

    @property
    def subject(self) -> str:
        return subjects.board_events(self.organization_id, self.board_id, self.event_type)

    def envelope(self) -> Envelope:
        return Envelope(
            event_type=self.event_type,
            data=self.data,
            user_id=self.actor,
            board_id=self.board_id,
            seq=self.seq,
            event_id=self.event_id,
            timestamp=iso(self.created_at) or "",
            correlation_id=self.correlation_id,
        )


@dataclass(frozen=True)
class Applied:
    """A command's outcome: ``result`` for the caller, ``events`` it committed (none on replay)."""

    result: dict[str, Any]
    events: list[StoredEvent]
    created: bool = False
    replayed: bool = False


@dataclass
class Tx:
    """A mutation in progress: the locked board, the caller, the transaction's clock."""

    conn: asyncpg.Connection
    caller: Caller
    now: datetime
    board: dict[str, Any] = field(default_factory=dict)
    events: list[StoredEvent] = field(default_factory=list)
    created: bool = False

    @property
    def board_id(self) -> str:
        return self.board["id"]

    @property
    def event_time(self) -> str:
        """The events' timestamp (also the rows' ``updated_at``), as the envelope writes it."""
        return iso(self.now) or ""

    def emit(self, event_type: str, data: dict[str, Any]) -> StoredEvent:
        """Record an event; it takes the board's next ``seq`` and is written with the commit."""
        trace_context: dict[str, str] = {}
        inject(trace_context, self.caller.correlation_id)
        event = StoredEvent(
            board_id=self.board_id,
            organization_id=self.board["organization_id"],
            seq=self.board["seq"] + len(self.events) + 1,
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            data=data,
            actor=self.caller.user_id,
            correlation_id=self.caller.correlation_id,
            created_at=self.now,
            trace_context=trace_context,
        )
        self.events.append(event)
        return event


@dataclass(frozen=True)
class Target:
    """Which board a command locks: ``board_sql`` is a SQL expression for its id over ``args``.

    It is spliced into the lock query (one round trip finds and locks the board), so it is only
    ever one of the constant expressions built by ``board``/``board_of_card``/``board_of_column``.
    """

    board_sql: str
    args: tuple[str, ...]
    missing: str
    #: The board id when the caller named it (a hint for the in-process queue; the lock query decides).
    board_id: str | None = None
    #: ``("task"|"column", id)``: cards and columns never change boards, so their board is cacheable.
    owner_of: tuple[str, str] | None = None
    #: What the caller named (``(kind, id)``), checked when nothing matches: a card or board of
    #: another tenant under a mismatched id is a refusal for that tenant's audit log.
    refs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def board(cls, board_id: str) -> Target:
        return cls("$1", (board_id,), "board", board_id)

    @classmethod
    def board_of_card(cls, card_id: str, board_id: str | None = None) -> Target:
        """The card's board; a ``board_id`` the caller named must be that one (else not found)."""
        if board_id is None:
            return cls("(SELECT board_id FROM kanban_cards WHERE id = $1)", (card_id,), "task", None, ("task", card_id))
        sql = "(SELECT board_id FROM kanban_cards WHERE id = $1 AND board_id = $2)"
        return cls(sql, (card_id, board_id), "task", board_id, refs=(("task", card_id), ("board", board_id)))

    @classmethod
    def board_of_column(cls, column_id: str, board_id: str | None = None) -> Target:
        if board_id is None:
            sql = "(SELECT board_id FROM kanban_columns WHERE id = $1)"
            return cls(sql, (column_id,), "column", None, ("column", column_id))
        sql = "(SELECT board_id FROM kanban_columns WHERE id = $1 AND board_id = $2)"
        return cls(sql, (column_id, board_id), "column", board_id, refs=(("column", column_id), ("board", board_id)))


#: The command itself; returns the caller's result only when it emitted nothing (a no-op).
Body = Callable[[Tx], Awaitable[dict[str, Any] | None]]
AfterCommit = Callable[[list[StoredEvent]], Awaitable[None]]


def fingerprint(command: str, request: Any) -> str:
    return hashlib.sha256(command.encode() + b"\0" + orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


_INSERT_EVENT = """
    INSERT INTO kanban_board_events
        (board_id, seq, event_id, organization_id, event_type, payload, actor, correlation_id,
         trace_id, trace_context, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""
# The last event of a transaction also stores the board's new seq and wakes the relay: one round trip.
_INSERT_LAST_EVENT = f"""
    WITH event AS ({_INSERT_EVENT}),
         board AS (UPDATE kanban_boards SET seq = $2 WHERE id = $1)
    SELECT pg_notify('{OUTBOX_CHANNEL}', $1)
"""
_STORE_RESULT = "UPDATE kanban_client_ops SET result = $3, board_id = $4 WHERE user_id = $1 AND client_op_id = $2"
# ... and, for a request with a client_op_id, stores its result in the same round trip.
_INSERT_LAST_EVENT_AND_RESULT = f"""
    WITH event AS ({_INSERT_EVENT}),
         board AS (UPDATE kanban_boards SET seq = $2 WHERE id = $1),
         op AS (UPDATE kanban_client_ops SET result = $12, board_id = $1 WHERE user_id = $13 AND client_op_id = $14)
    SELECT pg_notify('{OUTBOX_CHANNEL}', $1)
"""


class Mutations:
    """Runs commands as transactions (see the module docstring); owns nothing but the rules."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tracer: trace.Tracer,
        *,
        after_commit: list[AfterCommit] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.pool = pool
        self.tracer = tracer
        self.after_commit = after_commit or []
        registry = registry or CollectorRegistry()
        self.commands = Counter(
            "boards_commands_total",
            "Commands handled, by outcome (committed, replayed, or the error code)",
            ["command", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "boards_command_seconds",
            "Command time including the transaction",
            ["command"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        # Queues vanish when no request holds or awaits them (weak values): no cleanup needed.
        self._board_queues: weakref.WeakValueDictionary[str, asyncio.Semaphore] = weakref.WeakValueDictionary()
        self._owners: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def run(
        self,
        caller: Caller,
        command: str,
        request: Any,
        body: Body,
        *,
        target: Target | None = None,
    ) -> Applied:
        """Apply ``body`` to the ``target`` board (``None``: the body inserts the board)."""
        if not caller.scope.sub or caller.scope.service:
            raise ApiError("unauthorized", "a user token is required")
        started = time.perf_counter()
        try:
            applied = await self._run(caller, command, request, body, target)
        except ApiError as exc:
            self.commands.labels(command, exc.code).inc()
            raise
        self.commands.labels(command, "replayed" if applied.replayed else "committed").inc()
        self.latency.labels(command).observe(time.perf_counter() - started)
        return applied

    async def _run(self, caller: Caller, command: str, request: Any, body: Body, target: Target | None) -> Applied:
        with self.tracer.start_as_current_span(f"boards.{command}") as span:
            async with self._queue_for(target):
                for attempt in range(1, ATTEMPTS + 1):
                    try:
                        applied = await self._attempt(caller, command, request, body, target)
                        break
                    except RETRYABLE as exc:
                        if attempt == ATTEMPTS:
                            raise ApiError("unavailable", "the board is too busy; retry") from exc
                        log.info("retrying %s after %s", command, type(exc).__name__)
                        await asyncio.sleep(random.uniform(0, 0.005 * attempt))
            if applied.events:
                span.set_attribute("board.id", applied.events[-1].board_id)
                span.set_attribute("board.seq", applied.events[-1].seq)
                log.debug(
                    "committed %s",
                    command,
                    extra={"board_id": applied.events[-1].board_id, "seq": applied.events[-1].seq},
                )
        for hook in self.after_commit:
            await hook(applied.events)
        return applied

    def _queue_for(self, target: Target | None) -> contextlib.AbstractAsyncContextManager[Any]:
        """This process's FIFO queue for the board, when it can tell which board that is.

        The board row lock alone would be correct, but then every request for a hot board holds
        a pool connection while it waits in Postgres, starving other boards of connections, and
        Postgres does not queue row-lock waiters fairly (long latency tails). Waiting here first
        keeps at most ``IN_FLIGHT_PER_BOARD`` of a board's transactions per process in Postgres.
        Other replicas still meet at the row lock, which stays the only guarantee.
        """
        board_id = None
        if target is not None:
            board_id = target.board_id or (self._owners.get(target.owner_of) if target.owner_of else None)
        if board_id is None:
            return contextlib.nullcontext()
        queue = self._board_queues.get(board_id)
        if queue is None:
            queue = self._board_queues[board_id] = asyncio.Semaphore(IN_FLIGHT_PER_BOARD)
        return queue

    def _remember_owner(self, target: Target | None, board_id: str) -> None:
        if target is None or target.owner_of is None:
            return
        self._owners[target.owner_of] = board_id
        self._owners.move_to_end(target.owner_of)
        while len(self._owners) > OWNER_CACHE_SIZE:
            self._owners.popitem(last=False)

    async def _attempt(self, caller: Caller, command: str, request: Any, body: Body, target: Target | None) -> Applied:
        async with self.pool.acquire() as conn, conn.transaction():
            op_id = caller.client_op_id
            print_ = fingerprint(command, request) if op_id else ""
            if op_id:
                stored = await self._claim(conn, caller.user_id, op_id, command, print_)
                if stored is not None:
                    return stored
            if target is None:
                tx = Tx(conn=conn, caller=caller, now=await conn.fetchval("SELECT clock_timestamp()"))
            else:
                row = await conn.fetchrow(
                    f"""SELECT {BOARD_COLUMNS}, clock_timestamp() AS now FROM kanban_boards
                        WHERE id = {target.board_sql} AND deleted_at IS NULL FOR UPDATE""",
                    *target.args,
                )
                if row is None:
                    raise await hide_if_foreign(conn, caller.scope, not_found(target.missing), target.refs)
                board = dict(row)
                self._remember_owner(target, board["id"])
                if not caller.scope.can_read(board["organization_id"], board["division_id"]):
                    raise hidden(target.missing, board["organization_id"], board_id=board["id"])
                tx = Tx(conn=conn, caller=caller, now=board.pop("now"), board=board)
                caller.scope.require_write(board["organization_id"], board["division_id"])
            noop_result = await body(tx)
            stored: Any = None
            if tx.events:
                last = tx.events[-1]
                result = {**last.data, "seq": last.seq, "event_id": last.event_id}
                if op_id:
                    stored = (caller.user_id, op_id, {"result": result, "created": tx.created})
                await self._write_events(conn, tx.events, stored)
            elif noop_result is not None:
                result = noop_result
                if op_id:
                    await conn.execute(
                        _STORE_RESULT,
                        caller.user_id,
                        op_id,
                        {"result": result, "created": tx.created},
                        tx.board.get("id"),
                    )
            else:  # a body must either emit or say what it returns
                raise RuntimeError(f"{command} emitted no event and returned nothing")
            return Applied(result, tx.events, created=tx.created)

    async def _claim(
        self, conn: asyncpg.Connection, user_id: str, op_id: str, command: str, print_: str
    ) -> Applied | None:
        """Take ``(user, op_id)`` for this transaction, or return what it produced before.

        A concurrent twin blocks on the primary key until the first commits (then sees its row)
        or rolls back (then proceeds as the first): either way exactly one of them writes.
        """
        claimed = await conn.fetchval(
            """INSERT INTO kanban_client_ops (user_id, client_op_id, command, fingerprint)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
            user_id,
            op_id,
            command,
            print_,
        )
        if claimed:
            return None
        row = await conn.fetchrow(
            "SELECT command, fingerprint, result FROM kanban_client_ops WHERE user_id = $1 AND client_op_id = $2",
            user_id,
            op_id,
        )
        if row is None or row["result"] is None:  # cannot happen: claims commit together with results
            raise ApiError(
                "conflict", "client_op_id is in use by an unfinished request; retry", reason="op_in_progress"
            )
        if row["command"] != command or row["fingerprint"] != print_:
            raise ApiError("conflict", "client_op_id was already used for a different request")
        stored = row["result"]
        return Applied(stored["result"], [], created=stored["created"], replayed=True)

    async def _write_events(
        self, conn: asyncpg.Connection, events: list[StoredEvent], stored: tuple[str, str, dict] | None
    ) -> None:
        """Insert the event rows; the last one also bumps ``seq``, notifies the relay and, given
        ``stored`` (user, client_op_id, result), records the request's result."""
        trace_id = current_trace_id()
        for index, event in enumerate(events):
            last = index == len(events) - 1
            args = [
                event.board_id,
                event.seq,
                uuid.UUID(event.event_id),
                event.organization_id,
                event.event_type,
                event.data,
                event.actor,
                event.correlation_id,
                trace_id,
                event.trace_context,
                event.created_at,
            ]
            if not last:
                await conn.execute(_INSERT_EVENT, *args)
            elif stored is None:
                await conn.execute(_INSERT_LAST_EVENT, *args)
            else:
                user_id, op_id, result = stored
                await conn.execute(_INSERT_LAST_EVENT_AND_RESULT, *args, result, user_id, op_id)
