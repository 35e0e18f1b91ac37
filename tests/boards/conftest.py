"""Boards test fixtures: scope tokens minted by a test signer, a running boards app, helpers.

Boards trusts scope tokens signed by auth's key. Here a test signer plays auth's signing: its JWKS
is served from a loopback HTTP server (a thread, so it answers whether or not the test's event
loop is busy) and boards is pointed at it with ``AUTH_JWKS_URL``. Auth's directory (divisions,
who may be assigned) is a real auth app (``tests.directory``); the memberships the minted tokens
claim are written into it before each request.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest

from libs.common.db import apply_migrations
from libs.common.scopes import OrgMembership, Scope, ScopeSigner
from services.boards.app import MIGRATIONS
from tests.directory import Directory, StartDirectory, start_directory  # noqa: F401  (fixture)

ROLES = ("viewer", "member", "admin", "owner")


@pytest.fixture(scope="session")
def signer() -> ScopeSigner:
    return ScopeSigner.generate()


@pytest.fixture(scope="session")
def jwks_url(signer: ScopeSigner) -> Iterator[str]:
    body = json.dumps(signer.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@dataclass
class User:
    id: str
    email: str
    token: str
    scope: Scope

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Minter:
    """Mints users with memberships: ``user(org_a="member", org_b=("viewer", ["div-1"]))``."""

    signer: ScopeSigner
    made: list[User] = field(default_factory=list)
    #: Memberships minted but not yet written into auth's directory.
    pending: list[tuple[str, str, str, list[str] | None]] = field(default_factory=list)

    async def flush(self, directory: Directory) -> None:
        while self.pending:
            org, user_id, role, divisions = self.pending.pop()
            await directory.add(org, user_id, role, divisions)

    def user(self, memberships: dict[str, str | tuple[str, list[str] | None]] | None = None, ttl: int = 3600) -> User:
        user_id = "u-" + uuid.uuid4().hex[:12]
        orgs = []
        for org, spec in (memberships or {}).items():
            role, divisions = (spec, None) if isinstance(spec, str) else spec
            orgs.append(OrgMembership(org, role, tuple(divisions) if divisions is not None else None))
            self.pending.append((org, user_id, role, divisions))
        scope = Scope(sub=user_id, email=f"{user_id}@example.com", organizations=tuple(orgs))
        token = self.signer.sign(scope, int(time.time()) + ttl)
        return User(user_id, scope.email or "", token, scope)


@pytest.fixture
def minter(signer: ScopeSigner) -> Minter:
    return Minter(signer)


@pytest.fixture
def org() -> str:
    """A fresh organization id, so tests sharing the session database never see each other."""
    return "org-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def boards_schema(database_url: str) -> str:
    """The session database with boards' migrations applied (for tests that skip the app)."""

    async def migrate() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await apply_migrations(conn, "boards", MIGRATIONS)
        finally:
            await conn.close()

    asyncio.run(migrate())
    return database_url


@pytest.fixture
def boards_settings(jwks_url: str) -> dict[str, Any]:
    return {"auth_jwks_url": jwks_url, "relay_interval": 0.5}


@pytest.fixture
async def directory(start_directory: StartDirectory) -> Directory:  # noqa: F811
    return await start_directory()


@pytest.fixture
async def boards(make_app, aiohttp_client, boards_settings, directory) -> Any:
    """A test client of the real boards app (in-process) against the session NATS and Postgres."""
    return await aiohttp_client(make_app("boards", **boards_settings))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for looking at the rows behind the API."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "boards"})
    yield conn
    await conn.close()


class Api:
    """REST calls as ``(status, json)``; the assertions stay in the tests."""

    def __init__(self, client: Any, minter: Minter | None = None, directory: Directory | None = None) -> None:
        self.client = client
        self.minter = minter
        self.directory = directory

    async def call(
        self, method: str, path: str, user: User | None, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        if self.minter is not None and self.directory is not None:
            await self.minter.flush(self.directory)
        all_headers = dict(user.headers if user else {})
        all_headers.update(headers or {})
        kwargs: dict[str, Any] = {"headers": all_headers}
        if body is not None:
            kwargs["json"] = body
        response = await self.client.request(method, path, **kwargs)
        return response.status, await response.json()

    async def create_board(self, user: User, org: str, columns: list[str] | None = None, **extra: Any) -> dict:
        if self.directory is not None and extra.get("division_id"):  # an organization's own division
            await self.directory.add(org, extra_divisions=[extra["division_id"]])
        body = {"organization_id": org, "name": "Board", "columns": columns or ["To do", "Doing", "Done"], **extra}
        status, answer = await self.call("POST", "/v1/boards", user, body)
        assert status == 201, answer
        return answer

    async def add_card(self, user: User, board_id: str, column_id: str, title: str = "card", **extra: Any) -> dict:
        body = {"column_id": column_id, "title": title, **extra}
        status, answer = await self.call("POST", f"/v1/boards/{board_id}/cards", user, body)
        assert status == 201, answer
        return answer["task"]

    async def snapshot(self, user: User, board_id: str) -> dict:
        status, answer = await self.call("GET", f"/v1/boards/{board_id}", user)
        assert status == 200, answer
        return answer


@pytest.fixture
def api(boards: Any, minter: Minter, directory: Directory) -> Api:
    return Api(boards, minter, directory)
