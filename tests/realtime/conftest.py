"""The whole stack in-process (auth, boards, realtime on real ports, real NATS and Postgres) and
real Socket.IO clients against it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import socketio

from tests.conftest import Tokens

NS = "/workspace"


@dataclass
class User:
    id: str
    email: str
    token: str


@dataclass
class Stack:
    auth_url: str
    boards_url: str
    realtime_url: str
    tokens: Tokens
    realtime_app: Any
    session: aiohttp.ClientSession
    clients: list[socketio.AsyncClient] = field(default_factory=list)

    def user(self, name: str = "user") -> User:
        sub = str(uuid.uuid4())
        email = f"{name}-{sub[:6]}@example.com"
        return User(sub, email, self.tokens.user(sub, email))

    async def call(self, method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, url, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def organization(self, **members: tuple[User, str]) -> str:
        """An organization with a division ``div``; ``members`` maps a label to (user, role)."""
        org = "org-" + uuid.uuid4().hex[:10]
        admin = self.tokens.service_role()
        status, body = await self.call("POST", f"{self.auth_url}/v1/organizations", admin, {"id": org, "name": org})
        assert status in (200, 201), body
        status, body = await self.call(
            "POST", f"{self.auth_url}/v1/organizations/{org}/divisions", admin, {"id": "div", "name": "Division"}
        )
        assert status in (200, 201), body
        for user, role in members.values():
            status, body = await self.call(
                "PUT",
                f"{self.auth_url}/v1/organizations/{org}/members/{user.id}",
                admin,
                {"role": role, "email": user.email},
            )
            assert status in (200, 201), body
        return org

    async def board(
        self,
        org: str,
        owner: User,
        columns: tuple[str, ...] = ("To do", "Doing", "Done"),
        cards: int = 3,
        division: str | None = "div",
    ) -> dict[str, Any]:
        board_id = "b-" + uuid.uuid4().hex[:10]
        status, snapshot = await self.call(
            "POST",
            f"{self.boards_url}/v1/boards",
            owner.token,
            {
                "id": board_id,
                "organization_id": org,
                "division_id": division,
                "name": board_id,
                "columns": list(columns),
            },
        )
        assert status in (200, 201), snapshot
        for index in range(cards):
            status, body = await self.call(
                "POST",
                f"{self.boards_url}/v1/boards/{board_id}/cards",
                owner.token,
                {"column_id": snapshot["columns"][0]["id"], "title": f"card {index}"},
            )
            assert status in (200, 201), body
        status, snapshot = await self.call("GET", f"{self.boards_url}/v1/boards/{board_id}", owner.token)
        assert status == 200, snapshot
        return snapshot

    async def client(
        self,
        user: User | None,
        *,
        transports: list[str] | None = None,
        headers: dict[str, str] | None = None,
        connect: bool = True,
    ) -> Client:
        client = Client(socketio.AsyncClient(reconnection=False))
        self.clients.append(client.sio)
        if connect:
            await client.connect(
                self.realtime_url, user.token if user else None, transports=transports, headers=headers
            )
        return client


class Client:
    """A python-socketio client that records what it receives, by event name."""

    def __init__(self, sio: socketio.AsyncClient) -> None:
        self.sio = sio
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.connect_error: Any = None

        @sio.on("*", namespace=NS)
        async def any_event(event: str, data: Any = None) -> None:
            self.received[event].append(data)

        @sio.on("connect_error", namespace=NS)
        async def on_error(data: Any) -> None:
            # python-socketio hands over the CONNECT_ERROR packet {message, data: {code, message}}
            self.connect_error = data.get("data", data) if isinstance(data, dict) else data

    async def connect(
        self, url: str, token: str | None, *, transports: list[str] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        await self.sio.connect(
            url,
            namespaces=[NS],
            auth={"token": token} if token else None,
            transports=transports or ["websocket"],
            headers=headers or {},
            wait_timeout=10,
        )

    async def call(self, event: str, data: Any, timeout: float = 10) -> Any:
        return await self.sio.call(event, data, namespace=NS, timeout=timeout)

    async def emit(self, event: str, data: Any) -> None:
        await self.sio.emit(event, data, namespace=NS)

    async def wait_for(
        self, event: str, count: int = 1, timeout: float = 5.0, where: Callable[[Any], bool] | None = None
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = [i for i in self.received[event] if where is None or where(i)]
            if len(items) >= count:
                return items
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} {event!r}, got {self.received[event]!r}")


@pytest.fixture
async def make_stack(aiohttp_server, make_app) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """``await make_stack(**realtime_settings)``: auth, boards and realtime on real ports."""
    stacks: list[Stack] = []

    async def build(common: dict[str, Any] | None = None, **realtime_overrides: Any) -> Stack:
        """``common`` settings go to every service (e.g. a private ``nats_url``)."""
        common = common or {}
        auth = await aiohttp_server(make_app("auth", **common))
        auth_url = str(auth.make_url("")).rstrip("/")
        boards = await aiohttp_server(make_app("boards", auth_service_url=auth_url, **common))
        boards_url = str(boards.make_url("")).rstrip("/")
        app = make_app(
            "realtime", auth_service_url=auth_url, boards_service_url=boards_url, **common, **realtime_overrides
        )
        realtime = await aiohttp_server(app)
        stack = Stack(
            auth_url, boards_url, str(realtime.make_url("")).rstrip("/"), Tokens(), app, aiohttp.ClientSession()
        )
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        for sio in stack.clients:
            if sio.connected:
                await sio.disconnect()
            elif sio.eio.state == "connected":  # a refused namespace leaves the transport open
                await sio.eio.disconnect(abort=True)
        await stack.session.close()


@pytest.fixture
async def stack(make_stack) -> Stack:
    return await make_stack()
