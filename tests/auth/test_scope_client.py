"""``ScopeClient`` against a real auth app: both transports, caching (counted at auth), expiry,
invalidation, single-flight, the LRU bound, and errors that carry auth's reason."""

from __future__ import annotations

import asyncio
import time
import uuid

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.errors import ApiError
from libs.common.identity import ScopeClient
from libs.common.scopes import ScopeVerifier
from libs.common.subjects import AUTH_EXCHANGE

from .helpers import hs256, user_claims


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def base_url(client) -> str:
    return str(client.server.make_url("/")).rstrip("/")


async def http_exchanges(client) -> float:
    """How many exchanges auth served over HTTP, from its own /metrics."""
    text = await (await client.get("/metrics")).text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "http_requests"
        for sample in family.samples
        if sample.name == "http_requests_total" and sample.labels.get("route") == "/v1/token/exchange"
    )


@pytest.fixture
async def nc(nats_url):
    client = await nats.connect(nats_url)
    yield client
    await client.close()


@pytest.fixture
async def nats_requests(nc):
    """Counts every ``auth.v1.exchange`` request on the bus (a plain subscriber sees them all)."""
    seen: list[bytes] = []

    async def count(msg) -> None:
        seen.append(msg.data)

    sub = await nc.subscribe(AUTH_EXCHANGE, cb=count)
    yield seen
    await sub.unsubscribe()


async def test_http_path_caches_per_token(auth, tokens):
    user = new_id("user")
    token = tokens.user(user)
    async with ScopeClient(base_url(auth)) as client:
        before = await http_exchanges(auth)
        scope_token, scope = await client.scope_for(token)
        assert scope.sub == user and scope.organizations == ()
        again_token, again = await client.scope_for(token)
        assert (again_token, again) == (scope_token, scope)
        assert await http_exchanges(auth) - before == 1
        assert (client.exchanges, client.hits) == (1, 1)
        other = tokens.user(user)  # another token of the same user is another cache entry
        await client.scope_for(other)
        assert await http_exchanges(auth) - before == 2


async def test_nats_path_caches_per_token(auth, tokens, nc, nats_requests):
    token = tokens.user(new_id("user"))
    async with ScopeClient("http://127.0.0.1:9", nats=nc) as client:  # no HTTP: the URL goes nowhere
        for _ in range(5):
            _, scope = await client.scope_for(token)
        await nc.flush()
        assert len(nats_requests) == 1
        assert scope.expires_at > time.time()


async def test_concurrent_calls_share_one_exchange(auth, tokens, nc, nats_requests):
    token = tokens.user(new_id("user"))
    async with ScopeClient(base_url(auth), nats=nc) as client:
        results = await asyncio.gather(*(client.scope_for(token) for _ in range(50)))
        assert len({scope_token for scope_token, _ in results}) == 1
        assert client.exchanges == 1
    await nc.flush()
    assert len(nats_requests) == 1


async def test_entries_expire_before_the_scope_token_does(auth, tokens):
    # A Supabase token expiring in 4 s gives a scope token expiring then; with a 2 s margin the
    # entry is fresh for about 2 s.
    token = hs256(user_claims(exp=int(time.time()) + 4))
    async with ScopeClient(base_url(auth), margin=2.0) as client:
        first, _ = await client.scope_for(token)
        await client.scope_for(token)
        assert client.exchanges == 1
        await asyncio.sleep(2.1)
        await client.scope_for(token)
        assert client.exchanges == 2


async def test_invalidate_user_drops_only_that_users_entries(auth, tokens, nc):
    alice, bob = new_id("alice"), new_id("bob")
    alice_tokens = [tokens.user(alice), tokens.user(alice)]
    bob_token = tokens.user(bob)
    async with ScopeClient(base_url(auth), nats=nc) as client:
        for token in [*alice_tokens, bob_token]:
            await client.scope_for(token)
        assert client.exchanges == 3
        assert client.invalidate_user(alice) == 2
        assert client.invalidate_user(alice) == 0
        await client.scope_for(bob_token)
        assert client.exchanges == 3
        await client.scope_for(alice_tokens[0])
        assert client.exchanges == 4


async def test_invalidation_during_an_exchange_is_not_cached_stale(auth, tokens, nc):
    user = new_id("user")
    token = tokens.user(user)
    async with ScopeClient(base_url(auth), nats=nc) as client:
        pending = asyncio.create_task(client.scope_for(token))
        await asyncio.sleep(0)  # the exchange is in flight
        client.invalidate_user(user)
        await pending
        await client.scope_for(token)
        assert client.exchanges == 2


async def test_membership_change_is_seen_after_invalidation(auth, tokens, nc):
    service, org, user = tokens.service_role(), new_id("org"), new_id("user")
    auth_headers = {"Authorization": f"Bearer {service}"}
    await auth.post("/v1/organizations", headers=auth_headers, json={"id": org, "name": "Org"})
    token = tokens.user(user)
    async with ScopeClient(base_url(auth), nats=nc) as client:
        _, scope = await client.scope_for(token)
        assert not scope.can_read(org)
        await auth.put(f"/v1/organizations/{org}/members/{user}", headers=auth_headers, json={"role": "viewer"})
        assert not (await client.scope_for(token))[1].can_read(org)  # cached until told
        client.invalidate_user(user)
        _, scope = await client.scope_for(token)
        assert scope.can_read(org) and not scope.can_write(org)


async def test_the_cache_is_a_bounded_lru(auth, tokens):
    async with ScopeClient(base_url(auth), max_entries=3) as client:
        all_tokens = [tokens.user(new_id("u")) for _ in range(5)]
        for token in all_tokens:
            await client.scope_for(token)
        assert len(client) == 3
        await client.scope_for(all_tokens[-1])  # newest: still cached
        assert client.exchanges == 5
        await client.scope_for(all_tokens[0])  # oldest: evicted
        assert client.exchanges == 6


@pytest.mark.parametrize("transport", ["http", "nats"])
async def test_refusals_carry_auths_reason(transport, auth, tokens, nc):
    async with ScopeClient(base_url(auth), nats=nc if transport == "nats" else None) as client:
        for token, reason in (
            (tokens.service_role(), "service_role_not_user"),
            (hs256(user_claims(role="anon")), "anon_role"),
            ("not-a-jwt", "malformed"),
        ):
            with pytest.raises(ApiError) as caught:
                await client.scope_for(token)
            assert (caught.value.code, caught.value.details["reason"]) == ("unauthorized", reason)
        assert len(client) == 0


async def test_falls_back_to_http_when_no_auth_replica_answers_on_nats(auth, tokens, private_nats):
    lonely = await nats.connect(private_nats.admin_url)  # a NATS without any auth replica
    try:
        async with ScopeClient(base_url(auth), nats=lonely, timeout=2) as client:
            _, scope = await client.scope_for(tokens.user("fallback-user"))
            assert scope.sub == "fallback-user"
    finally:
        await lonely.close()


async def test_unreachable_auth_is_unavailable():
    async with ScopeClient("http://127.0.0.1:9", timeout=1) as client:
        with pytest.raises(ApiError) as caught:
            await client.scope_for("anything")
        assert caught.value.code == "unavailable"


async def test_scope_tokens_can_be_verified_by_the_client(auth, tokens):
    verifier = ScopeVerifier(f"{base_url(auth)}/.well-known/jwks.json")
    async with ScopeClient(base_url(auth), verifier=verifier) as client:
        _, scope = await client.scope_for(tokens.user("verified-user"))
        assert scope.sub == "verified-user"
        assert verifier.fetches == 1
