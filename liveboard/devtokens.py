"""Supabase-format access tokens for development and tests, signed with the dev HS256 secret.

The claims mirror what Supabase Auth puts in a user's access token (and in a ``service_role``
API key), so the verifier is exercised with the real shape, not a simplified one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

DEV_ISSUER = "http://127.0.0.1:54321/auth/v1"


def user_token(
    secret: str,
    sub: str,
    email: str,
    *,
    issuer: str = DEV_ISSUER,
    ttl: int = 3600,
    role: str = "authenticated",
    audience: str = "authenticated",
    kid: str | None = None,
    **extra: Any,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "exp": now + ttl,
        "iat": now,
        "email": email,
        "phone": "",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"email": email, "email_verified": True},
        "role": role,
        "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    claims.update(extra)
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers)


def service_role_key(secret: str, *, ttl: int = 10 * 365 * 86400, ref: str = "liveboard-dev") -> str:
    """A ``service_role`` API key as Supabase issues it: no ``sub``, no ``aud``, ``iss: supabase``."""
    now = int(time.time())
    return jwt.encode(
        {"iss": "supabase", "ref": ref, "role": "service_role", "iat": now, "exp": now + ttl}, secret, algorithm="HS256"
    )
