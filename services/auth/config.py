"""The auth service's settings: the shared ones plus its scope-token keys and JWKS refetch policy."""

from __future__ import annotations

from libs.common.settings import CommonSettings, env


class Settings(CommonSettings):
    #: PEM of the EC P-256 private key that signs scope tokens; every replica must share it.
    auth_scope_signing_key: str | None = env("AUTH_SCOPE_SIGNING_KEY", default=None)
    #: PEMs (public or private; concatenated) of earlier signing keys, still published in the JWKS
    #: so scope tokens they signed keep verifying until they expire (key rotation).
    auth_scope_retired_keys: str | None = env("AUTH_SCOPE_RETIRED_KEYS", default=None)
    #: Scope-token lifetime; never longer than 5 minutes, nor than the Supabase token's own ``exp``.
    auth_scope_token_ttl: int = env("AUTH_SCOPE_TOKEN_TTL", default=300, ge=10, le=300)
    #: Minimum seconds between JWKS refetches caused by tokens with an unknown ``kid``.
    supabase_jwks_cooldown: float = env("SUPABASE_JWKS_COOLDOWN", default=30.0, ge=0, le=3600)
