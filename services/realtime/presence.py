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
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

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
    """Who is on which board, shared by every replica through a KV bucket with a TTL."""

    def __init__(self) -> None:
        self.kv: KeyValue | None = None
        self.local: dict[tuple[str, str], dict[str, Any]] = {}  # (board_id, sid) -> entry

    async def open(self, js: JetStreamContext, replicas: int = 1) -> None:
        try:
            self.kv = await js.key_value(PRESENCE_BUCKET)
        except Exception:
            self.kv = await js.create_key_value(
                KeyValueConfig(bucket=PRESENCE_BUCKET, ttl=PRESENCE_TTL, history=1, replicas=replicas)
            )

    @staticmethod
    def _key(board_id: str, sid: str) -> str:
        return f"{board_id}.{sid}"

    async def set(self, board_id: str, sid: str, entry: dict[str, Any]) -> None:
        self.local[(board_id, sid)] = entry
        if self.kv is not None:
            # Best effort and bounded: a NATS outage must never stall a join or a disconnect.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kv.put(self._key(board_id, sid), orjson.dumps(entry)), KV_TIMEOUT)

    async def remove(self, board_id: str, sid: str) -> None:
        self.local.pop((board_id, sid), None)
        if self.kv is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kv.purge(self._key(board_id, sid)), KV_TIMEOUT)

    async def members(self, board_id: str) -> list[dict[str, Any]]:
        """One entry per user on the board (any replica), best effort.

        Read with a watcher on ``<board>.*`` (the current values, then stop): nats-py's
        ``keys(filters=...)`` filters by substring client-side and drops wildcard matches.
        """
        entries: dict[str, dict[str, Any]] = {}
        if self.kv is not None:
            watcher = None
            try:
                watcher = await asyncio.wait_for(self.kv.watch(f"{board_id}.*", ignore_deletes=True), KV_TIMEOUT)
                while True:
                    entry = await watcher.updates(timeout=KV_TIMEOUT)
                    if entry is None:  # the end of the current values
                        break
                    if entry.value:
                        value = orjson.loads(entry.value)
                        entries.setdefault(value.get("user_id"), value)
            except Exception:  # KV unavailable or slow: fall back to what this replica knows
                log.debug("presence listing from KV failed", exc_info=True)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
        for (board, _sid), entry in self.local.items():
            if board == board_id:
                entries.setdefault(entry.get("user_id"), entry)
        return list(entries.values())

    async def heartbeat(self) -> None:
        """Re-put this replica's entries so they outlive the bucket's TTL while sockets stay."""
        if self.kv is None:
            return
        for (board_id, sid), entry in list(self.local.items()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.kv.put(self._key(board_id, sid), orjson.dumps(entry)), KV_TIMEOUT)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("ephemeral send failed: %s", task.exception())
