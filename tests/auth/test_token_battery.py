"""Hostile and broken Supabase tokens, each refused by ``POST /v1/token/exchange`` with 401 and
its own reason; and the good ones (HS256 with a kid, ES256, RS256) accepted."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import jwt
import pytest

from tests.conftest import ISSUER, JWT_SECRET

from .helpers import JwksServer, b64, ec_key, exchange, hs256, public_pem, raw_token, rsa_key, user_claims


def now() -> int:
    """Evaluated when a case runs, not at collection (a full suite may run minutes later)."""
    return int(time.time())


SECRET = JWT_SECRET.encode()


def _confusion(server: JwksServer) -> str:
    """HS256 "signed" with the JWKS public key as the HMAC secret, naming that key's kid."""
    return raw_token({"alg": "HS256", "typ": "JWT", "kid": "ec-1"}, user_claims(), secret=public_pem(ec_key("ec-1")))


def _embedded_jwk(server: JwksServer) -> str:
    attacker = ec_key("attacker")
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    return jwt.encode(user_claims(), attacker, algorithm="ES256", headers={"kid": "ec-1", "jwk": jwk})


def _tampered(server: JwksServer) -> str:
    head, _, sig = hs256(user_claims(sub="victim")).split(".")
    return f"{head}.{b64(json.dumps(user_claims(sub='attacker')))}.{sig}"


def _service_role(server: JwksServer) -> str:
    return hs256({"iss": "supabase", "ref": "liveboard-dev", "role": "service_role", "iat": now(), "exp": now() + 3600})


# (case id, token factory, expected reason)
CASES: list[tuple[str, Callable[[JwksServer], str], str]] = [
    ("alg-none", lambda s: raw_token({"alg": "none", "typ": "JWT"}, user_claims()), "alg_none"),
    ("alg-None-mixed-case", lambda s: raw_token({"alg": "None"}, user_claims()), "alg_none"),
    ("alg-confusion-hs256-with-jwks-public-key", _confusion, "algorithm_mismatch"),
    ("es256-header-on-rsa-key", lambda s: _es_on_rsa(s), "algorithm_mismatch"),
    ("rs256-header-on-ec-key", lambda s: _rs_on_ec(s), "algorithm_mismatch"),
    (
        "unsupported-alg-hs512",
        lambda s: raw_token({"alg": "HS512"}, user_claims()),
        "unsupported_algorithm",
    ),
    (
        "unsupported-alg-ps256",
        lambda s: raw_token({"alg": "PS256", "kid": "rsa-1"}, user_claims()),
        "unsupported_algorithm",
    ),
    ("crit-unknown", lambda s: hs256(user_claims(), crit=["exp"]), "unknown_crit"),
    ("crit-b64", lambda s: hs256(user_claims(), crit=["b64"], b64=False), "unknown_crit"),
    ("jku-header", lambda s: hs256(user_claims(), jku="https://evil.example/jwks.json"), "forbidden_header"),
    ("x5u-header", lambda s: hs256(user_claims(), x5u="https://evil.example/cert.pem"), "forbidden_header"),
    ("embedded-jwk", _embedded_jwk, "forbidden_header"),
    ("x5c-header", lambda s: hs256(user_claims(), x5c=["MIIB"]), "forbidden_header"),
    ("over-8-KiB", lambda s: hs256(user_claims(padding="x" * 9000)), "token_too_large"),
    (
        "anon-key",
        lambda s: hs256({"iss": "supabase", "ref": "liveboard-dev", "role": "anon", "iat": now(), "exp": now() + 3600}),
        "anon_role",
    ),
    ("anon-role-user-shape", lambda s: hs256(user_claims(role="anon")), "anon_role"),
    ("expired", lambda s: hs256(user_claims(exp=now() - 120, iat=now() - 3600)), "expired"),
    ("nbf-in-future", lambda s: hs256(user_claims(nbf=now() + 3600)), "not_yet_valid"),
    ("iat-in-future", lambda s: hs256(user_claims(iat=now() + 3600, exp=now() + 7200)), "not_yet_valid"),
    ("aud-wrong", lambda s: hs256(user_claims(aud="anon")), "bad_audience"),
    ("aud-list-without-ours", lambda s: hs256(user_claims(aud=["other", "more"])), "bad_audience"),
    ("aud-not-a-string", lambda s: hs256(user_claims(aud=7)), "bad_audience"),
    ("iss-longer-with-same-prefix", lambda s: hs256(user_claims(iss=ISSUER + "x")), "bad_issuer"),
    ("iss-prefix-only", lambda s: hs256(user_claims(iss=ISSUER[:-3])), "bad_issuer"),
    ("iss-other-project", lambda s: hs256(user_claims(iss="https://other.supabase.co/auth/v1")), "bad_issuer"),
    ("sub-missing", lambda s: hs256({k: v for k, v in user_claims().items() if k != "sub"}), "missing_claim"),
    ("exp-missing", lambda s: hs256({k: v for k, v in user_claims().items() if k != "exp"}), "missing_claim"),
    ("aud-missing", lambda s: hs256({k: v for k, v in user_claims().items() if k != "aud"}), "missing_claim"),
    ("iss-missing", lambda s: hs256({k: v for k, v in user_claims().items() if k != "iss"}), "missing_claim"),
    ("exp-as-string", lambda s: hs256(user_claims(exp=str(now() + 3600))), "bad_claim"),
    ("iat-as-string", lambda s: hs256(user_claims(iat=str(now()))), "bad_claim"),
    ("nbf-as-string", lambda s: hs256(user_claims(nbf=str(now() - 10))), "bad_claim"),
    ("exp-as-bool", lambda s: hs256(user_claims(exp=True)), "bad_claim"),
    ("sub-not-an-id", lambda s: hs256(user_claims(sub="a.b>c")), "bad_claim"),
    ("wrong-secret", lambda s: hs256(user_claims(), secret="not-the-secret-" + "y" * 40), "bad_signature"),
    ("tampered-payload", _tampered, "bad_signature"),
    ("es256-signed-by-another-key", lambda s: _es_other_key(), "bad_signature"),
    (
        "unknown-kid",
        lambda s: jwt.encode(user_claims(), ec_key("x"), algorithm="ES256", headers={"kid": "nope"}),
        "unknown_key",
    ),
    ("es256-without-kid", lambda s: jwt.encode(user_claims(), ec_key("ec-1"), algorithm="ES256"), "unknown_key"),
    ("malformed-base64", lambda s: "eyJhbGciOiJIUzI1NiJ9.e30!.c2ln", "malformed"),
    ("malformed-json-header", lambda s: f"{b64('{not json')}.{b64('{}')}.{b64('sig')}", "malformed"),
    ("malformed-json-payload", lambda s: raw_token({"alg": "HS256"}, '{"sub": ', secret=SECRET), "malformed"),
    ("payload-not-an-object", lambda s: raw_token({"alg": "HS256"}, "[1, 2]", secret=SECRET), "malformed"),
    ("duplicate-claim", lambda s: raw_token({"alg": "HS256"}, _duplicate_sub(), secret=SECRET), "malformed"),
    ("nan-exp", lambda s: raw_token({"alg": "HS256"}, _with_raw_exp("NaN"), secret=SECRET), "malformed"),
    ("two-segments", lambda s: "eyJhbGciOiJIUzI1NiJ9.e30", "malformed"),
    ("five-segments-jwe", lambda s: "a.b.c.d.e", "malformed"),
    ("service-role-key-as-user", _service_role, "service_role_not_user"),
]


def _es_on_rsa(server: JwksServer) -> str:
    # ES256 header naming the RSA key: whatever the signature, the key's type decides the algorithm.
    return jwt.encode(user_claims(), ec_key("x"), algorithm="ES256", headers={"kid": "rsa-1"})


def _rs_on_ec(server: JwksServer) -> str:
    return jwt.encode(user_claims(), rsa_key("rsa-1"), algorithm="RS256", headers={"kid": "ec-1"})


def _es_other_key() -> str:
    return jwt.encode(user_claims(), ec_key("impostor"), algorithm="ES256", headers={"kid": "ec-1"})


def _duplicate_sub() -> str:
    claims = json.dumps(user_claims(sub="first"))
    return claims[:-1] + ', "sub": "second"}'


def _with_raw_exp(literal: str) -> str:
    claims = {k: v for k, v in user_claims().items() if k != "exp"}
    return json.dumps(claims)[:-1] + f', "exp": {literal}}}'


def test_the_battery_has_at_least_twenty_distinct_reasons_and_cases():
    assert len(CASES) >= 40
    assert len({reason for _, _, reason in CASES}) >= 17
    assert len({case for case, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "make", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_bad_token_is_refused_with_its_reason(case, make, reason, auth, jwks_server):
    token = make(jwks_server)
    status, body = await exchange(auth, token)
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"
    assert body["error"]["reason"] == reason, body
    assert token not in str(body)


async def test_missing_or_non_bearer_authorization_is_refused(auth):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        response = await auth.post("/v1/token/exchange", headers=headers)
        body = await response.json()
        assert response.status == 401
        assert body["error"]["reason"] == "missing_token"


GOOD: list[tuple[str, Callable[[JwksServer], str]]] = [
    ("hs256-with-supabase-kid", lambda s: hs256(user_claims(), kid="Oe5bE3mL3cV0uG8y")),
    ("hs256-plain", lambda s: hs256(user_claims())),
    ("es256", lambda s: s.sign(user_claims(), "ec-1")),
    ("rs256", lambda s: s.sign(user_claims(), "rsa-1")),
    ("aud-list-containing-ours", lambda s: hs256(user_claims(aud=["authenticated", "other"]))),
    ("expired-within-leeway", lambda s: hs256(user_claims(exp=now() - 5, iat=now() - 3600))),
    ("float-times", lambda s: hs256(user_claims(exp=now() + 600.5, iat=now() - 0.5, nbf=now() - 1.5))),
]


@pytest.mark.parametrize(("case", "make"), GOOD, ids=[c[0] for c in GOOD])
async def test_good_token_is_accepted(case, make, auth, jwks_server):
    token = make(jwks_server)
    status, body = await exchange(auth, token)
    assert status == 200, body
    claims_sub = jwt.decode(token, options={"verify_signature": False})["sub"]
    assert body["claims"]["sub"] == claims_sub
    assert body["claims"]["organizations"] == []
    assert set(body) == {"scope_token", "expires_at", "claims"}


async def test_scope_token_never_outlives_the_supabase_token(auth):
    exp = int(time.time()) + 40
    status, body = await exchange(auth, hs256(user_claims(exp=exp)))
    assert status == 200
    assert body["expires_at"] == exp
    status, body = await exchange(auth, hs256(user_claims()))
    assert body["expires_at"] <= int(time.time()) + 300


async def test_only_hs256_when_no_jwks_is_configured(auth_app, aiohttp_client, jwks_server):
    client = await aiohttp_client(auth_app(supabase_jwks_url=None))
    status, body = await exchange(client, jwks_server.sign(user_claims(), "ec-1"))
    assert (status, body["error"]["reason"]) == (401, "algorithm_mismatch")
    status, _ = await exchange(client, hs256(user_claims()))
    assert status == 200


async def test_only_jwks_when_no_secret_is_configured(auth_app, aiohttp_client, jwks_server):
    client = await aiohttp_client(auth_app(supabase_jwt_secret=None))
    status, body = await exchange(client, hs256(user_claims()))
    assert (status, body["error"]["reason"]) == (401, "algorithm_mismatch")
    status, _ = await exchange(client, jwks_server.sign(user_claims(), "rsa-1"))
    assert status == 200
