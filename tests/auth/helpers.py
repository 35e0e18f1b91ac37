"""Helpers for the auth tests: real EC/RSA keys, a Supabase-like JWKS server, and a raw-token
crafter for the hostile cases a JWT library would refuse to produce."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.conftest import ISSUER, JWT_SECRET


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_token(header: dict[str, Any] | str, payload: dict[str, Any] | str, *, secret: bytes | None = None) -> str:
    """A compact JWS built by hand (header/payload may be raw JSON text), HMAC-SHA256-signed with
    ``secret`` or with an empty signature: what an attacker, not a library, would send."""
    head = b64(header if isinstance(header, str) else json.dumps(header))
    body = b64(payload if isinstance(payload, str) else json.dumps(payload))
    signing_input = f"{head}.{body}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest() if secret is not None else b""
    return f"{head}.{body}.{b64(signature)}"


def user_claims(sub: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The claims of a Supabase user access token."""
    now = int(time.time())
    sub = sub or str(uuid.uuid4())
    claims = {
        "iss": ISSUER,
        "sub": sub,
        "aud": "authenticated",
        "exp": now + 3600,
        "iat": now,
        "email": f"{sub[:8]}@example.com",
        "role": "authenticated",
        "aal": "aal1",
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hs256(claims: dict[str, Any], *, secret: str = JWT_SECRET, **headers: Any) -> str:
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers or None)


@functools.cache
def ec_key(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class JwksServer:
    """A Supabase-like JWKS endpoint on loopback; counts requests, can rotate keys or fail."""

    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key (EC or RSA)
    extra_entries: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    failing: bool = False
    url: str = ""

    def add(self, kid: str, key: Any) -> str:
        self.keys[kid] = key
        return kid

    def document(self) -> dict[str, Any]:
        entries = []
        for kid, key in self.keys.items():
            if isinstance(key, ec.EllipticCurvePrivateKey):
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"alg": "ES256"}
            else:
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"alg": "RS256"}
            entries.append(jwk | {"kid": kid, "use": "sig", "key_ops": ["verify"]})
        return {"keys": entries + self.extra_entries}

    def sign(self, claims: dict[str, Any], kid: str, *, alg: str | None = None, **headers: Any) -> str:
        key = self.keys[kid]
        alg = alg or ("ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256")
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, **headers})

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.failing:
            return web.Response(status=500, text="down")
        return web.json_response(self.document())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def exchange(client: TestClient, token: str, **headers: str) -> tuple[int, Any]:
    response = await client.post("/v1/token/exchange", headers={**bearer(token), **headers})
    assert response.headers["Content-Type"].startswith("application/json")
    return response.status, await response.json()
