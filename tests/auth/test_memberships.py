"""Organizations, divisions and memberships over REST: who may do what, the owner rules,
validation, idempotent creates, and what the token exchange then vouches for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from aiohttp.test_utils import TestClient

from liveboard.seed import DEMO_DIVISION, DEMO_ORG, DEMO_USERS

from .helpers import bearer, exchange


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Org:
    """An organization with one user per role, plus an admin of another organization."""

    id: str
    users: dict[str, str] = field(default_factory=dict)  # role name -> user id
    tokens: dict[str, str] = field(default_factory=dict)  # role name -> bearer token


async def call(client: TestClient, method: str, path: str, token: str, json: object = None):
    response = await client.request(method, path, headers=bearer(token), json=json)
    body = await response.json() if response.status != 204 else None
    return response.status, body


async def setup_org(client: TestClient, tokens) -> Org:
    service = tokens.service_role()
    org = Org(new_id("org"))
    org.tokens["service_role"] = service
    assert (await call(client, "POST", "/v1/organizations", service, {"id": org.id, "name": "Acme"}))[0] == 201
    path = f"/v1/organizations/{org.id}"
    assert (await call(client, "POST", f"{path}/divisions", service, {"id": "d1", "name": "One"}))[0] == 201
    for role in ("owner", "admin", "member", "viewer"):
        user = new_id(role)
        org.users[role] = user
        org.tokens[role] = tokens.user(user)
        status, body = await call(client, "PUT", f"{path}/members/{user}", service, {"role": role})
        assert status == 201, body
    other = new_id("other-org")
    assert (await call(client, "POST", "/v1/organizations", service, {"id": other, "name": "Other"}))[0] == 201
    org.users["other_admin"] = new_id("other-admin")
    org.tokens["other_admin"] = tokens.user(org.users["other_admin"])
    status, _ = await call(
        client, "PUT", f"/v1/organizations/{other}/members/{org.users['other_admin']}", service, {"role": "admin"}
    )
    assert status == 201
    org.users["stranger"] = new_id("stranger")
    org.tokens["stranger"] = tokens.user(org.users["stranger"])
    return org


ALLOWED = ("service_role", "owner", "admin")
DENIED = ("member", "viewer", "other_admin", "stranger")


def _route(name: str, org: Org) -> tuple[str, str, object, int]:
    path = f"/v1/organizations/{org.id}"
    return {
        "create_division": ("POST", f"{path}/divisions", {"name": "New division"}, 201),
        "put_member": ("PUT", f"{path}/members/{new_id('newcomer')}", {"role": "member", "divisions": ["d1"]}, 201),
        "delete_member": ("DELETE", f"{path}/members/{org.users['member']}", None, 204),
        "list_members": ("GET", f"{path}/members", None, 200),
    }[name]


@pytest.mark.parametrize("caller", ALLOWED + DENIED)
@pytest.mark.parametrize("route", ["create_division", "put_member", "delete_member", "list_members"])
async def test_authorization_matrix(route, caller, auth, tokens):
    org = await setup_org(auth, tokens)
    method, path, body, ok_status = _route(route, org)
    status, answer = await call(auth, method, path, org.tokens[caller], body)
    if caller in ALLOWED:
        assert status == ok_status, answer
    else:
        assert status == 403, answer
        assert answer["error"] == {
            "code": "forbidden",
            "message": answer["error"]["message"],
            "reason": "not_org_admin",
        }
        # Nothing happened: the member is still there.
        status, listing = await call(auth, "GET", f"/v1/organizations/{org.id}/members", tokens.service_role())
        assert org.users["member"] in {m["user_id"] for m in listing["members"]}


async def test_every_route_wants_a_valid_token(auth, tokens):
    org = await setup_org(auth, tokens)
    anon = tokens.user(role="anon")
    for route in ("create_division", "put_member", "delete_member", "list_members"):
        method, path, body, _ = _route(route, org)
        for headers in ({}, bearer(anon), bearer("garbage")):
            response = await auth.request(method, path, headers=headers, json=body)
            assert response.status == 401, (route, headers)
    for method, path in (("POST", "/v1/organizations"), ("GET", "/v1/organizations")):
        response = await auth.request(method, path, json={"name": "x"})
        assert response.status == 401


async def test_divisions_listing_is_for_members(auth, tokens):
    org = await setup_org(auth, tokens)
    for caller in ("service_role", "owner", "admin", "member", "viewer"):
        status, body = await call(auth, "GET", f"/v1/organizations/{org.id}/divisions", org.tokens[caller])
        assert status == 200
        assert [d["id"] for d in body["divisions"]] == ["d1"]
    for caller in ("other_admin", "stranger"):
        status, body = await call(auth, "GET", f"/v1/organizations/{org.id}/divisions", org.tokens[caller])
        assert (status, body["error"]["reason"]) == (403, "not_member")


async def test_admin_cannot_grant_change_or_remove_an_owner(auth, tokens):
    org = await setup_org(auth, tokens)
    admin = org.tokens["admin"]
    members = f"/v1/organizations/{org.id}/members"
    for method, path, body in (
        ("PUT", f"{members}/{new_id('x')}", {"role": "owner"}),
        ("PUT", f"{members}/{org.users['admin']}", {"role": "owner"}),  # nor promote itself
        ("PUT", f"{members}/{org.users['owner']}", {"role": "admin"}),
        ("PUT", f"{members}/{org.users['owner']}", {"role": "owner", "divisions": ["d1"]}),
        ("DELETE", f"{members}/{org.users['owner']}", None),
    ):
        status, answer = await call(auth, method, path, admin, body)
        assert (status, answer["error"]["reason"]) == (403, "owner_required"), (method, path, body)
    # Admins do manage everyone else, admins included.
    status, _ = await call(auth, "PUT", f"{members}/{org.users['viewer']}", admin, {"role": "admin"})
    assert status == 200
    status, _ = await call(auth, "PUT", f"{members}/{org.users['viewer']}", admin, {"role": "viewer"})
    assert status == 200


async def test_the_last_owner_stays(auth, tokens):
    org = await setup_org(auth, tokens)
    members = f"/v1/organizations/{org.id}/members"
    owner, owner_id = org.tokens["owner"], org.users["owner"]
    for token in (owner, org.tokens["service_role"]):
        status, body = await call(auth, "PUT", f"{members}/{owner_id}", token, {"role": "admin"})
        assert (status, body["error"]["code"], body["error"]["reason"]) == (409, "conflict", "last_owner")
        status, body = await call(auth, "DELETE", f"{members}/{owner_id}", token)
        assert (status, body["error"]["reason"]) == (409, "last_owner")
    # With a second owner, the first may step down.
    status, _ = await call(auth, "PUT", f"{members}/{org.users['admin']}", owner, {"role": "owner"})
    assert status == 200
    status, body = await call(auth, "PUT", f"{members}/{owner_id}", owner, {"role": "member"})
    assert status == 200, body
    status, body = await call(auth, "DELETE", f"{members}/{org.users['admin']}", org.tokens["admin"])
    assert (status, body["error"]["reason"]) == (409, "last_owner")


async def test_membership_divisions_must_exist_in_that_organization(auth, tokens):
    org = await setup_org(auth, tokens)
    service = tokens.service_role()
    path = f"/v1/organizations/{org.id}/members/{new_id('u')}"
    status, body = await call(auth, "PUT", path, service, {"role": "member", "divisions": ["d1", "nope"]})
    assert (status, body["error"]["code"]) == (400, "invalid_payload")
    assert "nope" in body["error"]["message"]
    other = new_id("org")
    await call(auth, "POST", "/v1/organizations", service, {"id": other, "name": "Other"})
    await call(auth, "POST", f"/v1/organizations/{other}/divisions", service, {"id": "only-there", "name": "X"})
    status, body = await call(auth, "PUT", path, service, {"role": "member", "divisions": ["only-there"]})
    assert status == 400
    status, body = await call(auth, "PUT", path, service, {"role": "member", "divisions": ["d1", "d1"]})
    assert (status, body["divisions"]) == (201, ["d1"])
    status, body = await call(auth, "PUT", path, service, {"role": "member"})
    assert (status, body["divisions"]) == (200, None)  # omitted = every division


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/members/{user}", {"role": "superuser"}),
        ("PUT", "/members/{user}", {"role": "member", "divisions": []}),
        ("PUT", "/members/{user}", {"role": "member", "divisions": "d1"}),
        ("PUT", "/members/{user}", {"role": "member", "divisions": ["bad id"]}),
        ("PUT", "/members/{user}", {"role": "member", "email": "not-an-email"}),
        ("PUT", "/members/{user}", {"role": "member", "unknown": 1}),
        ("PUT", "/members/{user}", ["member"]),
        ("PUT", "/members/{user}", {}),
        ("PUT", "/members/bad.id", {"role": "member"}),
        ("PUT", "/members/" + "x" * 65, {"role": "member"}),
        ("POST", "/divisions", {"name": ""}),
        ("POST", "/divisions", {"name": "ok", "id": "has space"}),
        ("POST", "/divisions", {"name": 7}),
    ],
)
async def test_bad_bodies_and_ids_are_400(method, suffix, body, auth, tokens):
    org = new_id("org")
    service = tokens.service_role()
    await call(auth, "POST", "/v1/organizations", service, {"id": org, "name": "Validation"})
    status, answer = await call(auth, method, f"/v1/organizations/{org}{suffix.format(user='u1')}", service, body)
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_payload"


async def test_not_json_and_bad_org_ids_are_400(auth, tokens):
    service = tokens.service_role()
    response = await auth.post("/v1/organizations", data=b"{nope", headers=bearer(service))
    assert response.status == 400
    for org_id in ("a.b", "x" * 65, "sp ace"):
        status, body = await call(auth, "POST", "/v1/organizations", service, {"id": org_id, "name": "n"})
        assert (status, body["error"]["code"]) == (400, "invalid_payload"), org_id
    status, _ = await call(auth, "GET", "/v1/organizations/a.b/members", service)
    assert status == 400


async def test_creates_are_idempotent_on_same_content_and_409_on_different(auth, tokens):
    service = tokens.service_role()
    org = new_id("org")
    first = await call(auth, "POST", "/v1/organizations", service, {"id": org, "name": "Same"})
    again = await call(auth, "POST", "/v1/organizations", service, {"id": org, "name": "Same"})
    assert (first[0], again[0]) == (201, 200)
    assert first[1] == again[1]
    status, body = await call(auth, "POST", "/v1/organizations", service, {"id": org, "name": "Different"})
    assert (status, body["error"]["code"]) == (409, "conflict")

    path = f"/v1/organizations/{org}/divisions"
    first = await call(auth, "POST", path, service, {"id": "div", "name": "D"})
    again = await call(auth, "POST", path, service, {"id": "div", "name": "D"})
    assert (first[0], again[0], first[1] == again[1]) == (201, 200, True)
    status, body = await call(auth, "POST", path, service, {"id": "div", "name": "E"})
    assert (status, body["error"]["code"]) == (409, "conflict")

    status, body = await call(auth, "POST", "/v1/organizations", service, {"name": "Generated id"})
    assert status == 201 and uuid.UUID(body["id"])
    status, _ = await call(auth, "POST", f"/v1/organizations/{new_id('missing')}/divisions", service, {"name": "x"})
    assert status == 404


async def test_a_user_who_creates_an_organization_owns_it(auth, tokens):
    alice, bob = new_id("alice"), new_id("bob")
    org = new_id("org")
    alice_token = tokens.user(alice, email="alice@example.com")
    status, body = await call(auth, "POST", "/v1/organizations", alice_token, {"id": org, "name": "Alice's"})
    assert (status, body["id"], body["name"]) == (201, org, "Alice's")
    status, _ = await call(auth, "POST", "/v1/organizations", alice_token, {"id": org, "name": "Alice's"})
    assert status == 200
    # Someone else asking for the same id learns only that it is taken.
    status, body = await call(auth, "POST", "/v1/organizations", tokens.user(bob), {"id": org, "name": "Alice's"})
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert "Alice" not in body["error"]["message"]

    status, body = await call(auth, "GET", f"/v1/organizations/{org}/members", alice_token)
    assert status == 200
    assert body["members"] == [
        {
            "organization_id": org,
            "user_id": alice,
            "role": "owner",
            "divisions": None,
            "email": "alice@example.com",
            "created_at": body["members"][0]["created_at"],
            "updated_at": body["members"][0]["updated_at"],
        }
    ]
    status, body = await call(auth, "GET", "/v1/organizations", alice_token)
    assert [(o["id"], o["role"], o["divisions"]) for o in body["organizations"]] == [(org, "owner", None)]
    status, body = await call(auth, "GET", "/v1/organizations", tokens.user(bob))
    assert body["organizations"] == []
    status, body = await call(auth, "GET", "/v1/organizations", tokens.service_role())
    assert org in {o["id"] for o in body["organizations"]}


async def test_service_role_creates_ownerless_organizations(auth, tokens):
    org = new_id("org")
    service = tokens.service_role()
    await call(auth, "POST", "/v1/organizations", service, {"id": org, "name": "Ownerless"})
    status, body = await call(auth, "GET", f"/v1/organizations/{org}/members", service)
    assert (status, body["members"]) == (200, [])
    status, _ = await call(auth, "GET", f"/v1/organizations/{new_id('missing')}/members", service)
    assert status == 404
    status, _ = await call(auth, "DELETE", f"/v1/organizations/{org}/members/nobody", service)
    assert status == 404


async def test_email_is_kept_when_omitted_and_cleared_by_null(auth, tokens):
    org = await setup_org(auth, tokens)
    service = tokens.service_role()
    path = f"/v1/organizations/{org.id}/members/{org.users['member']}"
    status, body = await call(auth, "PUT", path, service, {"role": "member", "email": "m@example.com"})
    assert (status, body["email"]) == (200, "m@example.com")
    status, body = await call(auth, "PUT", path, service, {"role": "viewer"})
    assert (body["role"], body["email"]) == ("viewer", "m@example.com")
    status, body = await call(auth, "PUT", path, service, {"role": "viewer", "email": None})
    assert body["email"] is None


async def test_the_exchange_vouches_for_current_memberships(auth, tokens):
    org = await setup_org(auth, tokens)
    service = tokens.service_role()
    member = org.users["member"]
    token = org.tokens["member"]
    status, body = await exchange(auth, token)
    assert status == 200
    assert body["claims"]["organizations"] == [{"id": org.id, "role": "member", "divisions": None}]
    await call(
        auth, "PUT", f"/v1/organizations/{org.id}/members/{member}", service, {"role": "viewer", "divisions": ["d1"]}
    )
    status, body = await exchange(auth, token)
    assert body["claims"]["organizations"] == [{"id": org.id, "role": "viewer", "divisions": ["d1"]}]
    await call(auth, "DELETE", f"/v1/organizations/{org.id}/members/{member}", service)
    status, body = await exchange(auth, token)
    assert body["claims"]["organizations"] == []


async def test_the_dev_seed_requests_succeed_and_are_repeatable(auth, tokens):
    """The exact requests ``liveboard dev`` seeds with (liveboard/seed.py), twice."""
    service = tokens.service_role()
    steps = [
        ("POST", "/v1/organizations", {"id": DEMO_ORG, "name": "Demo organization"}),
        ("POST", f"/v1/organizations/{DEMO_ORG}/divisions", {"id": DEMO_DIVISION, "name": "Demo division"}),
    ] + [
        ("PUT", f"/v1/organizations/{DEMO_ORG}/members/{user.id}", {"role": user.role, "email": user.email})
        for user in DEMO_USERS
    ]
    for _ in range(2):
        for method, path, body in steps:
            status, answer = await call(auth, method, path, service, body)
            assert status < 300, (method, path, status, answer)
    for user in DEMO_USERS:
        status, body = await exchange(auth, tokens.user(user.id, email=user.email))
        assert status == 200
        assert {"id": DEMO_ORG, "role": user.role, "divisions": None} in body["claims"]["organizations"]
        assert body["claims"]["email"] == user.email
