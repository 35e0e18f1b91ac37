"""GET /v1/audit/events: filters, stable keyset pagination, and who may read (CONTRACT §5, §7)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from libs.common.scopes import ScopeSigner

from .conftest import board_event, count_rows, new_id, wait_until


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def events(client, token: str, **params) -> dict:
    response = await client.get("/v1/audit/events", params=params, headers=bearer(token))
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.fixture
async def seeded(audit_client, publisher, db):
    """Org A with two boards, three cards, two users, two correlation ids, old and new events."""
    org, b1, b2 = new_id("org"), new_id("board"), new_id("board")
    old = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    plan = [
        (b1, "card-1", "alice", "corr-1", old),
        (b1, "card-1", "bob", "corr-1", old),
        (b1, "card-2", "alice", "corr-2", None),
        (b2, "card-3", "bob", "corr-2", None),
        (b2, "card-3", "alice", None, None),
        (b2, None, "bob", None, None),
    ]
    sent = []
    for board, task, user, corr, stamp in plan:
        envelope = board_event(org, board, task_id=task, user_id=user, correlation_id=corr, timestamp=stamp)
        await publisher.board(org, envelope)
        sent.append(envelope)
    await wait_until(lambda: count_rows(db, org), lambda n: n == len(plan))
    return org, b1, b2, sent


async def test_each_filter_narrows_to_exactly_the_matching_events(seeded, audit_client, jwks):
    org, b1, b2, sent = seeded
    admin = jwks.token("admin-1", (org, "admin"))

    def ids(body: dict) -> list[str]:
        return [e["event_id"] for e in body["events"]]

    def expected(keep) -> list[str]:
        return [e.event_id for e in reversed(sent) if keep(e)]  # newest first

    everything = await events(audit_client, admin, organization_id=org)
    assert ids(everything) == expected(lambda e: True) and everything["next_cursor"] is None
    first = everything["events"][0]
    assert first["organization_id"] == org and first["action"] == "task_moved"
    assert first["created_at"].endswith("Z") and first["hash"] and "chain_key" not in first

    assert ids(await events(audit_client, admin, organization_id=org, board_id=b1)) == expected(
        lambda e: e.board_id == b1
    )
    assert ids(await events(audit_client, admin, organization_id=org, task_id="card-3")) == expected(
        lambda e: e.data.get("task_id") == "card-3"
    )
    assert ids(await events(audit_client, admin, organization_id=org, user_id="alice")) == expected(
        lambda e: e.user_id == "alice"
    )
    assert ids(await events(audit_client, admin, organization_id=org, correlation_id="corr-2")) == expected(
        lambda e: e.correlation_id == "corr-2"
    )
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert ids(await events(audit_client, admin, organization_id=org, since=since)) == expected(
        lambda e: not e.timestamp.startswith((datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%d"))
    )
    combined = await events(audit_client, admin, organization_id=org, board_id=b2, user_id="bob")
    assert ids(combined) == expected(lambda e: e.board_id == b2 and e.user_id == "bob")


async def test_pages_neither_repeat_nor_skip_while_events_keep_arriving(audit_client, publisher, db, jwks):
    org, board = new_id("org"), new_id("board")
    for n in range(23):
        await publisher.board(org, board_event(org, board, task_id=f"card-{n}"))
    await wait_until(lambda: count_rows(db, org), lambda n: n == 23)
    original = {r["id"] for r in await db.fetch("SELECT id FROM kanban_activity_log WHERE chain_key = $1", org)}
    admin = jwks.token("admin-1", (org, "owner"))

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"organization_id": org, "limit": "5", **({"cursor": cursor} if cursor else {})}
        body = await events(audit_client, admin, **params)
        seen += [e["id"] for e in body["events"]]
        pages += 1
        # Between pages, more events land (newer ids): they must not shift what comes next.
        for n in range(3):
            await publisher.board(org, board_event(org, board, task_id=f"late-{pages}-{n}"))
        await wait_until(lambda: count_rows(db, org), lambda count, p=pages: count == 23 + 3 * p)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == original
    assert seen == sorted(seen, reverse=True)

    newest = await events(audit_client, admin, organization_id=org, limit="1")
    assert newest["events"][0]["id"] > max(original) and newest["next_cursor"] is not None


async def test_who_may_read(seeded, audit_client, jwks, tokens):
    org = seeded[0]
    other = new_id("org")
    allowed = {
        "admin": jwks.token("u-admin", (org, "admin")),
        "owner": jwks.token("u-owner", (org, "owner")),
        "service_role key": tokens.service_role(),
    }
    for who, token in allowed.items():
        for path in ("/v1/audit/events", "/v1/audit/verify"):
            response = await audit_client.get(path, params={"organization_id": org}, headers=bearer(token))
            assert response.status == 200, (who, path, await response.text())

    refused = {
        "member": jwks.token("u-member", (org, "member")),
        "viewer": jwks.token("u-viewer", (org, "viewer")),
        "admin of another organization": jwks.token("u-other", (other, "admin")),
        "no membership": jwks.token("u-none"),
    }
    for who, token in refused.items():
        for path in ("/v1/audit/events", "/v1/audit/verify"):
            response = await audit_client.get(path, params={"organization_id": org}, headers=bearer(token))
            assert response.status == 403, (who, path)
            assert (await response.json())["error"]["code"] == "forbidden"

    # The chain of organization-less security events is for service_role only.
    admin = allowed["admin"]
    response = await audit_client.get("/v1/audit/events", params={"organization_id": ":global"}, headers=bearer(admin))
    assert response.status == 403
    await events(audit_client, tokens.service_role(), organization_id=":global", limit="1")


async def test_unauthenticated_and_bad_tokens_get_401(seeded, audit_client, jwks, tokens):
    org = seeded[0]
    now = int(time.time())
    stranger = ScopeSigner.generate()
    bad = {
        "no header": None,
        "not a JWT": "Bearer not-a-token",
        "Basic scheme": "Basic dXNlcjpwYXNz",
        "expired scope token": "Bearer " + jwks.token("u", (org, "admin"), ttl=-120),
        "scope token of an unknown key": "Bearer " + jwks.token("u", (org, "admin"), signer=stranger),
        "service_role with the wrong secret": "Bearer "
        + jwt.encode({"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 60}, "x" * 40),
        "service_role with a string exp": "Bearer "
        + jwt.encode({"iss": "supabase", "role": "service_role", "iat": now, "exp": str(now + 60)}, tokens.secret),
        "service_role naming its own key": "Bearer "
        + jwt.encode(
            {"iss": "supabase", "role": "service_role", "iat": now, "exp": now + 60},
            tokens.secret,
            headers={"jku": "https://evil.example/keys"},
        ),
    }
    for case, header in bad.items():
        response = await audit_client.get(
            "/v1/audit/events", params={"organization_id": org}, headers={"Authorization": header} if header else {}
        )
        assert response.status == 401, case
        assert (await response.json())["error"]["code"] == "unauthorized", case


async def test_malformed_queries_get_400(seeded, audit_client, tokens):
    org = seeded[0]
    admin = tokens.service_role()
    cases = {
        "missing organization_id": {},
        "organization_id not an id": {"organization_id": "a b"},
        "limit zero": {"organization_id": org, "limit": "0"},
        "limit not a number": {"organization_id": org, "limit": "many"},
        "cursor not ours": {"organization_id": org, "cursor": "abc"},
        "since not a time": {"organization_id": org, "since": "yesterday"},
        "correlation_id with spaces": {"organization_id": org, "correlation_id": "a b"},
    }
    for case, params in cases.items():
        response = await audit_client.get("/v1/audit/events", params=params, headers=bearer(admin))
        assert response.status == 400, case
        assert (await response.json())["error"]["code"] == "invalid_payload", case
    response = await audit_client.get("/v1/audit/verify", headers=bearer(admin))
    assert response.status == 400
    big = await events(audit_client, admin, organization_id=org, limit="5000")  # capped at 1000, not refused
    assert len(big["events"]) == 6


async def test_openapi_documents_the_audit_routes(audit_client):
    doc = await (await audit_client.get("/openapi.json")).json()
    listing = doc["paths"]["/v1/audit/events"]["get"]
    names = {p["name"]: p for p in listing["parameters"]}
    assert names["organization_id"]["required"] is True
    assert {"board_id", "task_id", "user_id", "correlation_id", "since", "limit", "cursor"} <= set(names)
    assert "/v1/audit/verify" in doc["paths"]


async def test_supabase_user_tokens_are_exchanged_at_auth(
    audit_settings, make_app, aiohttp_client, tokens, publisher, db
):
    """A plain Supabase token works too: audit asks the real auth service (over NATS) for its scope;
    auth's refusal of a forged one comes back as a security event in the audit log."""
    auth = await aiohttp_client(make_app("auth", nats_url=audit_settings["nats_url"]))
    auth_url = str(auth.make_url("")).rstrip("/")
    settings = {**audit_settings, "auth_service_url": auth_url, "auth_jwks_url": f"{auth_url}/.well-known/jwks.json"}
    audit = await aiohttp_client(make_app("audit", **settings))

    org = new_id("org")
    owner, admin, member, stranger = (new_id("u") for _ in range(4))
    created = await auth.post("/v1/organizations", json={"id": org, "name": "Acme"}, headers=bearer(tokens.user(owner)))
    assert created.status in (200, 201), await created.text()
    for user, role in ((admin, "admin"), (member, "member")):
        put = await auth.put(
            f"/v1/organizations/{org}/members/{user}", json={"role": role}, headers=bearer(tokens.user(owner))
        )
        assert put.status in (200, 201), await put.text()

    expected = {owner: 200, admin: 200, member: 403, stranger: 403}
    for user, status in expected.items():
        response = await audit.get(
            "/v1/audit/events", params={"organization_id": org}, headers=bearer(tokens.user(user))
        )
        assert response.status == status, (user, await response.text())

    forged = tokens.user(owner).rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    correlation = new_id("forged")
    response = await audit.get(
        "/v1/audit/events",
        params={"organization_id": org},
        headers={**bearer(forged), "X-Correlation-Id": correlation},
    )
    assert response.status == 401
    query = "SELECT * FROM kanban_activity_log WHERE correlation_id = $1"
    refusal = await wait_until(lambda: db.fetchrow(query, correlation))
    assert refusal["action"].startswith("security.") and refusal["stream"] == "SECURITY_EVENTS"
    assert refusal["chain_key"] == ":global" and forged not in str(refusal["details"])
