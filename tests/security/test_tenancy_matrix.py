"""The tenancy matrix: every REST route and every socket event, tried by every role of organization
A against organization B's data (and A's own division the division-limited roles are not in).

The lists come from the code, not from this file: socket events from
``services.realtime.namespace.CLIENT_EVENTS``, REST routes from each service app's router. This
module holds one probe definition per route and event (how to aim it at a target); a route or
event without one fails with "add a probe for ...", so a new one is covered as soon as it exists.

For each probe, each caller role and each target it applies to:

1. nothing of the target reaches the caller: no planted secret and no id the caller did not send,
   in the REST body, the socket ack, or anything the caller's socket received meanwhile;
2. nothing is written: the target boards (snapshot and event log, read as their owners), comments,
   boards per organization and division, memberships, divisions and organizations are unchanged,
   and no broadcast reached B's sockets;
3. the answer for the existing foreign id is byte for byte the answer for a missing id of the same
   kind (create-with-taken-id: the answer for an id taken within A with other content);
4. each refusal of an existing foreign target is a security event on ``security.>`` (matched by
   correlation id and user), and the audit service stores them (``GET /v1/audit/events``).

Failures are collected and reported together (one line each), so one run shows every gap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import asyncpg
import nats
import orjson
import pytest

from services.realtime.namespace import CLIENT_EVENTS
from tests.directory import Directory
from tests.realtime.conftest import Client, Stack, User

# --------------------------------------------------------------------------------------------
# roles, targets


#: Caller roles, all in organization A: label -> (role, divisions). ``div_admin`` is a legacy row
#: (admin with a division list), written straight into auth's table: auth refuses to create one.
ROLES: dict[str, tuple[str, list[str] | None]] = {
    "owner": ("owner", None),
    "admin": ("admin", None),
    "member": ("member", None),
    "viewer": ("viewer", None),
    "div_member": ("member", ["div"]),
    "div_admin": ("admin", ["div"]),
}
DIVISION_LIMITED = ("div_member", "div_admin")
ORG_ADMINS = ("owner", "admin")


@dataclass(frozen=True)
class Ids:
    """The ids a probe can aim at: one board with two columns, a card with a comment, a user."""

    org: str
    division: str | None
    board: str
    column: str
    column2: str
    card: str
    comment: str
    user: str

    def values(self) -> dict[str, str]:
        return {name: value for name, value in asdict(self).items() if value}


def _hex() -> str:
    return uuid.uuid4().hex[:10]


def missing_like(target: Ids, *, same_org: bool) -> Ids:
    """Ids of the same kinds that exist nowhere (the organization kept for a same-org target)."""
    return Ids(
        org=target.org if same_org else f"org-{_hex()}",
        division=f"dv-{_hex()}",
        board=f"b-{_hex()}",
        column=f"c-{_hex()}",
        column2=f"c-{_hex()}",
        card=f"k-{_hex()}",
        comment=f"m-{_hex()}",
        user=str(uuid.uuid4()),
    )


# --------------------------------------------------------------------------------------------
# probes


Build = Callable[[Ids, Ids, User], Any]
Expect = tuple[str, ...] | None | Callable[[str], tuple[str, ...] | None]


@dataclass(frozen=True)
class Probe:
    """One way of aiming a route or event at a target.

    ``build(own, target, me)``: the socket payload, or ``(path, body)`` for REST. ``own`` is the
    caller's own board in A; ``target`` is B's (``"b"``), A's board in a division the caller
    cannot read (``"a_div2"``, division-limited roles only), or the counterpart.
    ``counterpart``: what the answer must equal — ``"missing"`` (the same request with missing
    ids), ``"taken"`` (ids taken within A, other content), or None (no comparison).
    ``expect``: the error codes allowed (None: success allowed), or a function of the role.
    ``unaudited``: error codes that are not security events (``conflict`` of a taken id,
    ``invalid_payload`` of a reference check: neither says anything about the target).
    """

    name: str
    build: Build
    targets: tuple[str, ...] = ("b", "a_div2")
    counterpart: str | None = "missing"
    expect: Expect = ("not_found",)
    unaudited: tuple[str, ...] = ()

    def allowed(self, role: str) -> tuple[str, ...] | None:
        return self.expect(role) if callable(self.expect) else self.expect


HIDDEN = ("not_found",)
REFUSED = ("forbidden",)
#: On the caller's own board: a viewer is refused writing before the foreign id is looked at.
OWN_BOARD = ("not_found", "forbidden")
TAKEN = ("conflict", "forbidden")
REFERENCE = ("invalid_payload", "forbidden")


def _admins_succeed(role: str) -> tuple[str, ...] | None:
    return None if role in ORG_ADMINS else REFUSED


def _board(o: Ids, t: Ids, me: User) -> dict[str, Any]:
    return {"board_id": t.board}


def _card_on(board: str, card: str) -> dict[str, Any]:
    return {"board_id": board, "task_id": card}


#: Socket events that cannot name another tenant's data, and why.
UNTARGETED_EVENTS: dict[str, str] = {
    "refresh_token": "carries only the caller's own new Supabase token (another user's token is "
    "refused as not the same user); it names no board, organization or user of anyone else",
}


def _mixed_card(event: str, extra: dict[str, Any]) -> list[Probe]:
    """A card event on B's board, and with B's card under the caller's own board id."""
    return [
        Probe("board", lambda o, t, me: {**_card_on(t.board, t.card), **extra}),
        Probe("foreign_card_own_board", lambda o, t, me: {**_card_on(o.board, t.card), **extra}, expect=HIDDEN),
    ]


SOCKET_PROBES: dict[str, list[Probe]] = {
    "join_board": [
        Probe("board", lambda o, t, me: {"board_id": t.board, "organization_id": t.org, "division_id": t.division}),
        Probe("claim_own_org", lambda o, t, me: {"board_id": t.board, "organization_id": o.org}),
        Probe("since_seq", lambda o, t, me: {"board_id": t.board, "organization_id": t.org, "since_seq": 1}),
        Probe(
            "own_board_claims_target_org",
            lambda o, t, me: {"board_id": o.board, "organization_id": t.org},
            targets=("b",),
            expect=REFUSED,
        ),
        Probe(
            "own_board_claims_target_division",
            lambda o, t, me: {"board_id": o.board, "organization_id": o.org, "division_id": t.division},
            expect=REFUSED,
        ),
    ],
    "leave_board": [Probe("board", _board, expect=None)],
    "list_boards": [
        Probe(
            "org_division",
            lambda o, t, me: {"organization_id": t.org, "division_id": t.division},
            expect=REFUSED,
        ),
        Probe("org_only", lambda o, t, me: {"organization_id": t.org}, targets=("b",), expect=REFUSED),
        Probe(
            "own_org_listing",
            lambda o, t, me: {"organization_id": t.org},
            targets=("a_div2",),
            counterpart=None,
            expect=None,
        ),
    ],
    "user_presence": [Probe("board", lambda o, t, me: {"board_id": t.board, "status": "online"}, expect=REFUSED)],
    "user_typing": [Probe("board", lambda o, t, me: {**_card_on(t.board, t.card), "is_typing": True}, expect=REFUSED)],
    "user_cursor": [Probe("board", lambda o, t, me: {**_card_on(t.board, t.card), "x": 1, "y": 2}, expect=REFUSED)],
    "task_created": [
        Probe("board", lambda o, t, me: {"board_id": t.board, "column_id": t.column, "title": "intruder"}),
        Probe(
            "foreign_column_own_board",
            lambda o, t, me: {"board_id": o.board, "column_id": t.column, "title": "intruder"},
            expect=OWN_BOARD,
        ),
        Probe(
            "taken_id",
            lambda o, t, me: {"board_id": o.board, "column_id": o.column, "title": "intruder", "id": t.card},
            counterpart="taken",
            expect=TAKEN,
            unaudited=("conflict",),
        ),
    ],
    "task_moved": [
        Probe(
            "board",
            lambda o, t, me: {
                **_card_on(t.board, t.card),
                "from_column_id": t.column,
                "to_column_id": t.column2,
                "position": 0,
            },
        ),
        Probe(
            "foreign_card_own_board",
            lambda o, t, me: {**_card_on(o.board, t.card), "to_column_id": o.column2, "position": 0},
        ),
        Probe(
            "foreign_board_own_card",
            lambda o, t, me: {**_card_on(t.board, o.card), "to_column_id": o.column2, "position": 0},
        ),
        Probe(
            "own_card_foreign_column",
            lambda o, t, me: {**_card_on(o.board, o.card), "to_column_id": t.column, "position": 0},
            expect=OWN_BOARD,
        ),
    ],
    "task_updated": _mixed_card("task_updated", {"changes": {"title": "pwned"}}),
    "task_deleted": _mixed_card("task_deleted", {}),
    "task_commented": _mixed_card("task_commented", {"body": "pwned"}),
    "task_assigned": [
        *_mixed_card("task_assigned", {"assignee_ids": []}),
        Probe(
            "foreign_assignee",
            lambda o, t, me: {**_card_on(o.board, o.card), "assignee_ids": [t.user]},
            targets=("b",),
            expect=REFERENCE,
            unaudited=("invalid_payload",),
        ),
    ],
    "board_updated": [Probe("board", lambda o, t, me: {"board_id": t.board, "changes": {"name": "pwned"}})],
    "column_updated": [
        Probe("board", lambda o, t, me: {"board_id": t.board, "column_id": t.column, "changes": {"name": "pwned"}}),
        Probe(
            "foreign_column_own_board",
            lambda o, t, me: {"board_id": o.board, "column_id": t.column, "changes": {"name": "pwned"}},
        ),
    ],
    "column_reordered": [
        Probe("board", lambda o, t, me: {"board_id": t.board, "column_ids": [t.column2, t.column]}),
        Probe(
            "foreign_ids_own_board",
            lambda o, t, me: {"board_id": o.board, "column_ids": [o.column2, o.column, t.column]},
            expect=REFERENCE,
        ),
    ],
}


def _org_level(path: Callable[[Ids, Ids, User], str], body: Any = None, **kw: Any) -> list[Probe]:
    return [Probe("org", lambda o, t, me: (path(o, t, me), body), targets=("b",), expect=REFUSED, **kw)]


def _untargeted(path: str, expect: Expect = None) -> list[Probe]:
    """A route that names no tenant's data: only "nothing of B comes back" is checked."""
    return [Probe("untargeted", lambda o, t, me: (path, None), targets=("b",), counterpart=None, expect=expect)]


#: ``(service, METHOD, canonical path)`` -> probes.
REST_PROBES: dict[tuple[str, str, str], list[Probe]] = {
    # --- boards -----------------------------------------------------------------------------
    ("boards", "GET", "/v1/boards"): [
        Probe(
            "org_division",
            lambda o, t, me: (f"/v1/boards?organization_id={t.org}&division_id={t.division}", None),
            expect=REFUSED,
        ),
        Probe(
            "org_only", lambda o, t, me: (f"/v1/boards?organization_id={t.org}", None), targets=("b",), expect=REFUSED
        ),
        Probe(
            "own_org_listing",
            lambda o, t, me: (f"/v1/boards?organization_id={t.org}", None),
            targets=("a_div2",),
            counterpart=None,
            expect=None,
        ),
    ],
    ("boards", "POST", "/v1/boards"): [
        Probe(
            "in_target",
            lambda o, t, me: ("/v1/boards", {"organization_id": t.org, "division_id": t.division, "name": "intruder"}),
            expect=REFUSED,
        ),
        Probe(
            "taken_id",
            lambda o, t, me: (
                "/v1/boards",
                {"id": t.board, "organization_id": o.org, "division_id": o.division, "name": "intruder"},
            ),
            counterpart="taken",
            expect=TAKEN,
            unaudited=("conflict",),
        ),
        Probe(
            "target_division_in_own_org",
            lambda o, t, me: ("/v1/boards", {"organization_id": o.org, "division_id": t.division, "name": "intruder"}),
            expect=REFERENCE,
            unaudited=("invalid_payload",),
        ),
    ],
    ("boards", "GET", "/v1/boards/{board_id}"): [Probe("board", lambda o, t, me: (f"/v1/boards/{t.board}", None))],
    ("boards", "PATCH", "/v1/boards/{board_id}"): [
        Probe("board", lambda o, t, me: (f"/v1/boards/{t.board}", {"name": "pwned"}))
    ],
    ("boards", "DELETE", "/v1/boards/{board_id}"): [Probe("board", lambda o, t, me: (f"/v1/boards/{t.board}", None))],
    ("boards", "GET", "/v1/boards/{board_id}/events"): [
        Probe("board", lambda o, t, me: (f"/v1/boards/{t.board}/events?since_seq=0", None)),
        Probe("since_seq", lambda o, t, me: (f"/v1/boards/{t.board}/events?since_seq=1&limit=5", None)),
    ],
    ("boards", "POST", "/v1/boards/{board_id}/columns"): [
        Probe("board", lambda o, t, me: (f"/v1/boards/{t.board}/columns", {"name": "intruder"})),
        Probe(
            "taken_id",
            lambda o, t, me: (f"/v1/boards/{o.board}/columns", {"id": t.column, "name": "intruder"}),
            counterpart="taken",
            expect=TAKEN,
            unaudited=("conflict",),
        ),
    ],
    ("boards", "POST", "/v1/boards/{board_id}/columns/reorder"): [
        Probe(
            "board", lambda o, t, me: (f"/v1/boards/{t.board}/columns/reorder", {"column_ids": [t.column2, t.column]})
        ),
        Probe(
            "foreign_ids_own_board",
            lambda o, t, me: (
                f"/v1/boards/{o.board}/columns/reorder",
                {"column_ids": [o.column2, o.column, t.column]},
            ),
            expect=REFERENCE,
        ),
    ],
    ("boards", "PATCH", "/v1/columns/{column_id}"): [
        Probe("column", lambda o, t, me: (f"/v1/columns/{t.column}", {"name": "pwned"}))
    ],
    ("boards", "POST", "/v1/boards/{board_id}/cards"): [
        Probe("board", lambda o, t, me: (f"/v1/boards/{t.board}/cards", {"column_id": t.column, "title": "intruder"})),
        Probe(
            "foreign_column_own_board",
            lambda o, t, me: (f"/v1/boards/{o.board}/cards", {"column_id": t.column, "title": "intruder"}),
            expect=OWN_BOARD,
        ),
        Probe(
            "taken_id",
            lambda o, t, me: (
                f"/v1/boards/{o.board}/cards",
                {"id": t.card, "column_id": o.column, "title": "intruder"},
            ),
            counterpart="taken",
            expect=TAKEN,
            unaudited=("conflict",),
        ),
    ],
    ("boards", "PATCH", "/v1/cards/{card_id}"): [
        Probe("card", lambda o, t, me: (f"/v1/cards/{t.card}", {"title": "pwned"}))
    ],
    ("boards", "POST", "/v1/cards/{card_id}/move"): [
        Probe("card", lambda o, t, me: (f"/v1/cards/{t.card}/move", {"to_column_id": t.column2, "position": 0})),
        Probe(
            "own_card_foreign_column",
            lambda o, t, me: (f"/v1/cards/{o.card}/move", {"to_column_id": t.column, "position": 0}),
            expect=OWN_BOARD,
        ),
    ],
    ("boards", "DELETE", "/v1/cards/{card_id}"): [Probe("card", lambda o, t, me: (f"/v1/cards/{t.card}", None))],
    ("boards", "POST", "/v1/cards/{card_id}/comments"): [
        Probe("card", lambda o, t, me: (f"/v1/cards/{t.card}/comments", {"body": "pwned"}))
    ],
    ("boards", "PUT", "/v1/cards/{card_id}/assignees"): [
        Probe("card", lambda o, t, me: (f"/v1/cards/{t.card}/assignees", {"assignee_ids": [me.id]})),
        Probe(
            "foreign_assignee",
            lambda o, t, me: (f"/v1/cards/{o.card}/assignees", {"assignee_ids": [t.user]}),
            targets=("b",),
            expect=REFERENCE,
            unaudited=("invalid_payload",),
        ),
    ],
    # --- auth -------------------------------------------------------------------------------
    ("auth", "POST", "/v1/token/exchange"): _untargeted("/v1/token/exchange"),
    ("auth", "GET", "/.well-known/jwks.json"): _untargeted("/.well-known/jwks.json"),
    ("auth", "GET", "/v1/organizations"): _untargeted("/v1/organizations"),
    ("auth", "POST", "/v1/organizations"): [
        Probe(
            "taken_id",
            lambda o, t, me: ("/v1/organizations", {"id": t.org, "name": "intruder"}),
            targets=("b",),
            counterpart="taken",
            expect=("conflict",),
            unaudited=("conflict",),
        )
    ],
    ("auth", "POST", "/v1/organizations/{org}/divisions"): _org_level(
        lambda o, t, me: f"/v1/organizations/{t.org}/divisions", {"id": "intruder", "name": "intruder"}
    ),
    ("auth", "GET", "/v1/organizations/{org}/divisions"): _org_level(
        lambda o, t, me: f"/v1/organizations/{t.org}/divisions"
    ),
    ("auth", "PUT", "/v1/organizations/{org}/members/{user_id}"): _org_level(
        lambda o, t, me: f"/v1/organizations/{t.org}/members/{me.id}", {"role": "owner"}
    ),
    ("auth", "DELETE", "/v1/organizations/{org}/members/{user_id}"): _org_level(
        lambda o, t, me: f"/v1/organizations/{t.org}/members/{t.user}"
    ),
    ("auth", "GET", "/v1/organizations/{org}/members"): _org_level(
        lambda o, t, me: f"/v1/organizations/{t.org}/members"
    ),
    # --- realtime ---------------------------------------------------------------------------
    ("realtime", "GET", "/api/v1/websocket/health"): _untargeted("/api/v1/websocket/health"),
    ("realtime", "GET", "/api/v1/websocket/stats"): _untargeted("/api/v1/websocket/stats", _admins_succeed),
    ("realtime", "GET", "/api/v1/websocket/rooms"): _untargeted("/api/v1/websocket/rooms", _admins_succeed),
    ("realtime", "POST", "/api/v1/websocket/broadcast"): [
        Probe(
            "board_room",
            lambda o, t, me: ("/api/v1/websocket/broadcast", {"room": f"board:{t.board}", "event": "tm_note"}),
            expect=("not_found", "forbidden"),
        ),
        Probe(
            "org_room",
            lambda o, t, me: ("/api/v1/websocket/broadcast", {"room": f"org:{t.org}", "event": "tm_note"}),
            targets=("b",),
            expect=REFUSED,
        ),
        Probe(
            "division_room",
            lambda o, t, me: (
                "/api/v1/websocket/broadcast",
                {"room": f"org:{t.org}:div:{t.division}", "event": "tm_note"},
            ),
            targets=("b",),
            expect=REFUSED,
        ),
    ],
    # --- audit ------------------------------------------------------------------------------
    ("audit", "GET", "/v1/audit/events"): _org_level(lambda o, t, me: f"/v1/audit/events?organization_id={t.org}"),
    ("audit", "GET", "/v1/audit/verify"): _org_level(lambda o, t, me: f"/v1/audit/verify?organization_id={t.org}"),
}

#: Routes outside the matrix, and why.
SHARED_ROUTES = {
    "/healthz": "liveness, no data",
    "/readyz": "readiness, no data",
    "/metrics": "Prometheus counters, no tenant data",
    "/openapi.json": "the API description",
}
REALTIME_ONLY_ROUTES = {
    "/": "the demo page (static HTML)",
    "/static/{name}": "the demo page's assets",
    "/static/vendor/socket.io-client/{version}/{name}": "the vendored Socket.IO client",
    "/static/vendor/liveboard-client/{version}/{name}": "the @liveboard/client SDK modules",
    "/sw.js": "the demo page's service worker",
    "/socket.io/": "the Socket.IO transport: every event it carries is in the socket matrix",
}
SERVICES = ("auth", "boards", "realtime", "audit")


def enumerate_routes(make_app: Callable[..., Any]) -> list[tuple[str, str, str]]:
    """Every REST route of every service, from the apps' routers (built, not started)."""
    routes: set[tuple[str, str, str]] = set()
    for service in SERVICES:
        app = make_app(service)
        for route in app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if route.method in ("HEAD", "OPTIONS") or path in SHARED_ROUTES:
                continue
            if service == "realtime" and path in REALTIME_ONLY_ROUTES:
                continue
            routes.add((service, route.method, path))
    return sorted(routes)


def enumerate_events() -> list[str]:
    return sorted(event for event in CLIENT_EVENTS if event not in UNTARGETED_EVENTS)


def missing_probes(routes: list[tuple[str, str, str]]) -> list[str]:
    problems = [f"add a probe for REST {s} {m} {p}" for s, m, p in routes if (s, m, p) not in REST_PROBES]
    problems += [f"stale REST probe for {key} (no such route)" for key in REST_PROBES if key not in routes]
    problems += [f"add a probe for socket event {e!r}" for e in enumerate_events() if e not in SOCKET_PROBES]
    problems += [f"stale socket probe for {e!r}" for e in SOCKET_PROBES if e not in CLIENT_EVENTS]
    problems += [f"{e!r} is both probed and listed as untargeted" for e in UNTARGETED_EVENTS if e in SOCKET_PROBES]
    problems += [f"untargeted {e!r} is not an event" for e in UNTARGETED_EVENTS if e not in CLIENT_EVENTS]
    every = [*REST_PROBES.items(), *SOCKET_PROBES.items()]
    problems += [
        f"{key}: no probe aimed at organization B (so some roles never run it)"
        for key, probes in every
        if not any("b" in probe.targets for probe in probes)
    ]
    return problems


def test_every_route_and_event_has_a_probe(make_app):
    routes = enumerate_routes(make_app)
    assert len(routes) >= 30 and len(enumerate_events()) >= 15, (routes, enumerate_events())
    assert not missing_probes(routes), "\n".join(missing_probes(routes))


# --------------------------------------------------------------------------------------------
# the world: two organizations, planted secrets, sockets listening


class SecurityEvents:
    """Everything published on ``security.>`` while the test runs."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.nc: Any = None

    async def start(self, url: str) -> None:
        self.nc = await nats.connect(url, name="tenancy-matrix-security-listener")
        await self.nc.subscribe("security.>", cb=self._on)
        await self.nc.flush()

    async def _on(self, msg: Any) -> None:
        try:
            self.items.append((msg.subject, orjson.loads(msg.data)))
        except orjson.JSONDecodeError:
            self.items.append((msg.subject, {"unreadable": msg.data.decode(errors="replace")}))

    def of(self, correlation_id: str, user_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (subject, event)
            for subject, event in self.items
            if event.get("correlation_id") == correlation_id and event.get("user_id") == user_id
        ]

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()


@dataclass
class World:
    stack: Stack
    urls: dict[str, str]
    db: asyncpg.Connection
    security: SecurityEvents
    org_a: str
    org_b: str
    users: dict[str, User]
    owner_a: User
    owner_b: User
    member_b: User
    own: Ids
    targets: dict[str, Ids]
    secrets: dict[str, str]
    #: What only the target's organization/division may see: leaked if it reaches a caller.
    only: dict[str, set[str]]
    b_socket: Client
    a2_socket: Client
    correlation: int = 0
    failures: list[str] = field(default_factory=list)

    def cid(self, role: str) -> str:
        self.correlation += 1
        return f"tm-{role}-{self.correlation}"

    async def call(
        self, service: str, method: str, path: str, token: str | None, body: Any = None, cid: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if cid:
            headers["X-Correlation-Id"] = cid
        async with self.stack.session.request(
            method, self.urls[service] + path, json=body, headers=headers
        ) as response:
            text = await response.text()
            try:
                return response.status, orjson.loads(text) if text else None
            except orjson.JSONDecodeError:
                return response.status, text


async def _ok(world_call: Any) -> Any:
    status, body = await world_call
    assert status in (200, 201), (status, body)
    return body


@pytest.fixture
async def world(make_stack, make_app, aiohttp_server, database_url, nats_url) -> AsyncIterator[World]:
    stack = await make_stack()
    audit = await aiohttp_server(make_app("audit", auth_service_url=stack.auth_url))
    urls = {
        "auth": stack.auth_url,
        "boards": stack.boards_url,
        "realtime": stack.realtime_url,
        "audit": str(audit.make_url("")).rstrip("/"),
    }
    security = SecurityEvents()
    await security.start(nats_url)
    db = await asyncpg.connect(database_url)
    admin = stack.tokens.service_role()

    owner_a, owner_b, member_b = stack.user("owner-a"), stack.user("owner-b"), stack.user("member-b")
    users = {label: stack.user(label.replace("_", "-")) for label in ROLES}
    users["owner"] = owner_a
    plain = {label: (users[label], role) for label, (role, divisions) in ROLES.items() if divisions is None}
    org_a = await stack.organization(**plain)
    auth = stack.auth_url
    await _ok(stack.call("POST", f"{auth}/v1/organizations/{org_a}/divisions", admin, {"id": "div2", "name": "Two"}))
    await _ok(
        stack.call(
            "PUT",
            f"{auth}/v1/organizations/{org_a}/members/{users['div_member'].id}",
            admin,
            {"role": "member", "divisions": ["div"], "email": users["div_member"].email},
        )
    )
    # The legacy row: auth refuses to create it (test_admins_cannot_be_limited_to_divisions).
    await Directory(database_url).add(org_a, users["div_admin"].id, "admin", ["div"])

    org_b = await stack.organization(owner=(owner_b, "owner"), member=(member_b, "member"))
    division_b = f"dvb-{_hex()}"
    await _ok(stack.call("POST", f"{auth}/v1/organizations/{org_b}/divisions", admin, {"id": division_b, "name": "B"}))

    secrets = {"b": f"SECRET-B-{_hex()}", "a_div2": f"SECRET-A2-{_hex()}"}

    async def planted(org: str, division: str, owner: User, secret: str, assignee: str) -> Ids:
        boards = stack.boards_url
        snapshot = await _ok(
            stack.call(
                "POST",
                f"{boards}/v1/boards",
                owner.token,
                {
                    "id": f"bb-{_hex()}",
                    "organization_id": org,
                    "division_id": division,
                    "name": f"board {secret}",
                    "columns": [f"todo {secret}", f"done {secret}"],
                },
            )
        )
        board = snapshot["board"]["id"]
        columns = [c["id"] for c in snapshot["columns"]]
        card = await _ok(
            stack.call(
                "POST",
                f"{boards}/v1/boards/{board}/cards",
                owner.token,
                {
                    "column_id": columns[0],
                    "title": f"card {secret}",
                    "description": f"description {secret}",
                    "assignee_ids": [assignee],
                },
            )
        )
        comment = await _ok(
            stack.call(
                "POST", f"{boards}/v1/cards/{card['task']['id']}/comments", owner.token, {"body": f"comment {secret}"}
            )
        )
        return Ids(org, division, board, columns[0], columns[1], card["task"]["id"], comment["comment"]["id"], assignee)

    target_b = await planted(org_b, division_b, owner_b, secrets["b"], member_b.id)
    target_a2 = await planted(org_a, "div2", owner_a, secrets["a_div2"], owner_a.id)
    own_snapshot = await _ok(
        stack.call(
            "POST",
            f"{stack.boards_url}/v1/boards",
            owner_a.token,
            {"organization_id": org_a, "division_id": "div", "name": "own board", "columns": ["own 1", "own 2"]},
        )
    )
    own_board = own_snapshot["board"]["id"]
    own_columns = [c["id"] for c in own_snapshot["columns"]]
    own_card = await _ok(
        stack.call(
            "POST",
            f"{stack.boards_url}/v1/boards/{own_board}/cards",
            owner_a.token,
            {"column_id": own_columns[0], "title": "own card"},
        )
    )
    own = Ids(org_a, "div", own_board, own_columns[0], own_columns[1], own_card["task"]["id"], "", owner_a.id)

    only = {
        "b": {
            *target_b.values().values(),
            owner_b.id,
            owner_b.email,
            member_b.email,
            secrets["b"],
        },
        "a_div2": {
            target_a2.board,
            target_a2.column,
            target_a2.column2,
            target_a2.card,
            target_a2.comment,
            secrets["a_div2"],
        },
    }

    async def listening(user: User, board: Ids) -> Client:
        client = await stack.client(user)
        ack = await client.call("join_board", {"board_id": board.board, "organization_id": board.org})
        assert ack["ok"], ack
        return client

    world = World(
        stack=stack,
        urls=urls,
        db=db,
        security=security,
        org_a=org_a,
        org_b=org_b,
        users=users,
        owner_a=owner_a,
        owner_b=owner_b,
        member_b=member_b,
        own=own,
        targets={"b": target_b, "a_div2": target_a2},
        secrets=secrets,
        only=only,
        b_socket=await listening(owner_b, target_b),
        a2_socket=await listening(owner_a, target_a2),
    )
    yield world
    await security.close()
    await db.close()


async def state(w: World) -> dict[str, Any]:
    """Everything a refused probe must leave as it was (read as the owners, and in the tables)."""
    out: dict[str, Any] = {}
    admin = w.stack.tokens.service_role()
    for label, owner, ids in (
        ("b", w.owner_b, w.targets["b"]),
        ("a_div2", w.owner_a, w.targets["a_div2"]),
        ("own", w.owner_a, w.own),
    ):
        out[f"{label} snapshot"] = await w.call("boards", "GET", f"/v1/boards/{ids.board}", owner.token)
        out[f"{label} events"] = await w.call(
            "boards", "GET", f"/v1/boards/{ids.board}/events?since_seq=0", owner.token
        )
    orgs = [w.org_a, w.org_b]
    out["comments"] = [
        tuple(r)
        for r in await w.db.fetch(
            """SELECT c.board_id, c.card_id, c.body FROM boards.kanban_comments c
               JOIN boards.kanban_boards b ON b.id = c.board_id WHERE b.organization_id = any($1) ORDER BY c.id""",
            orgs,
        )
    ]
    out["boards"] = [
        tuple(r)
        for r in await w.db.fetch(
            """SELECT id, organization_id, division_id, name, seq, deleted_at FROM boards.kanban_boards
               WHERE organization_id = any($1) ORDER BY id""",
            orgs,
        )
    ]
    out["cards"] = [
        tuple(r)
        for r in await w.db.fetch(
            """SELECT c.id, c.board_id, c.column_id, c.title, c.version FROM boards.kanban_cards c
               JOIN boards.kanban_boards b ON b.id = c.board_id WHERE b.organization_id = any($1) ORDER BY c.id""",
            orgs,
        )
    ]
    out["columns"] = [
        tuple(r)
        for r in await w.db.fetch(
            """SELECT c.id, c.board_id, c.name, c.rank FROM boards.kanban_columns c
               JOIN boards.kanban_boards b ON b.id = c.board_id WHERE b.organization_id = any($1) ORDER BY c.id""",
            orgs,
        )
    ]
    for org in orgs:
        out[f"members {org}"] = await w.call("auth", "GET", f"/v1/organizations/{org}/members", admin)
        out[f"divisions {org}"] = await w.call("auth", "GET", f"/v1/organizations/{org}/divisions", admin)
    out["organizations"] = [
        tuple(r)
        for r in await w.db.fetch("SELECT id, name FROM auth.organizations WHERE id = any($1) ORDER BY id", orgs)
    ]
    return out


# --------------------------------------------------------------------------------------------
# running probes


def _text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()


def normalized(answer: Any, ids: Ids) -> str:
    """The answer with the probe's ids replaced by their kind, so answers for different ids compare."""
    text = _text(answer)
    for name, value in sorted(ids.values().items(), key=lambda item: -len(item[1])):
        text = text.replace(value, f"<{name}>")
    return text


def _error_code(answer: Any, status: int | None) -> str | None:
    """The error code of an answer (REST when ``status`` is given, else a socket ack), None if ok."""
    if status is not None:
        if status < 400:
            return None
        return answer.get("error", {}).get("code", "?") if isinstance(answer, dict) else "?"
    if isinstance(answer, dict) and answer.get("ok") is True:
        return None
    return answer.get("error", {}).get("code", "?") if isinstance(answer, dict) else "?"


@dataclass
class Run:
    """One role's pass over the matrix."""

    w: World
    role: str
    me: User
    socket: Client
    expected_events: list[tuple[str, str, str]] = field(default_factory=list)  # (cid, what, path hint)
    probes: int = 0

    @property
    def fail(self) -> list[str]:
        return self.w.failures

    def leaked(self, answer: Any, request: Any) -> list[str]:
        """Secrets and target-only ids in ``answer`` that the request did not carry itself."""
        text, sent = _text(answer), _text(request)
        labels = ["b"] + (["a_div2"] if self.role in DIVISION_LIMITED else [])
        return sorted(
            value
            for label in labels
            for value in self.w.only[label]
            if value in text and (value not in sent or value in self.w.secrets.values())
        )

    def check(
        self,
        what: str,
        probe: Probe,
        request: Any,
        answer: Any,
        status: int | None,
        counterpart: tuple[Any, Any, int | None, Ids] | None,
        target: Ids,
        cid: str,
        path_hint: str,
    ) -> None:
        self.probes += 1
        leaks = self.leaked(answer, request)
        if leaks:
            self.fail.append(f"{what}: LEAK of {leaks} in {_text(answer)[:300]}")
        code = _error_code(answer, status)
        allowed = probe.allowed(self.role)
        if allowed is not None and code not in allowed:
            self.fail.append(f"{what}: expected one of {allowed}, got {status} {_text(answer)[:300]}")
        if counterpart is not None:
            other_request, other_answer, other_status, other_ids = counterpart
            mine = (status, normalized(answer, target))
            theirs = (other_status, normalized(other_answer, other_ids))
            if mine != theirs:
                self.fail.append(f"{what}: ORACLE: foreign {mine} != {probe.counterpart} {theirs}")
            leaks = self.leaked(other_answer, other_request)
            if leaks:
                self.fail.append(f"{what} ({probe.counterpart}): LEAK of {leaks}")
        if code is not None and code not in probe.unaudited:
            self.expected_events.append((cid, what, path_hint))

    def counterpart_ids(self, probe: Probe, target_label: str, target: Ids) -> Ids | None:
        if probe.counterpart == "missing":
            return missing_like(target, same_org=target_label == "a_div2")
        if probe.counterpart == "taken":
            return replace(self.w.own, comment="", user=self.me.id)
        return None

    async def rest(self, service: str, method: str, path: str) -> None:
        for probe in REST_PROBES.get((service, method, path), []):
            for label in self.labels(probe):
                target = self.w.targets[label]
                other_ids = self.counterpart_ids(probe, label, target)
                what = f"[{self.role}] REST {method} {path} {probe.name} -> {label}"
                url, body = probe.build(self.w.own, target, self.me)
                cid = self.w.cid(self.role)
                status, answer = await self.w.call(service, method, url, self.me.token, body, cid)
                counterpart = None
                if other_ids is not None:
                    other_url, other_body = probe.build(self.w.own, other_ids, self.me)
                    other_status, other_answer = await self.w.call(
                        service, method, other_url, self.me.token, other_body, self.w.cid(self.role)
                    )
                    counterpart = ((other_url, other_body), other_answer, other_status, other_ids)
                self.check(what, probe, (url, body), answer, status, counterpart, target, cid, url.split("?")[0])

    async def event(self, event: str) -> None:
        for probe in SOCKET_PROBES.get(event, []):
            for label in self.labels(probe):
                target = self.w.targets[label]
                other_ids = self.counterpart_ids(probe, label, target)
                what = f"[{self.role}] socket {event} {probe.name} -> {label}"
                cid = self.w.cid(self.role)
                payload = {**probe.build(self.w.own, target, self.me), "correlation_id": cid}
                ack = await self.socket.call(event, payload)
                counterpart = None
                if other_ids is not None:
                    other = {**probe.build(self.w.own, other_ids, self.me), "correlation_id": self.w.cid(self.role)}
                    counterpart = (other, await self.socket.call(event, other), None, other_ids)
                self.check(what, probe, payload, ack, None, counterpart, target, cid, f"socket:{event}")

    def labels(self, probe: Probe) -> list[str]:
        mine = ["b"] + (["a_div2"] if self.role in DIVISION_LIMITED else [])
        return [label for label in mine if label in probe.targets]


async def wait_for_events(w: World, run: Run, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(w.security.of(cid, run.me.id) for cid, _, _ in run.expected_events):
            break
        await asyncio.sleep(0.05)
    for cid, what, hint in run.expected_events:
        found = w.security.of(cid, run.me.id)
        if not found:
            w.failures.append(f"{what}: NO SECURITY EVENT (correlation {cid})")
            continue
        paths = {event.get("data", {}).get("path") for _, event in found}
        if not any(p == hint or (p or "").startswith(("nats:boards.v1.", "socket:")) for p in paths):
            w.failures.append(f"{what}: security event names path {paths}, not {hint}")


async def audit_rows(w: World, correlation_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The audit service's rows of B's organization with that correlation id (service_role)."""
    admin = w.stack.tokens.service_role()
    deadline = time.monotonic() + timeout
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        status, body = await w.call(
            "audit", "GET", f"/v1/audit/events?organization_id={w.org_b}&correlation_id={correlation_id}", admin
        )
        assert status == 200, body
        events = body["events"]
        if events:
            return events
        await asyncio.sleep(0.2)
    return events


#: Organization-level actions a caller without organization-wide admin rights must be refused in
#: its own organization (``div_admin``: the legacy admin row limited to a division).
def own_org_admin_actions(w: World, me: User) -> list[tuple[str, str, str, Any]]:
    a = w.org_a
    return [
        ("boards", "DELETE", f"/v1/boards/{w.own.board}", None),
        ("audit", "GET", f"/v1/audit/events?organization_id={a}", None),
        ("audit", "GET", f"/v1/audit/verify?organization_id={a}", None),
        ("realtime", "POST", "/api/v1/websocket/broadcast", {"room": f"org:{a}", "event": "tm_note"}),
        ("realtime", "GET", "/api/v1/websocket/stats", None),
        ("realtime", "GET", "/api/v1/websocket/rooms", None),
        ("auth", "GET", f"/v1/organizations/{a}/members", None),
        ("auth", "POST", f"/v1/organizations/{a}/divisions", {"id": "intruder", "name": "intruder"}),
        ("auth", "PUT", f"/v1/organizations/{a}/members/{me.id}", {"role": "admin"}),
        ("auth", "DELETE", f"/v1/organizations/{a}/members/{w.owner_a.id}", None),
    ]


@pytest.mark.parametrize("role", list(ROLES))
async def test_tenancy_matrix(world: World, make_app, role: str):
    w = world
    me = w.users[role]
    socket = await w.stack.client(me)
    await socket.wait_for("connection_established")
    ack = await socket.call("join_board", {"board_id": w.own.board, "organization_id": w.org_a})
    assert ack["ok"], ack
    routes = enumerate_routes(make_app)
    w.failures.extend(missing_probes(routes))
    before = await state(w)

    run = Run(w, role, me, socket)
    started = time.monotonic()
    for service, method, path in routes:
        await run.rest(service, method, path)
    for event in enumerate_events():
        await run.event(event)

    if role not in ORG_ADMINS:
        for service, method, path, body in own_org_admin_actions(w, me):
            cid = w.cid(role)
            status, answer = await w.call(service, method, path, me.token, body, cid)
            what = f"[{role}] own organization {method} {path}"
            if status != 403:
                w.failures.append(f"{what}: expected 403, got {status} {_text(answer)[:200]}")
            run.expected_events.append((cid, what, path.split("?")[0]))
    elapsed = time.monotonic() - started

    await wait_for_events(w, run)

    # End to end: the audit service stored the refusals in B's log (a REST and a socket one).
    for kind in ("REST", "socket"):
        cid, what, _ = next(e for e in run.expected_events if f" {kind} " in e[1] and e[1].endswith("-> b"))
        if not w.security.of(cid, me.id):
            continue  # already a failure above; nothing for audit to store
        rows = await audit_rows(w, cid)
        if not rows or any(row["user_id"] != me.id or not row["action"].startswith("security.") for row in rows):
            w.failures.append(f"{what}: audit stored {rows!r} for correlation {cid}")

    after = await state(w)
    for key in before:
        if before[key] != after[key]:
            w.failures.append(f"[{role}] WRITE: {key} changed:\n  before {before[key]!r}\n  after  {after[key]!r}")

    # B and A's other division keep working meanwhile; none of it reaches the caller.
    canaries = [(w.owner_b, w.targets["b"], w.b_socket), (w.owner_a, w.targets["a_div2"], w.a2_socket)]
    for owner, ids, listener in canaries:
        body = f"canary {w.secrets['b' if owner is w.owner_b else 'a_div2']}"
        status, answer = await w.call("boards", "POST", f"/v1/cards/{ids.card}/comments", owner.token, {"body": body})
        if status != 201:
            w.failures.append(f"[{role}] the owner of {ids.board} cannot comment any more: {status} {answer}")
            continue
        await listener.wait_for("task_commented", where=lambda e, body=body: e["data"]["comment"]["body"] == body)
        ack = await listener.call("user_typing", {"board_id": ids.board, "task_id": ids.card, "is_typing": True})
        assert ack["ok"], ack
    await asyncio.sleep(0.3)
    received = {event: items for event, items in socket.received.items()}
    leaks = run.leaked(received, None)
    if leaks:
        w.failures.append(f"[{role}] LEAK to the caller's socket: {leaks} in {_text(received)[:500]}")
    for listener in (w.b_socket, w.a2_socket):
        if listener.received.get("tm_note"):
            w.failures.append(f"[{role}] a broadcast reached another tenant's socket: {listener.received['tm_note']}")

    if role in ORG_ADMINS:  # the admins' stats must not count other tenants' activity
        _, first = await w.call("realtime", "GET", "/api/v1/websocket/stats", me.token)
        for _ in range(3):
            await w.b_socket.call("user_typing", {"board_id": w.targets["b"].board, "is_typing": False})
        _, second = await w.call("realtime", "GET", "/api/v1/websocket/stats", me.token)
        for name in ("total_events", "total_errors", "total_connections"):
            if first["server_stats"][name] != second["server_stats"][name]:
                w.failures.append(
                    f"[{role}] stats {name} counts other tenants' activity: "
                    f"{first['server_stats'][name]} -> {second['server_stats'][name]}"
                )

    print(f"{role}: {run.probes} probes in {elapsed:.1f}s, {len(run.expected_events)} security events checked")
    assert not w.failures, f"{len(w.failures)} failures:\n" + "\n".join(w.failures)


async def test_admins_cannot_be_limited_to_divisions(world: World):
    """Auth refuses an admin/owner membership with a division list (400 ``division_limited_admin``),
    from service_role and from the owner alike; the legacy row that exists anyway administers
    nothing (test_tenancy_matrix[div_admin])."""
    w = world
    someone = w.stack.user("someone")
    for token in (w.stack.tokens.service_role(), w.owner_a.token):
        for role in ("admin", "owner"):
            status, body = await w.call(
                "auth",
                "PUT",
                f"/v1/organizations/{w.org_a}/members/{someone.id}",
                token,
                {"role": role, "divisions": ["div"]},
            )
            assert status == 400, body
            assert body["error"]["code"] == "invalid_payload" and body["error"]["reason"] == "division_limited_admin"
    row = await w.db.fetchrow(
        "SELECT role, divisions FROM auth.members WHERE organization_id = $1 AND user_id = $2",
        w.org_a,
        someone.id,
    )
    assert row is None
    # The legacy row is there, and it is what the div_admin caller's scope says.
    status, body = await w.call("auth", "POST", "/v1/token/exchange", w.users["div_admin"].token)
    assert status == 200, body
    (membership,) = [o for o in body["claims"]["organizations"] if o["id"] == w.org_a]
    assert membership == {"id": w.org_a, "role": "admin", "divisions": ["div"]}
