"""Auth's real directory for tests whose scope tokens are minted by a test signer.

Boards asks auth (``auth.v1.directory`` over NATS) whether a division is the organization's and
whether assignees may read the board. Tests that play auth's signer with their own key still need
a real auth answering that question: ``start_directory`` runs the auth app in-process on the given
NATS, and ``Directory.add`` writes the memberships the minted tokens claim into auth's own tables
(directly, so no ``auth.membership.changed`` announcement makes the minted tokens stale).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import pytest


class Directory:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._seen: set[tuple[Any, ...]] = set()

    async def add(
        self,
        organization_id: str,
        user_id: str | None = None,
        role: str = "member",
        divisions: Iterable[str] | None = None,
        *,
        extra_divisions: Iterable[str] = (),
    ) -> None:
        """The organization, its divisions, and (given ``user_id``) the user's membership."""
        listed = tuple(sorted(set(divisions))) if divisions is not None else None
        key = (organization_id, user_id, role, listed, tuple(sorted(set(extra_divisions))))
        if key in self._seen:
            return
        conn = await asyncpg.connect(self.database_url, server_settings={"search_path": "auth"})
        try:
            await conn.execute(
                "INSERT INTO organizations (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING", organization_id
            )
            for division in {*(listed or ()), *extra_divisions}:
                await conn.execute(
                    "INSERT INTO divisions (organization_id, id, name) VALUES ($1, $2, $2) ON CONFLICT DO NOTHING",
                    organization_id,
                    division,
                )
            if user_id is not None:
                await conn.execute(
                    """INSERT INTO members (organization_id, user_id, role, divisions) VALUES ($1, $2, $3, $4)
                       ON CONFLICT (organization_id, user_id) DO UPDATE SET role = $3, divisions = $4""",
                    organization_id,
                    user_id,
                    role,
                    list(listed) if listed is not None else None,
                )
        finally:
            await conn.close()
        self._seen.add(key)


StartDirectory = Callable[..., Awaitable[Directory]]


@pytest.fixture
def start_directory(make_app, aiohttp_server, database_url: str) -> StartDirectory:
    """``await start_directory(nats_url=...)``: a real auth app answering on that NATS."""

    async def start(**auth_settings: Any) -> Directory:
        await aiohttp_server(make_app("auth", **auth_settings))
        return Directory(database_url)

    return start
