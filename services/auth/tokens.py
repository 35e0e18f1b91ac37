"""Scope tokens: auth's signing keys and the exchange of a Supabase token for a scope token.

The exchange is one function used by both transports (HTTP ``POST /v1/token/exchange`` and the
NATS request ``auth.v1.exchange``), so they cannot drift apart. A scope token lives at most
``AUTH_SCOPE_TOKEN_TTL`` (<= 5 min) and never past the Supabase token's own ``exp``: logging out
of Supabase (or a membership change) is felt within minutes even by a client that never asks again.
"""

from __future__ import annotations

import re
import time
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from libs.common.scopes import Scope, ScopeSigner
from libs.common.settings import ConfigError

from .config import Settings
from .memberships import memberships_of
from .state import AuthState

_PEM_RE = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def _pem_text(value: str) -> str:
    # Secrets pasted into a single-line variable often carry literal "\n" instead of newlines.
    return value.replace("\\n", "\n") if "\\n" in value and "\n" not in value.strip() else value


def load_signer(settings: Settings) -> ScopeSigner:
    """The current signing key and retired public keys, or a one-line ``ConfigError``."""
    if not settings.auth_scope_signing_key or not settings.auth_scope_signing_key.strip():
        raise ConfigError(
            "configuration error: AUTH_SCOPE_SIGNING_KEY must be set (PEM of an EC P-256 private key shared by "
            "every auth replica; 'liveboard dev' generates one)"
        )
    try:
        signer = ScopeSigner.from_pem(_pem_text(settings.auth_scope_signing_key))
    except (ValueError, TypeError):
        raise ConfigError("configuration error: AUTH_SCOPE_SIGNING_KEY must be an EC P-256 private key (PEM)") from None
    if not isinstance(signer.private_key.curve, ec.SECP256R1):
        raise ConfigError("configuration error: AUTH_SCOPE_SIGNING_KEY must be an EC P-256 private key (PEM)")
    signer.retired = _retired_keys(settings.auth_scope_retired_keys or "")
    return signer


def _retired_keys(value: str) -> list[ec.EllipticCurvePublicKey]:
    keys = []
    for match in _PEM_RE.finditer(_pem_text(value)):
        pem = match.group(0).encode()
        try:
            if "PRIVATE" in match.group(1):
                loaded: Any = serialization.load_pem_private_key(pem, password=None).public_key()
            else:
                loaded = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError):
            raise ConfigError("configuration error: AUTH_SCOPE_RETIRED_KEYS holds a PEM that is not a key") from None
        if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, ec.SECP256R1):
            raise ConfigError("configuration error: AUTH_SCOPE_RETIRED_KEYS must hold EC P-256 keys")
        keys.append(loaded)
    if value.strip() and not keys:
        raise ConfigError("configuration error: AUTH_SCOPE_RETIRED_KEYS must be PEM blocks")
    return keys


async def exchange(state: AuthState, pool: asyncpg.Pool, supabase_token: str) -> dict[str, Any]:
    """Supabase token -> ``{"scope_token", "expires_at", "claims"}`` (CONTRACT §7), or a refusal."""
    identity = await state.verifier.verify(supabase_token)
    user_id = identity.require_user()
    async with pool.acquire() as conn:
        organizations, version = await memberships_of(conn, user_id)
    expires_at = min(int(time.time()) + state.settings.auth_scope_token_ttl, identity.expires_at)
    scope = Scope(
        sub=user_id,
        email=identity.email,
        role=identity.role,
        organizations=organizations,
        expires_at=expires_at,
        version=version,
    )
    return {"scope_token": state.signer.sign(scope, expires_at), "expires_at": expires_at, "claims": scope.to_claims()}
