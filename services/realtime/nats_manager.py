"""A python-socketio client manager backed by NATS, modelled on ``AsyncAioPikaManager``.

``AsyncPubSubManager`` is a template: a backend implements ``_publish`` and ``_listen``. Emits
that must reach sockets on other replicas (presence, typing, cursors, admin broadcasts) go
through it; board events do not (each replica reads those from the board's subject itself and
emits with ``ignore_queue=True``). Messages are JSON, never pickle.

A room emit without an ack callback is delivered through the server's ``broadcast`` (the fast
path: one encoding for all local members) when it has one: joining a room of 1,000 tells every
member about every joiner, and python-socketio's own delivery creates a task per recipient.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from socketio.async_pubsub_manager import AsyncPubSubManager

from .room_index import IndexedRooms

SUBJECT_PREFIX = "socketio"


class NatsPubSubManager(IndexedRooms, AsyncPubSubManager):
    name = "nats"

    def __init__(
        self,
        nats_client: Callable[[], NATS | None],
        channel: str = "liveboard",
        write_only: bool = False,
        logger: Any = None,
    ) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=logger)
        self._nats = nats_client
        self.subject = f"{SUBJECT_PREFIX}.{channel}"

    async def _client(self) -> NATS:
        while True:  # the NATS connection is opened by the app's cleanup context, maybe after us
            client = self._nats()
            if client is not None and client.is_connected:
                return client
            await asyncio.sleep(0.1)

    async def _publish(self, data: Any) -> None:
        client = await self._client()
        await client.publish(self.subject, orjson.dumps(data))

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        broadcast = getattr(self.server, "broadcast", None)
        data, room, skip_sid = message.get("data"), message.get("room"), message.get("skip_sid")
        if (
            broadcast is not None
            and message.get("callback") is None
            and not message.get("binary")
            and isinstance(room, str)
            and (skip_sid is None or isinstance(skip_sid, str))
            and isinstance(data, list)
            and len(data) == 1
            and broadcast(message["event"], data[0], room, message.get("namespace") or "/", skip_sid)
        ):
            return
        await super()._handle_emit(message)

    async def _listen(self) -> AsyncIterator[dict[str, Any]]:
        client = await self._client()
        subscription = await client.subscribe(self.subject)
        try:
            async for message in subscription.messages:
                try:
                    data = orjson.loads(message.data)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(data, dict):
                    yield data
        finally:
            try:
                await subscription.unsubscribe()
            except Exception:  # the connection is closing anyway
                pass
