"""The deployment under test and the fixtures a run needs, made through the public REST only.

Every run creates its own organization (``bench-<run id>``) with a service_role key, adds
users as members, and has the first user create boards and cards, exactly as a client would; so
the tool works against any deployment it has the JWT secret of (``--jwt-secret``/``--issuer``,
the environment, or ``.liveboard/secrets.json`` written by ``liveboard dev``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from liveboard.devtokens import DEV_ISSUER, service_role_key, user_token

#: Tokens outlive any bounded run.
TOKEN_TTL = 4 * 3600


class BenchSetupError(RuntimeError):
    """The deployment refused a set-up call; the message says which and why."""


@dataclass(frozen=True)
class Target:
    realtime_url: str
    auth_url: str
    boards_url: str
    jwt_secret: str
    issuer: str = DEV_ISSUER

    def service_key(self) -> str:
        return service_role_key(self.jwt_secret, ttl=TOKEN_TTL)

    def user_token(self, sub: str, email: str) -> str:
        return user_token(self.jwt_secret, sub, email, issuer=self.issuer, ttl=TOKEN_TTL)


def credentials(secret: str | None, issuer: str | None, home: str | None = None) -> tuple[str, str]:
    """The JWT secret and issuer: flags, then the environment, then ``liveboard dev``'s state."""
    secret = secret or os.environ.get("SUPABASE_JWT_SECRET")
    issuer = issuer or os.environ.get("SUPABASE_JWT_ISSUER")
    state = Path(home or os.environ.get("LIVEBOARD_HOME", ".liveboard")) / "secrets.json"
    if (not secret or not issuer) and state.exists():
        kept = json.loads(state.read_text())
        secret = secret or kept["jwt_secret"]
        issuer = issuer or kept["issuer"]
    if not secret:
        raise BenchSetupError(
            "no JWT secret: pass --jwt-secret, set SUPABASE_JWT_SECRET, run 'liveboard dev' once, or use --start-stack"
        )
    return secret, issuer or DEV_ISSUER


@dataclass(frozen=True)
class BenchUser:
    id: str
    email: str
    token: str


@dataclass
class Board:
    id: str
    organization_id: str
    division_id: str
    columns: list[str]
    cards: list[str]
    seq: int


@dataclass
class Fixtures:
    """One run's organization, users and boards; ``run_id`` tags correlation ids too."""

    target: Target
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    organization_id: str = ""
    division_id: str = "bench-div"
    users: list[BenchUser] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fixtures:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def call(self, method: str, url: str, token: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        assert self.session is not None
        async with self.session.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            answer = await response.json(content_type=None)
            if response.status not in ok:
                raise BenchSetupError(f"{method} {url} -> {response.status} {answer}")
            return answer

    async def organization(self, users: int) -> list[BenchUser]:
        """A fresh organization with a division and ``users`` members (the first is the owner)."""
        target, key = self.target, self.target.service_key()
        self.organization_id = f"bench-{self.run_id}"
        await self.call(
            "POST",
            f"{target.auth_url}/v1/organizations",
            key,
            {"id": self.organization_id, "name": f"liveboard bench {self.run_id}"},
        )
        await self.call(
            "POST",
            f"{target.auth_url}/v1/organizations/{self.organization_id}/divisions",
            key,
            {"id": self.division_id, "name": "bench"},
        )
        made = []
        for index in range(max(1, users)):
            sub = str(uuid.uuid4())
            email = f"bench-{self.run_id}-{index}@example.com"
            role = "owner" if index == 0 else "member"
            await self.call(
                "PUT",
                f"{target.auth_url}/v1/organizations/{self.organization_id}/members/{sub}",
                key,
                {"role": role, "email": email},
            )
            made.append(BenchUser(sub, email, target.user_token(sub, email)))
        self.users = made
        return made

    async def board(self, cards: int, columns: int = 4, concurrency: int = 16) -> Board:
        """A board owned by the first user with ``cards`` cards spread over ``columns`` columns."""
        owner = self.users[0]
        boards = self.target.boards_url
        board_id = f"bench-{self.run_id}-{uuid.uuid4().hex[:6]}"
        snapshot = await self.call(
            "POST",
            f"{boards}/v1/boards",
            owner.token,
            {
                "id": board_id,
                "organization_id": self.organization_id,
                "division_id": self.division_id,
                "name": board_id,
                "columns": [f"column {i}" for i in range(columns)],
            },
        )
        column_ids = [c["id"] for c in snapshot["columns"]]
        todo = list(range(cards))
        made: list[str] = []

        async def filler() -> None:
            while todo:
                index = todo.pop()
                answer = await self.call(
                    "POST",
                    f"{boards}/v1/boards/{board_id}/cards",
                    owner.token,
                    {"column_id": column_ids[index % columns], "title": f"card {index}"},
                )
                made.append(answer["task"]["id"])

        await asyncio.gather(*(filler() for _ in range(min(concurrency, max(1, cards)))))
        current = await self.call("GET", f"{boards}/v1/boards/{board_id}", owner.token)
        return Board(board_id, self.organization_id, self.division_id, column_ids, made, int(current["seq"]))

    async def move(self, user: BenchUser, card_id: str, column_id: str, position: int = 0) -> dict[str, Any]:
        """A committed move through boards' REST (used to make history a client then misses)."""
        return await self.call(
            "POST",
            f"{self.target.boards_url}/v1/cards/{card_id}/move",
            user.token,
            {"to_column_id": column_id, "position": position},
        )
