"""Board feeds: the committed events of one board, delivered to its room gapless and in order.

Each replica subscribes to ``kanban.events.*.<board>.>`` only while it has members of that board.
Core NATS may drop or reorder a message; the feed notices a ``seq`` gap and fills it from boards
before delivering, so every socket sees ``seq`` strictly increasing by one. When it cannot (boards
unreachable), the room is told ``resync_required`` and clients re-join.

All state changes of a feed happen under its lock: a join and a delivery never interleave, which is
what makes "snapshot at S, then live events from S+1" exact.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace

from libs.common.errors import ApiError
from libs.common.events import Envelope, EnvelopeError
from libs.common.messaging import consume_span
from libs.common.subjects import board_events_of

from .boards_client import BoardsClient

log = logging.getLogger(__name__)

Deliver = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class BoardFeed:
    board_id: str
    last_seq: int | None = None
    pending: dict[int, dict[str, Any]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    subscription: Subscription | None = None
    joining: int = 0  # joins in progress: the feed must outlive them even with no member yet
    delivered: int = 0
    gaps_filled: int = 0
    resyncs: int = 0


class FeedRegistry:
    """The feeds of the boards this replica has members of."""

    def __init__(
        self,
        nats_client: Callable[[], NATS | None],
        boards: BoardsClient,
        tracer: trace.Tracer,
        *,
        deliver: Deliver,
        resync: Callable[[str], Awaitable[None]],
        reader_token: Callable[[str], str | None],
    ) -> None:
        self._nats = nats_client
        self.boards = boards
        self.tracer = tracer
        self._deliver = deliver
        self._resync = resync
        self._reader_token = reader_token
        self.feeds: dict[str, BoardFeed] = {}
        self._attach_lock = asyncio.Lock()

    async def attach(self, board_id: str) -> BoardFeed:
        """The board's feed, subscribing first if this replica had no member of it.

        Counts the caller as joining until it calls ``release``.
        """
        async with self._attach_lock:
            feed = self.feeds.get(board_id)
            if feed is None:
                feed = BoardFeed(board_id)
                client = self._nats()
                if client is None:
                    raise ApiError("unavailable", "no NATS connection")

                async def on_message(msg: Msg, feed: BoardFeed = feed) -> None:
                    await self._on_message(feed, msg)

                feed.subscription = await client.subscribe(board_events_of(board_id), cb=on_message)
                self.feeds[board_id] = feed
            feed.joining += 1
            return feed

    async def release(self, board_id: str, members: int, *, joined: bool = False) -> None:
        """A join finished (``joined``) or a member left: unsubscribe when nobody needs the feed."""
        async with self._attach_lock:
            feed = self.feeds.get(board_id)
            if feed is None:
                return
            if joined:
                feed.joining -= 1
            if feed.joining == 0 and members == 0:
                await self._unsubscribe(self.feeds.pop(board_id))

    async def detach(self, board_id: str) -> None:
        """Unsubscribe whatever its members (shutdown)."""
        async with self._attach_lock:
            feed = self.feeds.pop(board_id, None)
            if feed is not None:
                await self._unsubscribe(feed)

    @staticmethod
    async def _unsubscribe(feed: BoardFeed) -> None:
        if feed.subscription is not None:
            try:
                await feed.subscription.unsubscribe()
            except Exception:  # connection already gone: nothing left to undo
                log.debug("unsubscribe failed", exc_info=True)

    async def _on_message(self, feed: BoardFeed, msg: Msg) -> None:
        try:
            envelope = Envelope.from_json(msg.data).to_dict()
        except EnvelopeError as exc:
            log.warning("dropped a malformed board event", extra={"subject": msg.subject, "reason": str(exc)})
            return
        if not isinstance(envelope.get("seq"), int):
            return
        with consume_span(self.tracer, msg, name="board_event deliver") as span:
            span.set_attribute("board_id", feed.board_id)
            span.set_attribute("seq", envelope["seq"])
            await self.receive(feed, envelope)

    async def receive(self, feed: BoardFeed, envelope: dict[str, Any]) -> None:
        async with feed.lock:
            seq = envelope["seq"]
            if feed.last_seq is None:  # a join is loading the board: keep it for after
                feed.pending[seq] = envelope
                return
            if seq <= feed.last_seq:
                return  # already delivered (duplicate, or filled from boards)
            feed.pending[seq] = envelope
            await self._advance(feed)

    async def _advance(self, feed: BoardFeed, upto: int | None = None) -> None:
        """Deliver pending events in order, filling holes from boards (lock held)."""
        assert feed.last_seq is not None
        for seq in sorted(s for s in feed.pending if s <= feed.last_seq):
            del feed.pending[seq]
        target = max([*feed.pending, upto or 0])
        while feed.last_seq < target:
            nxt = feed.last_seq + 1
            envelope = feed.pending.pop(nxt, None)
            if envelope is None:
                if not await self._fill(feed, target):
                    return
                continue
            await self._emit(feed, envelope)

    async def _emit(self, feed: BoardFeed, envelope: dict[str, Any]) -> None:
        feed.last_seq = envelope["seq"]
        feed.delivered += 1
        await self._deliver(feed.board_id, envelope)

    async def _fill(self, feed: BoardFeed, target: int) -> bool:
        """Fetch the missing events after ``last_seq`` from boards; False after a resync."""
        token = self._reader_token(feed.board_id)
        try:
            if token is None:
                raise ApiError("unavailable", "no member token to read the board with")
            answer = await self.boards.events(
                token, feed.board_id, since_seq=feed.last_seq or 0, limit=min(1000, target - (feed.last_seq or 0))
            )
            fetched = [e for e in answer.get("events", []) if isinstance(e, dict)]
        except ApiError as exc:
            log.warning(
                "could not fill a gap; asking the room to resync",
                extra={"board_id": feed.board_id, "reason": exc.message},
            )
            fetched = []
        progressed = False
        for envelope in fetched:
            if envelope.get("seq") == (feed.last_seq or 0) + 1:
                feed.pending.pop(envelope["seq"], None)
                await self._emit(feed, envelope)
                progressed = True
        if progressed:
            feed.gaps_filled += 1
            return True
        feed.resyncs += 1
        feed.last_seq = target
        feed.pending = {s: e for s, e in feed.pending.items() if s > target}
        await self._resync(feed.board_id)
        return False

    async def join(
        self, feed: BoardFeed, seq: int, enter: Callable[[], Awaitable[None]], reload: Callable[[], Awaitable[int]]
    ) -> int:
        """Put a socket that has loaded the board up to ``seq`` into the room at exactly that point.

        Under the feed's lock: the room is brought up to ``seq`` first (the joiner already has those
        events), then ``enter`` adds the socket, so it receives live every event after ``seq``. A
        load older than what the room already got is redone by ``reload`` (returns its new seq).
        """
        async with feed.lock:
            if feed.last_seq is None:  # first member on this replica: the feed starts here
                feed.last_seq = seq
                await enter()
                await self._advance(feed)
                return seq
            if seq < feed.last_seq:
                seq = await reload()
                if seq < feed.last_seq:
                    raise ApiError("unavailable", "board changed while loading; retry")
            if seq > feed.last_seq:
                await self._advance(feed, upto=seq)
            await enter()
            return seq

    async def resync_all(self) -> None:
        """After a NATS reconnect: whatever was published meanwhile is fetched from boards."""
        for feed in list(self.feeds.values()):
            async with feed.lock:
                if feed.last_seq is None:
                    continue
                token = self._reader_token(feed.board_id)
                if token is None:
                    continue
                try:
                    answer = await self.boards.events(token, feed.board_id, since_seq=feed.last_seq)
                except ApiError:
                    continue
                for envelope in answer.get("events", []):
                    if envelope.get("seq") == feed.last_seq + 1:
                        await self._emit(feed, envelope)
