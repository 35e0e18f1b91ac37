"""The load the chaos suite keeps running while it breaks things: real python-socketio clients.

The clients and the workload live in ``liveboard/bench/workload.py`` (``liveboard bench soak``
runs the same load); this module adds how the suite sets its scenario up (users from the test
tokens, an organization, boards with a few cards).
"""

from __future__ import annotations

import uuid

import aiohttp

from liveboard.bench.workload import (
    ACCEPTED_REFUSALS,
    ACK_TIMEOUT,
    NS,
    RETRY_CODES,
    BoardView,
    NotConnected,
    Op,
    User,
    Workload,
    WorkloadClient,
    call,
    replay_of,
)
from tests.conftest import Tokens

#: The suite's name for a workload client.
ChaosClient = WorkloadClient

__all__ = [
    "ACCEPTED_REFUSALS",
    "ACK_TIMEOUT",
    "NS",
    "RETRY_CODES",
    "BoardView",
    "ChaosClient",
    "NotConnected",
    "Op",
    "User",
    "Workload",
    "WorkloadClient",
    "board",
    "call",
    "new_user",
    "organization",
    "replay_of",
]


# --- setting the scenario up ------------------------------------------------------------------


async def organization(session: aiohttp.ClientSession, auth_url: str, tokens: Tokens, users: list[User]) -> str:
    """An organization whose members are ``users`` (the first one its owner)."""
    org = "org-" + uuid.uuid4().hex[:10]
    admin = tokens.service_role()
    status, body = await call(session, "POST", f"{auth_url}/v1/organizations", admin, {"id": org, "name": org})
    assert status in (200, 201), body
    for index, user in enumerate(users):
        role = "owner" if index == 0 else "member"
        status, body = await call(
            session,
            "PUT",
            f"{auth_url}/v1/organizations/{org}/members/{user.id}",
            admin,
            {"role": role, "email": user.email},
        )
        assert status in (200, 201), body
    return org


async def board(session: aiohttp.ClientSession, boards_url: str, org: str, owner: User, cards: int = 4) -> str:
    board_id = "b-" + uuid.uuid4().hex[:10]
    status, snapshot = await call(
        session,
        "POST",
        f"{boards_url}/v1/boards",
        owner.token,
        {"id": board_id, "organization_id": org, "name": board_id, "columns": ["To do", "Doing", "Done"]},
    )
    assert status == 201, snapshot
    for index in range(cards):
        status, body = await call(
            session,
            "POST",
            f"{boards_url}/v1/boards/{board_id}/cards",
            owner.token,
            {"column_id": snapshot["columns"][index % 3]["id"], "title": f"seed {index}"},
        )
        assert status == 201, body
    return board_id


def new_user(tokens: Tokens, name: str) -> User:
    sub = str(uuid.uuid4())
    email = f"{name}-{sub[:6]}@example.com"
    return User(sub, email, tokens.user(sub, email))
