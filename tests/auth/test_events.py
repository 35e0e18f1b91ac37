"""What auth announces on NATS, seen by real subscribers: membership changes on core NATS,
refusals as security events in JetStream, and the exchange over NATS request/reply."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import orjson
import pytest
from nats.js.api import DeliverPolicy

from libs.common.correlation import correlation_id_var
from libs.common.errors import ApiError
from libs.common.events import Envelope
from libs.common.identity import ScopeClient
from libs.common.subjects import AUTH_EXCHANGE, SECURITY_STREAM, membership_changed

from .helpers import bearer, hs256, user_claims


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def nc(nats_url):
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@asynccontextmanager
async def security_feed(nc, subject: str) -> AsyncIterator:
    """Events arriving on ``subject`` in SECURITY_EVENTS from now on; ``next(cid)`` finds one by correlation id."""
    sub = await nc.jetstream().subscribe(
        subject, stream=SECURITY_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )

    async def find(correlation_id: str, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await sub.next_msg(timeout=deadline - time.monotonic())
            envelope = Envelope.from_json(msg.data)
            if envelope.correlation_id == correlation_id:
                return msg, envelope
        raise AssertionError(f"no event with correlation id {correlation_id} on {subject}")

    try:
        yield find
    finally:
        await sub.unsubscribe()


async def test_membership_changes_are_announced_per_user(auth, tokens, nc):
    service = tokens.service_role()
    org, user = new_id("org"), new_id("user")
    await auth.post("/v1/organizations", headers=bearer(service), json={"id": org, "name": "Events"})
    await auth.post(f"/v1/organizations/{org}/divisions", headers=bearer(service), json={"id": "d1", "name": "D"})
    sub = await nc.subscribe(membership_changed(user))
    path = f"/v1/organizations/{org}/members/{user}"

    response = await auth.put(path, headers=bearer(service), json={"role": "member", "divisions": ["d1"]})
    assert response.status == 201
    msg = await sub.next_msg(timeout=5)
    assert orjson.loads(msg.data) == {
        "user_id": user,
        "organization_id": org,
        "role": "member",
        "divisions": ["d1"],
        "change": "upserted",
        "version": 1,
    }

    await auth.put(path, headers=bearer(service), json={"role": "member", "divisions": ["d1"]})  # no change
    response = await auth.put(path, headers=bearer(service), json={"role": "viewer"})
    msg = await sub.next_msg(timeout=5)
    assert orjson.loads(msg.data)["role"] == "viewer"  # the unchanged PUT announced nothing
    assert orjson.loads(msg.data)["divisions"] is None
    assert orjson.loads(msg.data)["version"] == 2  # every announced change bumps the user's version

    response = await auth.delete(path, headers=bearer(service))
    assert response.status == 204
    msg = await sub.next_msg(timeout=5)
    assert orjson.loads(msg.data) == {
        "user_id": user,
        "organization_id": org,
        "role": None,
        "divisions": None,
        "change": "removed",
        "version": 3,
    }
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.3)


async def test_creating_an_organization_announces_the_new_owner(auth, tokens, nc):
    user, org = new_id("creator"), new_id("org")
    sub = await nc.subscribe(membership_changed(user))
    await auth.post("/v1/organizations", headers=bearer(tokens.user(user)), json={"id": org, "name": "Mine"})
    msg = await sub.next_msg(timeout=5)
    assert orjson.loads(msg.data) == {
        "user_id": user,
        "organization_id": org,
        "role": "owner",
        "divisions": None,
        "change": "upserted",
        "version": 1,
    }


async def test_a_refused_token_becomes_a_security_event(auth, nc):
    cid = new_id("cid")
    token = hs256(user_claims(), secret="wrong-secret-" + "z" * 40)
    async with security_feed(nc, "security.auth.bad_signature") as find:
        response = await auth.post("/v1/token/exchange", headers={**bearer(token), "X-Correlation-Id": cid})
        assert response.status == 401
        msg, envelope = await find(cid)
    assert envelope.event_type == "security.bad_signature"
    assert envelope.user_id is None  # the signature did not verify: nobody is known
    assert envelope.data["ip"] == "127.0.0.1"
    assert envelope.data["reason"] == "bad_signature"
    assert envelope.data["path"] == "/v1/token/exchange"
    assert token.encode() not in msg.data
    assert token.split(".")[2].encode() not in msg.data
    assert "traceparent" in (msg.headers or {})


async def test_an_expired_but_genuine_token_names_its_user(auth, nc):
    cid, user = new_id("cid"), new_id("user")
    token = hs256(user_claims(sub=user, exp=int(time.time()) - 600, iat=int(time.time()) - 4000))
    async with security_feed(nc, "security.auth.expired") as find:
        await auth.post("/v1/token/exchange", headers={**bearer(token), "X-Correlation-Id": cid})
        _, envelope = await find(cid)
    assert envelope.user_id == user


async def test_a_forbidden_request_becomes_a_security_event_with_user_and_organization(auth, tokens, nc):
    service, org, intruder = tokens.service_role(), new_id("org"), new_id("intruder")
    await auth.post("/v1/organizations", headers=bearer(service), json={"id": org, "name": "Guarded"})
    cid = new_id("cid")
    async with security_feed(nc, "security.auth.not_org_admin") as find:
        response = await auth.get(
            f"/v1/organizations/{org}/members", headers={**bearer(tokens.user(intruder)), "X-Correlation-Id": cid}
        )
        assert response.status == 403
        _, envelope = await find(cid)
    assert envelope.user_id == intruder
    assert envelope.data["organization_id"] == org
    assert envelope.data["path"] == f"/v1/organizations/{org}/members"


async def test_exchange_over_nats_request_reply(auth, tokens, nc):
    user = new_id("user")
    reply = await nc.request(AUTH_EXCHANGE, orjson.dumps({"token": tokens.user(user)}), timeout=5)
    answer = orjson.loads(reply.data)
    assert answer["ok"] is True
    assert set(answer["data"]) == {"scope_token", "expires_at", "claims"}
    assert answer["data"]["claims"]["sub"] == user

    for bad in (b"not json", orjson.dumps({"token": 5}), orjson.dumps(["x"])):
        answer = orjson.loads((await nc.request(AUTH_EXCHANGE, bad, timeout=5)).data)
        assert answer == {"ok": False, "error": {**answer["error"], "code": "invalid_payload"}}


async def test_a_refusal_over_nats_carries_the_callers_ip_and_path(auth, tokens, nc):
    cid = new_id("cid")
    request = {"token": tokens.service_role(), "ip": "203.0.113.9", "path": "socket.io:/workspace"}
    async with security_feed(nc, "security.auth.service_role_not_user") as find:
        reply = await nc.request(AUTH_EXCHANGE, orjson.dumps(request), timeout=5, headers={"Correlation-Id": cid})
        answer = orjson.loads(reply.data)
        assert answer["ok"] is False
        assert answer["error"]["code"] == "unauthorized"
        assert answer["error"]["reason"] == "service_role_not_user"
        _, envelope = await find(cid)
    assert (envelope.data["ip"], envelope.data["path"]) == ("203.0.113.9", "socket.io:/workspace")


async def test_two_replicas_answer_each_request_once_queue_group(auth_app, aiohttp_client, tokens, nc):
    await aiohttp_client(auth_app())
    await aiohttp_client(auth_app())
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(AUTH_EXCHANGE, orjson.dumps({"token": tokens.user()}), reply=inbox)
    await sub.next_msg(timeout=5)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.3)


async def test_scope_client_forwards_the_end_users_ip_over_nats(auth, nc):
    cid = new_id("cid")
    token = hs256(user_claims(aud="anon"))
    correlation_id_var.set(cid)  # the request's correlation id travels in the NATS headers
    async with security_feed(nc, "security.auth.bad_audience") as find:
        async with ScopeClient("http://127.0.0.1:9", nats=nc) as client:
            with pytest.raises(ApiError):
                await client.scope_for(token, ip="198.51.100.7", path="socket.io:/workspace connect")
        _, envelope = await find(cid)
    assert (envelope.data["ip"], envelope.data["path"]) == ("198.51.100.7", "socket.io:/workspace connect")
    assert envelope.correlation_id == cid
