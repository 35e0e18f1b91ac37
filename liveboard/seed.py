"""The demo organization, users and board that ``liveboard dev`` creates, through the public REST.

Seeding uses the contract's own endpoints (no direct SQL), so a second run is a no-op: creating
an object with an id that exists with the same content returns it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoUser:
    name: str
    id: str
    email: str
    role: str


DEMO_ORG = "demo"
DEMO_DIVISION = "demo-div"
DEMO_BOARD = "demo-board"
DEMO_USERS = (
    DemoUser("alice", "00000000-0000-4000-8000-00000000a11c", "alice@example.com", "owner"),
    DemoUser("bob", "00000000-0000-4000-8000-000000000b0b", "bob@example.com", "member"),
    DemoUser("carol", "00000000-0000-4000-8000-0000000ca201", "carol@example.com", "viewer"),
)
DEMO_COLUMNS = ["To do", "In progress", "Review", "Done"]
DEMO_CARDS = [
    (0, "Sketch the onboarding flow"),
    (0, "Write release notes"),
    (0, "Triage incoming bugs"),
    (1, "Drag-and-drop polish"),
    (1, "Presence avatars"),
    (2, "Offline catch-up"),
    (3, "Socket.IO handshake"),
]


class SeedError(RuntimeError):
    pass


def _call(method: str, url: str, token: str, body: Any | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload)
        except ValueError:
            return exc.code, payload.decode(errors="replace")


def seed_demo(
    ports: dict[str, int],
    service_key: str,
    *,
    user_token: Callable[[DemoUser], str],
    say: Callable[[str], None] = print,
) -> str:
    """Create org ``demo`` (division ``demo-div``), alice/bob/carol, and board ``demo-board``."""
    auth = f"http://127.0.0.1:{ports['auth']}"
    boards = f"http://127.0.0.1:{ports['boards']}"
    steps: list[tuple[str, str, str, Any]] = [
        ("POST", f"{auth}/v1/organizations", service_key, {"id": DEMO_ORG, "name": "Demo organization"}),
        (
            "POST",
            f"{auth}/v1/organizations/{DEMO_ORG}/divisions",
            service_key,
            {"id": DEMO_DIVISION, "name": "Demo division"},
        ),
    ]
    for user in DEMO_USERS:
        steps.append(
            (
                "PUT",
                f"{auth}/v1/organizations/{DEMO_ORG}/members/{user.id}",
                service_key,
                {"role": user.role, "email": user.email},
            )
        )
    for method, url, token, body in steps:
        status, answer = _call(method, url, token, body)
        if status >= 300:
            raise SeedError(f"seeding failed: {method} {url} -> {status} {answer}")
    owner = user_token(DEMO_USERS[0])
    status, answer = _call("GET", f"{boards}/v1/boards/{DEMO_BOARD}", owner)
    if status == 404:
        status, answer = _call(
            "POST",
            f"{boards}/v1/boards",
            owner,
            {
                "id": DEMO_BOARD,
                "organization_id": DEMO_ORG,
                "division_id": DEMO_DIVISION,
                "name": "Launch plan",
                "columns": DEMO_COLUMNS,
            },
        )
        if status >= 300:
            raise SeedError(f"seeding failed: POST /v1/boards -> {status} {answer}")
        columns = answer["columns"]
        for column_index, title in DEMO_CARDS:
            status, card = _call(
                "POST",
                f"{boards}/v1/boards/{DEMO_BOARD}/cards",
                owner,
                {"column_id": columns[column_index]["id"], "title": title},
            )
            if status >= 300:
                raise SeedError(f"seeding failed: POST cards -> {status} {card}")
    elif status >= 300:
        raise SeedError(f"seeding failed: GET /v1/boards/{DEMO_BOARD} -> {status} {answer}")
    say(f"demo          organization '{DEMO_ORG}', division '{DEMO_DIVISION}', board '{DEMO_BOARD}'")
    return DEMO_BOARD
