"""Supabase JWKS handling: rotation without restart, bounded refetching under a flood of unknown
kids, outages, and which keys and URLs are trusted at all."""

from __future__ import annotations

import asyncio
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from libs.common.errors import ApiError
from libs.common.identity import SupabaseVerifier, TokenRejected, check_jwks_url, parse_jwk
from libs.common.settings import ConfigError
from tests.conftest import ISSUER, JWT_SECRET

from .helpers import ec_key, exchange, rsa_key, user_claims


async def test_rotated_key_is_picked_up_without_restart(auth, jwks_server):
    status, _ = await exchange(auth, jwks_server.sign(user_claims(), "ec-1"))
    assert status == 200
    fetched = jwks_server.requests

    jwks_server.keys = {"ec-2": ec_key("ec-2"), "rsa-2": rsa_key("rsa-1")}  # Supabase rotated both
    await asyncio.sleep(0.25)  # the app's refetch cooldown (0.2 s in these tests)
    status, body = await exchange(auth, jwks_server.sign(user_claims(), "ec-2"))
    assert status == 200, body
    status, body = await exchange(auth, jwks_server.sign(user_claims(), "rsa-2"))
    assert status == 200, body
    assert jwks_server.requests == fetched + 1

    # The refreshed set replaced the cached one: the retired key's tokens are refused now.
    token = jwt.encode(user_claims(), ec_key("ec-1"), algorithm="ES256", headers={"kid": "ec-1"})
    await asyncio.sleep(0.25)
    status, body = await exchange(auth, token)
    assert (status, body["error"]["reason"]) == (401, "unknown_key")


async def test_a_flood_of_random_kids_fetches_the_jwks_a_bounded_number_of_times(jwks_server):
    verifier = SupabaseVerifier(issuer=ISSUER, secret=JWT_SECRET, jwks_url=jwks_server.url, jwks_cooldown=30)
    good = jwks_server.sign(user_claims(), "ec-1")
    assert (await verifier.verify(good)).sub
    assert jwks_server.requests == 1

    attacker = ec_key("attacker")
    forged = [
        jwt.encode(user_claims(), attacker, algorithm="ES256", headers={"kid": uuid.uuid4().hex}) for _ in range(1000)
    ]
    results = await asyncio.gather(*(verifier.verify(token) for token in forged), return_exceptions=True)
    assert all(isinstance(r, TokenRejected) and r.reason == "unknown_key" for r in results), results[:3]
    for token in forged[:200]:  # and one after another, not only concurrently
        with pytest.raises(TokenRejected):
            await verifier.verify(token)
    assert jwks_server.requests <= 2, jwks_server.requests
    assert (await verifier.verify(good)).sub  # real users are unaffected
    await verifier.close()


async def test_flood_through_the_service_is_bounded_too(auth_app, aiohttp_client, jwks_server):
    client = await aiohttp_client(auth_app(supabase_jwks_cooldown=30))
    attacker = ec_key("attacker")
    before = jwks_server.requests
    for _ in range(100):
        token = jwt.encode(user_claims(), attacker, algorithm="ES256", headers={"kid": uuid.uuid4().hex})
        status, body = await exchange(client, token)
        assert (status, body["error"]["reason"]) == (401, "unknown_key")
    assert jwks_server.requests - before <= 1


async def test_jwks_outage_is_503_and_recovers(auth_app, aiohttp_client, jwks_server):
    jwks_server.failing = True
    client = await aiohttp_client(auth_app())
    await asyncio.sleep(0.25)
    status, body = await exchange(client, jwks_server.sign(user_claims(), "ec-1"))
    assert status == 503
    assert body["error"] == {
        "code": "unavailable",
        "message": body["error"]["message"],
        "reason": "jwks_unavailable",
    }
    status, _ = await exchange(client, jwt.encode(user_claims(), JWT_SECRET, algorithm="HS256"))
    assert status == 200  # HS256 users do not depend on the JWKS
    jwks_server.failing = False
    await asyncio.sleep(0.25)
    status, _ = await exchange(client, jwks_server.sign(user_claims(), "ec-1"))
    assert status == 200


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://abc.supabase.co/auth/v1/.well-known/jwks.json", True),
        ("http://127.0.0.1:54321/auth/v1/.well-known/jwks.json", True),
        ("http://localhost:54321/jwks.json", True),
        ("http://[::1]:54321/jwks.json", True),
        ("http://abc.supabase.co/auth/v1/.well-known/jwks.json", False),
        ("http://10.0.0.5/jwks.json", False),
        ("ftp://example.com/jwks.json", False),
        ("file:///etc/jwks.json", False),
        ("https:///jwks.json", False),
    ],
)
def test_jwks_url_must_be_https_or_loopback(url, ok):
    if ok:
        assert check_jwks_url(url) == url
    else:
        with pytest.raises(ConfigError, match="SUPABASE_JWKS_URL"):
            check_jwks_url(url)


def test_only_signature_keys_with_a_pinned_algorithm_are_trusted():
    ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec_key("ec-1").public_key(), as_dict=True)
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key("rsa-1").public_key(), as_dict=True)
    assert parse_jwk(ec_jwk | {"kid": "a"}).algorithm == "ES256"
    assert parse_jwk(rsa_jwk | {"kid": "b", "alg": "RS256"}).algorithm == "RS256"
    refused = [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "sym", "alg": "HS256"},  # a published secret is public
        ec_jwk,  # no kid: tokens select keys by kid only
        ec_jwk | {"kid": "c", "use": "enc"},
        ec_jwk | {"kid": "d", "key_ops": ["encrypt"]},
        ec_jwk | {"kid": "e", "alg": "RS256"},  # declared alg contradicts the key type
        rsa_jwk | {"kid": "f", "alg": "PS256"},
        "not a dict",
    ]
    for entry in refused:
        assert parse_jwk(entry) is None, entry
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small = jwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True)
    assert parse_jwk(small | {"kid": "weak"}) is None


def test_verifier_needs_a_key_source_and_an_issuer(service_settings):
    with pytest.raises(ConfigError):
        SupabaseVerifier(issuer=ISSUER)
    settings = service_settings("auth", supabase_jwt_issuer=None, supabase_jwks_url=None)
    with pytest.raises(ConfigError, match="SUPABASE_JWT_ISSUER"):
        SupabaseVerifier.from_settings(settings)
    derived = service_settings(
        "auth", supabase_jwt_issuer=None, supabase_jwks_url="https://ref.supabase.co/auth/v1/.well-known/jwks.json"
    )
    assert SupabaseVerifier.from_settings(derived).issuer == "https://ref.supabase.co/auth/v1"


async def test_unavailable_is_not_a_refusal(jwks_server):
    jwks_server.failing = True
    verifier = SupabaseVerifier(issuer=ISSUER, jwks_url=jwks_server.url)
    with pytest.raises(ApiError) as caught:
        await verifier.verify(jwks_server.sign(user_claims(), "ec-1"))
    assert caught.value.code == "unavailable"
    assert not isinstance(caught.value, TokenRejected)
