"""Ephemeral board awareness: presence, typing indicators, cursors. Never persisted.

- typing: an ``is_typing: true`` expires after 5 s without renewal (the others see it stop);
- cursors: coalesced to at most 20 per second per socket (the latest position wins);
- presence: who is on a board, across replicas, in a NATS KV bucket whose entries expire unless
  heartbeated (a crashed replica's users disappear by themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

log = logging.getLogger(__name__)

TYPING_TTL = 5.0
CURSOR_INTERVAL = 1 / 20
PRESENCE_BUCKET = "presence"
PRESENCE_TTL = 30.0
PRESENCE_HEARTBEAT = 10.0
KV_TIMEOUT = 1.0

Send = Callable[[str, str, dict[str, Any], str], Awaitable[None]]  # (board_id, event, data, skip_sid)


@dataclass
class _Cursor:
    last_sent: float = 0.0
    pending: dict[str, Any] | None = None
    timer: asyncio.TimerHandle | None = None


@dataclass
class Awareness:
    """Typing timers and cursor coalescing for this replica's sockets."""

    send: Send
    typing: dict[tuple[str, str, str | None], asyncio.TimerHandle] = field(default_factory=dict)
    cursors: dict[tuple[str, str], _Cursor] = field(default_factory=dict)

    def typing_changed(
        self, sid: str, board_id: str, task_id: str | None, is_typing: bool, stopped: dict[str, Any]
    ) -> None:
        """(Re)arm or clear the 5 s expiry; ``stopped`` is what the others see when it expires."""
        key = (sid, board_id, task_id)
        timer = self.typing.pop(key, None)
        if timer is not None:
            timer.cancel()
        if is_typing:
            loop = asyncio.get_running_loop()
            self.typing[key] = loop.call_later(TYPING_TTL, self._expire_typing, key, stopped)

    def _expire_typing(self, key: tuple[str, str, str | None], stopped: dict[str, Any]) -> None:
        self.typing.pop(key, None)
        sid, board_id, _ = key
        task = asyncio.get_running_loop().create_task(self.send(board_id, "user_typing", stopped, sid))
        task.add_done_callback(_log_failure)

    async def cursor(self, sid: str, board_id: str, data: dict[str, Any]) -> None:
        """Send now if the socket's last cursor is older than 50 ms; else keep only the latest."""
        state = self.cursors.setdefault((sid, board_id), _Cursor())
        now = time.monotonic()
        if now - state.last_sent >= CURSOR_INTERVAL and state.timer is None:
            state.last_sent = now
            await self.send(board_id, "user_cursor", data, sid)
            return
        state.pending = data
        if state.timer is None:
            delay = max(0.0, CURSOR_INTERVAL - (now - state.last_sent))
            state.timer = asyncio.get_running_loop().call_later(delay, self._flush_cursor, sid, board_id)

    def _flush_cursor(self, sid: str, board_id: str) -> None:
        state = self.cursors.get((sid, board_id))
        if state is None or state.pending is None:
            return
        data, state.pending, state.timer = state.pending, None, None
        state.last_sent = time.monotonic()
        task = asyncio.get_running_loop().create_task(self.send(board_id, "user_cursor", data, sid))
        task.add_done_callback(_log_failure)

    def forget(self, sid: str, board_id: str | None = None) -> list[tuple[str, str | None]]:
        """Drop a socket's timers (on leave/disconnect); returns the (board, task) it was typing on."""
        typing_on = []
        for key in [k for k in self.typing if k[0] == sid and (board_id is None or k[1] == board_id)]:
            self.typing.pop(key).cancel()
            typing_on.append((key[1], key[2]))
        for key in [k for k in self.cursors if k[0] == sid and (board_id is None or k[1] == board_id)]:
            state = self.cursors.pop(key)
            if state.timer is not None:
                state.timer.cancel()
        return typing_on


class PresenceStore:
    """Who is on which board, shared by every replica through a KV bucket with a TTL.

    Each replica writes its own sockets' entries (``<board>.<sid>``) and keeps one watcher on
    the whole bucket, so listing a board's members on join is a dictionary read: no consumer
    per join (a storm of joins used to create one JetStream consumer each), and nothing per
    connection beyond the entry itself. The bucket's TTL removes a crashed replica's entries
    without telling watchers, so entries not re-put within the TTL are ignored and pruned.
    """

    def __init__(self) -> None:
        self.kv: KeyValue | None = None
        self.local: dict[str, dict[str, dict[str, Any]]] = {}  # board -> sid -> entry, this replica's sockets
        self.seen: dict[str, dict[str, tuple[float, dict[str, Any]]]] = {}  # board -> sid -> (put at, entry)
        self._nats: NATS | None = None
        self._watch_task: asyncio.Task | None = None
        self._watcher: KeyValue.KeyWatcher | None = None
        self._generation = 0  # bumped by rewatch/close: an older watch loop ends itself

    async def open(self, nats: NATS, js: JetStreamContext, replicas: int = 1) -> None:
        try:
            self.kv = await js.key_value(PRESENCE_BUCKET)
        except Exception:
            self.kv = await js.create_key_value(
                KeyValueConfig(bucket=PRESENCE_BUCKET, ttl=PRESENCE_TTL, history=1, replicas=replicas)
            )
        self._nats = nats
        self.rewatch()

    def rewatch(self) -> None:
        """(Re)start the bucket watcher; also after NATS reconnects (its consumer may be gone)."""
        if self.kv is None:
            return
        self._generation += 1
        self._stop_watching()
        self._watch_task = asyncio.get_running_loop().create_task(
            self._watch(self.kv, self._generation), name="presence-watch"
        )

    def _stop_watching(self) -> None:
        """End the current watcher's loop and task. Both: a cancel that lands while nats-py is
        setting the watcher up can be swallowed, and a stopped watcher ends its iteration."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            task = asyncio.get_running_loop().create_task(watcher.stop())
            task.add_done_callback(_log_failure)
        if self._watch_task is not None:
            self._watch_task.cancel()

    async def close(self) -> None:
        self._generation += 1
        task = self._watch_task
        self._stop_watching()
        self._watch_task = None
        if task is not None:
            await asyncio.wait([task], timeout=2.0)

    async def _watch(self, kv: KeyValue, generation: int) -> None:
        failures = 0
        while generation == self._generation:
            watcher = None
            try:
                watcher = await kv.watchall()
                if generation != self._generation:
                    break
                self._watcher = watcher
                failures = 0
                async for update in watcher:
                    if isinstance(update, KeyValue.Entry):  # not the end-of-snapshot None
                        self._apply(update)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: listing falls back to local entries until it is back
                failures += 1
                if failures == 1 or failures % 60 == 0:  # once per outage, then every minute or so
                    log.warning("presence watcher failed (%d in a row); restarting: %s", failures, exc)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(watcher.stop(), KV_TIMEOUT)
            if generation == self._generation:
                await asyncio.sleep(1.0)

    def _apply(self, update: KeyValue.Entry) -> None:
        board_id, _, sid = update.key.partition(".")
        if not sid or sid in self.local.get(board_id, ()):  # this replica's own socket: known already
            return
        if update.operation in (KV_DEL, KV_PURGE) or not update.value:
            members = self.seen.get(board_id)
            if members is not None:
                members.pop(sid, None)
                if not members:
                    del self.seen[board_id]
            return
        try:
            entry = orjson.loads(update.value)
        except orjson.JSONDecodeError:
            return
        put_at = update.created.timestamp() if update.created is not None else time.time()
        self.seen.setdefault(board_id, {})[sid] = (put_at, entry)

    @staticmethod
    def _key(board_id: str, sid: str) -> str:
        return f"{board_id}.{sid}"

    async def set(self, board_id: str, sid: str, entry: dict[str, Any]) -> None:
        self.local.setdefault(board_id, {})[sid] = entry
        if self.kv is not None:
            # Best effort and bounded: a NATS outage must never stall a join or a disconnect.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kv.put(self._key(board_id, sid), orjson.dumps(entry)), KV_TIMEOUT)

    async def remove(self, board_id: str, sid: str) -> None:
        mine = self.local.get(board_id)
        if mine is not None:
            mine.pop(sid, None)
            if not mine:
                del self.local[board_id]
        members = self.seen.get(board_id)
        if members is not None:
            members.pop(sid, None)
        if self.kv is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kv.purge(self._key(board_id, sid)), KV_TIMEOUT)

    def members(self, board_id: str) -> list[dict[str, Any]]:
        """One entry per user on the board, on any replica (this replica's sockets first)."""
        entries: dict[str, dict[str, Any]] = {}
        for entry in self.local.get(board_id, {}).values():
            entries.setdefault(entry.get("user_id"), entry)
        fresh_after = time.time() - PRESENCE_TTL
        for put_at, entry in self.seen.get(board_id, {}).values():
            if put_at >= fresh_after:
                entries.setdefault(entry.get("user_id"), entry)
        return list(entries.values())

    async def heartbeat(self) -> None:
        """Re-put this replica's entries so they outlive the bucket's TTL while sockets stay.

        Plain publishes to the bucket's subjects, flushed once: a KV put would wait for one
        JetStream ack per socket (at 10,000 sockets, 1,000 round trips a second); a lost
        heartbeat is repaired by the next one, 10 s later, well within the 30 s TTL.
        """
        if self.kv is None or self._nats is None:
            return
        with contextlib.suppress(Exception):
            for board_id, mine in list(self.local.items()):
                for sid, entry in list(mine.items()):
                    await self._nats.publish(f"$KV.{PRESENCE_BUCKET}.{self._key(board_id, sid)}", orjson.dumps(entry))
            await asyncio.wait_for(self._nats.flush(), KV_TIMEOUT)
        self._prune()

    def _prune(self) -> None:
        """Forget entries the bucket has expired (a replica that died without purging)."""
        fresh_after = time.time() - PRESENCE_TTL
        for board_id in list(self.seen):
            members = self.seen[board_id]
            for sid in [sid for sid, (put_at, _) in members.items() if put_at < fresh_after]:
                del members[sid]
            if not members:
                del self.seen[board_id]


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("ephemeral send failed: %s", task.exception())
