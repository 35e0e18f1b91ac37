"""Who may do what: each finding of the "who may do what" review, as a regression test.

Everything runs against the real services (auth, boards, realtime and audit in-process on real
ports, real NATS with per-service permissions, real Postgres) and real Socket.IO clients. The
full role x route x event matrix is test_tenancy_matrix.py; these are the single findings.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from services.realtime.http_api import WS_SERVER
from tests.directory import Directory
from tests.realtime.conftest import Stack


@pytest.fixture
async def stack(make_stack) -> Stack:
    return await make_stack()


@pytest.fixture
async def audit_url(stack: Stack, make_app, aiohttp_server) -> str:
    server = await aiohttp_server(make_app("audit", auth_service_url=stack.auth_url))
    return str(server.make_url("")).rstrip("/")


async def exchange(stack: Stack, token: str) -> str:
    status, body = await stack.call("POST", f"{stack.auth_url}/v1/token/exchange", token)
    assert status == 200, body
    return body["scope_token"]


async def eventually(check, timeout: float = 1.0, interval: float = 0.05) -> float:
    """Seconds until the async ``check`` holds (fails after ``timeout``)."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        await asyncio.sleep(interval)


# --- destructive operations -------------------------------------------------------------------


async def test_deleting_a_board_takes_an_organization_admin(stack):
    owner, admin, member, viewer = (stack.user(n) for n in ("owner", "admin", "member", "viewer"))
    org = await stack.organization(o=(owner, "owner"), a=(admin, "admin"), m=(member, "member"), v=(viewer, "viewer"))
    refused = {}
    for who in (member, viewer):
        board = await stack.board(org, owner, cards=0)
        refused[who.email] = await stack.call(
            "DELETE", f"{stack.boards_url}/v1/boards/{board['board']['id']}", who.token
        )
        assert (await stack.call("GET", f"{stack.boards_url}/v1/boards/{board['board']['id']}", owner.token))[0] == 200
    assert refused[member.email][0] == 403 and "admin or owner" in refused[member.email][1]["error"]["message"]
    assert refused[viewer.email][0] == 403
    for who in (admin, owner):
        board = await stack.board(org, owner, cards=0)
        status, body = await stack.call("DELETE", f"{stack.boards_url}/v1/boards/{board['board']['id']}", who.token)
        assert status == 200 and body["board_id"] == board["board"]["id"], body


async def test_refusals_inside_a_command_are_in_the_organizations_audit_log(stack, audit_url):
    """A member deleting a board and a viewer writing are refused after the board is loaded (the
    request itself names no organization): the security events still belong to that
    organization's chain, where its admins read them, not to the global one."""
    owner, member, viewer = (stack.user(n) for n in ("owner", "member", "viewer"))
    org = await stack.organization(o=(owner, "owner"), m=(member, "member"), v=(viewer, "viewer"))
    board = await stack.board(org, owner, cards=1)
    board_id, card = board["board"]["id"], board["cards"][0]["id"]
    assert (await stack.call("DELETE", f"{stack.boards_url}/v1/boards/{board_id}", member.token))[0] == 403
    status, _ = await stack.call("PATCH", f"{stack.boards_url}/v1/cards/{card}", viewer.token, {"title": "x"})
    assert status == 403

    async def recorded() -> bool:
        status, body = await stack.call(
            "GET", f"{audit_url}/v1/audit/events?organization_id={org}&limit=100", owner.token
        )
        assert status == 200, body
        refusals = {row["user_id"] for row in body["events"] if row["stream"] == "SECURITY_EVENTS"}
        return {member.id, viewer.id} <= refusals

    await eventually(recorded, timeout=10)


# --- division-limited admins ------------------------------------------------------------------


async def test_an_admin_limited_to_divisions_is_refused_as_a_combination(stack):
    owner, someone = stack.user("owner"), stack.user("someone")
    org = await stack.organization(o=(owner, "owner"))
    path = f"{stack.auth_url}/v1/organizations/{org}/members/{someone.id}"
    for role in ("admin", "owner"):
        status, body = await stack.call("PUT", path, stack.tokens.service_role(), {"role": role, "divisions": ["div"]})
        assert status == 400 and body["error"]["reason"] == "division_limited_admin", body
    status, body = await stack.call("PUT", path, owner.token, {"role": "member", "divisions": ["div"]})
    assert status == 201, body


async def test_a_legacy_division_limited_admin_has_no_admin_rights(stack, database_url, audit_url):
    """A row written before the rule (role admin, divisions [div]) reads its division like a member
    and manages nothing: not the audit log, not broadcasts, not memberships — not even its own."""
    owner, legacy = stack.user("owner"), stack.user("legacy")
    org = await stack.organization(o=(owner, "owner"))
    await Directory(database_url).add(org, legacy.id, "admin", ["div"])
    board = await stack.board(org, owner, division="div")
    assert (await stack.call("GET", f"{stack.boards_url}/v1/boards/{board['board']['id']}", legacy.token))[0] == 200

    status, _ = await stack.call("GET", f"{audit_url}/v1/audit/events?organization_id={org}", legacy.token)
    assert status == 403
    status, _ = await stack.call("GET", f"{audit_url}/v1/audit/verify?organization_id={org}", legacy.token)
    assert status == 403
    broadcast = f"{stack.realtime_url}/api/v1/websocket/broadcast"
    for room in (f"org:{org}", f"org:{org}:div:div", f"board:{board['board']['id']}"):
        status, _ = await stack.call("POST", broadcast, legacy.token, {"room": room, "event": "notice"})
        assert status == 403, room
    members = f"{stack.auth_url}/v1/organizations/{org}/members"
    assert (await stack.call("GET", members, legacy.token))[0] == 403
    status, body = await stack.call("PUT", f"{members}/{legacy.id}", legacy.token, {"role": "admin"})
    assert status == 403, body  # cannot lift its own limit
    status, body = await stack.call("PUT", f"{members}/{stack.user('x').id}", legacy.token, {"role": "member"})
    assert status == 403, body
    status, body = await stack.call("DELETE", f"{stack.boards_url}/v1/boards/{board['board']['id']}", legacy.token)
    assert status == 403, body


# --- references to auth's data ----------------------------------------------------------------


async def test_assignees_must_be_members_who_may_read_the_board(stack):
    alice, bob, fenced, outsider = (stack.user(n) for n in ("alice", "bob", "fenced", "outsider"))
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    await stack.organization(x=(outsider, "owner"))
    status, _ = await stack.call(
        "PUT",
        f"{stack.auth_url}/v1/organizations/{org}/members/{fenced.id}",
        stack.tokens.service_role(),
        {"role": "member", "divisions": ["div"]},
    )
    assert status == 201
    board = await stack.board(org, alice, division=None)  # organization-wide: every member reads it
    fenced_board_org = await stack.organization(a=(alice, "owner"))
    card = board["cards"][0]["id"]
    assign = f"{stack.boards_url}/v1/cards/{card}/assignees"

    refusals = []
    for stranger in (outsider.id, "no-such-user-" + uuid.uuid4().hex[:6]):
        status, body = await stack.call("PUT", assign, alice.token, {"assignee_ids": [bob.id, stranger]})
        assert status == 400 and body["error"]["code"] == "invalid_payload", body
        refusals.append(body["error"]["message"].replace(stranger, "<id>"))
    assert refusals[0] == refusals[1]  # another tenant's user and a missing one look alike

    status, body = await stack.call("PUT", assign, alice.token, {"assignee_ids": [bob.id, fenced.id]})
    assert status == 200 and body["assignee_ids"] == [bob.id, fenced.id], body

    # Over the socket, and on create, the same rule.
    a = await stack.client(alice)
    ack = await a.call(
        "task_assigned", {"board_id": board["board"]["id"], "task_id": card, "assignee_ids": [outsider.id]}
    )
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    status, body = await stack.call(
        "POST",
        f"{stack.boards_url}/v1/boards/{board['board']['id']}/cards",
        alice.token,
        {"column_id": board["columns"][0]["id"], "title": "x", "assignee_ids": [outsider.id]},
    )
    assert status == 400, body
    # A division board: a member fenced into another division cannot be assigned.
    status, _ = await stack.call(
        "POST",
        f"{stack.auth_url}/v1/organizations/{fenced_board_org}/divisions",
        alice.token,
        {"id": "d2", "name": "D2"},
    )
    assert status == 201
    status, _ = await stack.call(
        "PUT",
        f"{stack.auth_url}/v1/organizations/{fenced_board_org}/members/{fenced.id}",
        alice.token,
        {"role": "member", "divisions": ["div"]},
    )
    assert status == 201
    other = await stack.board(fenced_board_org, alice, division="d2")
    status, body = await stack.call(
        "PUT",
        f"{stack.boards_url}/v1/cards/{other['cards'][0]['id']}/assignees",
        alice.token,
        {"assignee_ids": [fenced.id]},
    )
    assert status == 400, body
    after = await stack.call("GET", f"{stack.boards_url}/v1/boards/{board['board']['id']}", alice.token)
    assert next(c for c in after[1]["cards"] if c["id"] == card)["assignee_ids"] == [bob.id, fenced.id]


async def test_a_board_names_only_a_division_of_its_own_organization(stack):
    alice, mallory = stack.user("alice"), stack.user("mallory")
    org = await stack.organization(a=(alice, "owner"))
    other = await stack.organization(m=(mallory, "owner"))
    await stack.call(
        "POST", f"{stack.auth_url}/v1/organizations/{other}/divisions", mallory.token, {"id": "secret-div", "name": "S"}
    )
    answers = []
    for division in ("secret-div", "no-such-div"):
        status, body = await stack.call(
            "POST",
            f"{stack.boards_url}/v1/boards",
            alice.token,
            {"organization_id": org, "division_id": division, "name": "x"},
        )
        answers.append((status, body))
    assert answers[0] == answers[1] and answers[0][0] == 400, answers  # foreign and missing look alike
    status, _ = await stack.call(
        "POST",
        f"{stack.boards_url}/v1/boards",
        alice.token,
        {"organization_id": org, "division_id": "div", "name": "x"},
    )
    assert status == 201


# --- broadcasts -------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["connect_error", "connect", "disconnect", "disconnecting", "newListener", "message"])
async def test_a_broadcast_cannot_use_a_socket_io_lifecycle_name(stack, event):
    admin = stack.user("admin")
    org = await stack.organization(a=(admin, "owner"))
    client = await stack.client(admin)
    status, body = await stack.call(
        "POST", f"{stack.realtime_url}/api/v1/websocket/broadcast", admin.token, {"room": f"org:{org}", "event": event}
    )
    assert status == 400 and body["error"]["code"] == "invalid_payload", body
    await asyncio.sleep(0.2)
    assert event not in client.received


# --- one leeway -------------------------------------------------------------------------------


async def test_every_service_applies_the_same_leeway(stack, audit_url):
    """SUPABASE_JWT_LEEWAY (30 s): 10 s past exp is accepted everywhere, 45 s past refused everywhere."""
    owner = stack.user("owner")
    org = await stack.organization(o=(owner, "owner"))
    board = await stack.board(org, owner, cards=0)

    async def outcomes(token: str) -> dict[str, Any]:
        socket = await stack.client(None, connect=False)
        try:
            await socket.connect(stack.realtime_url, token)
            realtime = "connected"
        except Exception:
            realtime = (socket.connect_error or {}).get("reason")
        return {
            "auth": (await stack.call("POST", f"{stack.auth_url}/v1/token/exchange", token))[0],
            "boards": (await stack.call("GET", f"{stack.boards_url}/v1/boards/{board['board']['id']}", token))[0],
            "audit": (await stack.call("GET", f"{audit_url}/v1/audit/events?organization_id={org}", token))[0],
            "realtime": realtime,
        }

    inside = stack.tokens.user(owner.id, owner.email, ttl=-10)
    assert await outcomes(inside) == {"auth": 200, "boards": 200, "audit": 200, "realtime": "connected"}
    outside = stack.tokens.user(owner.id, owner.email, ttl=-45)
    assert await outcomes(outside) == {"auth": 401, "boards": 401, "audit": 401, "realtime": "expired"}


# --- access removal is live over REST ---------------------------------------------------------


async def test_demotion_and_removal_are_felt_over_rest_within_a_second(stack, audit_url):
    owner, bob = stack.user("owner"), stack.user("bob")
    org = await stack.organization(o=(owner, "owner"), b=(bob, "admin"))
    board = await stack.board(org, owner)
    board_url = f"{stack.boards_url}/v1/boards/{board['board']['id']}"
    # Both kinds of bearer token: the Supabase token (exchanged by the service, cached) and a
    # scope token bob exchanged himself (valid for minutes, carrying his old memberships).
    scope_token = await exchange(stack, bob.token)
    for token in (bob.token, scope_token):  # warm every cache first
        assert (await stack.call("PATCH", board_url, token, {"name": "renamed"}))[0] == 200
        assert (await stack.call("GET", f"{audit_url}/v1/audit/events?organization_id={org}", token))[0] == 200

    member_url = f"{stack.auth_url}/v1/organizations/{org}/members/{bob.id}"
    assert (await stack.call("PUT", member_url, owner.token, {"role": "viewer"}))[0] == 200

    async def writes_refused() -> bool:
        statuses = [(await stack.call("PATCH", board_url, t, {"name": "again"}))[0] for t in (bob.token, scope_token)]
        return statuses == [403, 401]  # the old scope token is stale: exchange again

    await eventually(writes_refused)
    assert (await stack.call("GET", board_url, bob.token))[0] == 200  # a viewer still reads
    status, body = await stack.call("PATCH", board_url, scope_token, {"name": "again"})
    assert body["error"]["reason"] == "scope_stale", body
    fresh = await exchange(stack, bob.token)
    assert (await stack.call("GET", board_url, fresh))[0] == 200

    assert (await stack.call("DELETE", member_url, owner.token))[0] == 204

    async def reads_refused() -> bool:
        boards = [(await stack.call("GET", board_url, t))[0] for t in (bob.token, fresh)]
        audit = (await stack.call("GET", f"{audit_url}/v1/audit/events?organization_id={org}", bob.token))[0]
        return boards == [404, 401] and audit == 403

    await eventually(reads_refused)


# --- a lost membership message ----------------------------------------------------------------


async def test_a_lost_membership_change_still_evicts_within_the_scope_lifetime(make_stack, make_app):
    """realtime never hears of the removal; renewing the scope (every AUTH_SCOPE_TOKEN_TTL, 10 s
    here) re-checks the socket's rooms, so the removed user loses the board anyway."""
    stack = await make_stack(common={"auth_scope_token_ttl": 10})
    server = stack.realtime_app[WS_SERVER]
    dropped: list[str] = []

    async def deaf(user_id: str, version: int) -> None:
        dropped.append(user_id)  # the message is lost on the way to this replica

    owner, bob = stack.user("owner"), stack.user("bob")
    org = await stack.organization(o=(owner, "owner"), b=(bob, "member"))
    board = await stack.board(org, owner)
    b = await stack.client(bob)
    assert (await b.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    server.session_scopes.membership_changed = deaf
    removed_at = time.monotonic()
    status, _ = await stack.call(
        "DELETE", f"{stack.auth_url}/v1/organizations/{org}/members/{bob.id}", stack.tokens.service_role()
    )
    assert status == 204
    await asyncio.sleep(1.0)
    assert dropped == [bob.id] and "board_access_revoked" not in b.received  # really lost
    (revoked,) = await b.wait_for("board_access_revoked", timeout=12)
    assert revoked == {"board_id": board["board"]["id"]}
    assert time.monotonic() - removed_at < 12
    owner_socket = await stack.client(owner)
    column = board["columns"][0]["id"]
    assert (
        await owner_socket.call("task_created", {"board_id": board["board"]["id"], "column_id": column, "title": "t"})
    )["ok"]
    await asyncio.sleep(0.3)
    assert "task_created" not in b.received
