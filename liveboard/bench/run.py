"""What every mode runs against: a deployment (running, embedded, or the Node reference) and its
fixtures (organization, users, boards), resolved once from the command line."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .procstat import listening_pids
from .target import BenchUser, Board, Fixtures, Target

#: Distinct users the members of a run are spread over (each socket needs a token; a few users
#: keep the auth service's token exchanges out of the measurement).
MEMBER_USERS = 20


@dataclass
class Setup:
    run_id: str
    boards: list[Board]
    members: list[BenchUser]
    movers: list[BenchUser]
    fixtures: Fixtures | None = None

    def member_spec(self, index: int, board: Board) -> dict[str, Any]:
        user = self.members[index % len(self.members)]
        return {
            "token": user.token,
            "board_id": board.id,
            "organization_id": board.organization_id,
            "division_id": board.division_id,
        }

    def mover_token(self, index: int) -> str:
        return self.movers[index % len(self.movers)].token


@dataclass
class Deployment:
    """A Liveboard deployment reachable over HTTP; ``realtime_pids`` are measured when known."""

    target: Target
    realtime_pids: list[int] = field(default_factory=list)
    _fixtures: list[Fixtures] = field(default_factory=list)

    @property
    def realtime_url(self) -> str:
        return self.target.realtime_url

    @classmethod
    def of(cls, target: Target, pids: list[int] | None) -> Deployment:
        if not pids:
            parts = urlsplit(target.realtime_url)
            if parts.hostname in ("127.0.0.1", "localhost", "::1"):
                pids = listening_pids(parts.port or 80)
        return cls(target, list(pids or []))

    def pids_of(self, service: str) -> list[int]:
        """Processes of ``service`` (realtime, auth, boards) when it runs on this machine."""
        if service == "realtime":
            return self.realtime_pids
        url = {"auth": self.target.auth_url, "boards": self.target.boards_url}[service]
        parts = urlsplit(url)
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        return listening_pids(parts.port or 80) if local else []

    async def provision(self, *, members: int, movers: int, boards: int, cards: int = 10) -> Setup:
        fixtures = Fixtures(self.target)
        await fixtures.__aenter__()
        self._fixtures.append(fixtures)
        users = await fixtures.organization(1 + movers + min(MEMBER_USERS, max(1, members)))
        made = [await fixtures.board(cards=max(cards, movers)) for _ in range(boards)]
        return Setup(
            fixtures.run_id, made, users[1 + movers :] or users[:1], users[1 : 1 + movers] or users[:1], fixtures
        )

    async def close(self) -> None:
        for fixtures in self._fixtures:
            await fixtures.__aexit__(None, None, None)
        self._fixtures.clear()


@contextlib.asynccontextmanager
async def opened(deployment: Deployment) -> AsyncIterator[Deployment]:
    try:
        yield deployment
    finally:
        await deployment.close()
