"""Who is calling: Supabase access-token verification, and the scope-token client every service uses.

Two tools live here because every service needs one or both:

* ``SupabaseVerifier`` checks a Supabase access token the way an attacker would probe it. Each key
  source pins its algorithm: HS256 tokens are checked only against ``SUPABASE_JWT_SECRET``,
  ES256/RS256 tokens only against the ``SUPABASE_JWKS_URL`` key named by ``kid`` (whose own type
  decides the algorithm), never against whatever the token header claims. Headers that would make
  us fetch or trust a key chosen by the token (``jku``, ``x5u``, ``jwk``, ``x5c``) and ``crit``
  extensions we do not implement are refused. Every refusal is a ``TokenRejected`` (401) with a
  machine-readable ``reason`` so clients, logs and the audit log can tell the cases apart.
* ``ScopeClient`` turns a Supabase token into auth's short-lived scope token (over NATS request/reply,
  or HTTP), caching the answer per token until shortly before it expires, so realtime and boards
  pay for an exchange once per token rather than once per message.

``refusal_reason`` names a refusal for the security event it becomes (``libs.common.audit_feed``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import nats.errors
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm, get_default_algorithms
from jwt.exceptions import InvalidKeyError
from nats.aio.client import Client as NATS
from opentelemetry import trace

from .errors import ApiError
from .ids import ID_RE
from .messaging import request as nats_request
from .scopes import Scope, ScopeVerifier
from .settings import CommonSettings, ConfigError
from .subjects import AUTH_EXCHANGE
from .tracing import inject

log = logging.getLogger(__name__)

#: Tokens longer than this are refused before any decoding (Supabase tokens are ~1 KiB).
MAX_TOKEN_BYTES = 8 * 1024
#: The issuer Supabase writes into its ``service_role`` (and ``anon``) API keys.
SERVICE_ROLE_ISSUER = "supabase"
SERVICE_ROLE = "service_role"
ANON_ROLE = "anon"
SERVICE_ROLE_NOT_USER = "service_role_not_user"
#: User ids become NATS subject tokens and path segments: the contract's id alphabet.
SUBJECT_RE = ID_RE  # a user id is an id like any other (CONTRACT §3)
#: Headers that ask the verifier to trust or fetch a key chosen by the token itself.
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
SYMMETRIC_ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")
_REASON_RE = re.compile(r"^[a-z0-9_]{1,64}$")
_ALGORITHMS = get_default_algorithms()


class TokenRejected(ApiError):
    """A refused token: 401 ``unauthorized`` with a ``reason`` (e.g. ``expired``, ``alg_none``).

    ``user_id`` is set only when the signature was verified (so it is really that user's token,
    e.g. an expired one); it is for the security event, never for the response body.
    """

    def __init__(self, reason: str, message: str, *, user_id: str | None = None) -> None:
        super().__init__("unauthorized", message, reason=reason)
        self.reason = reason
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified Supabase caller. ``service`` marks the ``service_role`` key (an administrator, no user)."""

    sub: str | None
    role: str
    email: str | None
    expires_at: int
    algorithm: str
    claims: Mapping[str, Any] = field(repr=False)

    @property
    def service(self) -> bool:
        return self.role == SERVICE_ROLE

    def require_user(self) -> str:
        """The user id, or 401: a service_role key is an administrator, not a user."""
        if self.service or self.sub is None:
            raise TokenRejected(SERVICE_ROLE_NOT_USER, "a service_role key cannot act as a user here")
        return self.sub


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an ``Authorization: Bearer`` header, or 401 ``missing_token``."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenRejected("missing_token", "an 'Authorization: Bearer <token>' header is required")
    return token


# --------------------------------------------------------------------------- JWKS


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key from the JWKS with the one algorithm it may verify."""

    kid: str
    algorithm: str
    key: Any


def check_jwks_url(url: str) -> str:
    """Only https, or plain http to a loopback address (a local dev/test server or a sidecar)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and _is_loopback(host):
        return url
    raise ConfigError("configuration error: SUPABASE_JWKS_URL must be an https URL (or http to a loopback address)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_jwk(entry: Any) -> VerificationKey | None:
    """One JWKS entry as a verification key, or None when we must not use it.

    Symmetric (``oct``) entries are never used: a secret published in a JWKS would be public.
    The key type pins the algorithm (EC P-256 -> ES256, RSA >= 2048 bits -> RS256); a declared
    ``alg`` must agree with it.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not entry["kid"]:
        return None
    if entry.get("use", "sig") != "sig":
        return None
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    public = {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
    try:
        if entry.get("kty") == "EC" and entry.get("crv") == "P-256" and entry.get("alg", "ES256") == "ES256":
            key = ECAlgorithm.from_jwk(public)
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return None
            return VerificationKey(entry["kid"], "ES256", key)
        if entry.get("kty") == "RSA" and entry.get("alg", "RS256") == "RS256":
            key = RSAAlgorithm.from_jwk(public)
            if not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
                return None
            return VerificationKey(entry["kid"], "RS256", key)
    except (InvalidKeyError, ValueError, KeyError, TypeError):
        log.warning("ignoring an unusable JWKS key", extra={"kid": entry.get("kid")})
    return None


class JwksKeys:
    """Supabase's signing keys: fetched lazily, cached, refreshed when stale or on an unknown ``kid``.

    An unknown ``kid`` triggers a refetch at most once per ``cooldown`` seconds, however many
    requests carry unknown kids, so an attacker spraying random kids cannot make us hammer the
    JWKS endpoint; a key Supabase rotates in is still picked up without a restart. Keys older
    than ``max_age`` are refreshed in the background (a key Supabase revoked disappears).
    """

    def __init__(
        self,
        url: str,
        *,
        cooldown: float = 30.0,
        max_age: float = 600.0,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
    ) -> None:
        self.url = check_jwks_url(url)
        self.cooldown = cooldown
        self.max_age = max_age
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.fetches = 0
        self._keys: dict[str, VerificationKey] = {}
        self._attempted_at = -math.inf
        self._loaded_at = -math.inf
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    def cached(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> list[str]:
        return sorted(self._keys)

    async def get(self, kid: str) -> VerificationKey | None:
        """The key for ``kid``, refetching (within the cooldown rule) when it is not known."""
        found = self._keys.get(kid)
        now = time.monotonic()
        if found is not None:
            if now - self._loaded_at > self.max_age and now - self._attempted_at >= self.cooldown:
                self._refresh_in_background()
            return found
        if now - self._attempted_at < self.cooldown:
            return None
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._attempted_at >= self.cooldown:
                await self.refresh()
        return self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch the JWKS now; ``ApiError('unavailable')`` when it cannot be read."""
        self._attempted_at = time.monotonic()
        self.fetches += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.url, allow_redirects=False, headers={"Accept": "application/json"}) as response,
            ):
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                raw = await response.content.read(self.max_bytes + 1)
                if len(raw) > self.max_bytes:
                    raise ValueError(f"JWKS over {self.max_bytes} bytes")
                document = orjson.loads(raw)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning("cannot fetch Supabase JWKS: %s", exc, extra={"jwks_url": self.url})
            raise ApiError(
                "unavailable", "the token signing keys cannot be fetched; retry shortly", reason="jwks_unavailable"
            ) from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            log.warning("Supabase JWKS has no 'keys' list", extra={"jwks_url": self.url})
            return
        keys = {}
        for entry in entries:
            parsed = parse_jwk(entry)
            if parsed is not None:
                keys[parsed.kid] = parsed
        self._keys = keys
        self._loaded_at = time.monotonic()
        log.info("loaded Supabase JWKS", extra={"kids": sorted(keys), "jwks_url": self.url})

    def _refresh_in_background(self) -> None:
        if self._background is not None and not self._background.done():
            return

        async def run() -> None:
            async with self._lock:
                if time.monotonic() - self._attempted_at >= self.cooldown:
                    with contextlib.suppress(ApiError):
                        await self.refresh()

        self._background = asyncio.create_task(run(), name="jwks-refresh")

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background


# --------------------------------------------------------------------------- verification


def _b64decode(segment: str) -> bytes:
    if not _B64URL_RE.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:  # parsers disagree on duplicates; a token relying on that is hostile
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class SupabaseVerifier:
    """Checks Supabase access tokens (and ``service_role`` keys); see the module docstring.

    ``verify`` returns an ``Identity`` or raises ``TokenRejected`` (401, with a reason) or
    ``ApiError('unavailable')`` when the JWKS is needed and cannot be fetched.
    """

    def __init__(
        self,
        *,
        issuer: str,
        secret: str | None = None,
        jwks_url: str | None = None,
        audience: str = "authenticated",
        leeway: float = 30.0,
        jwks_cooldown: float = 30.0,
        jwks_max_age: float = 600.0,
        max_token_bytes: int = MAX_TOKEN_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret and not jwks_url:
            raise ConfigError("configuration error: SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL must be set")
        self.issuer = issuer
        self.secret = secret.encode() if secret else None
        self.jwks = JwksKeys(jwks_url, cooldown=jwks_cooldown, max_age=jwks_max_age) if jwks_url else None
        self.audience = audience
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: CommonSettings, **overrides: Any) -> SupabaseVerifier:
        """Built from the ``SUPABASE_*`` settings; the issuer must be known (fail closed).

        Without ``SUPABASE_JWT_ISSUER`` the issuer is derived from a Supabase JWKS URL
        (``https://<ref>.supabase.co/auth/v1/.well-known/jwks.json`` -> ``.../auth/v1``).
        """
        issuer = settings.supabase_jwt_issuer
        jwks_url = settings.supabase_jwks_url or None
        suffix = "/.well-known/jwks.json"
        if not issuer and jwks_url and jwks_url.endswith(suffix):
            issuer = jwks_url.removesuffix(suffix)
        if not issuer:
            raise ConfigError("configuration error: SUPABASE_JWT_ISSUER must be set (the 'iss' of your tokens)")
        values: dict[str, Any] = {
            "issuer": issuer,
            "secret": settings.supabase_jwt_secret or None,
            "jwks_url": jwks_url,
            "audience": settings.supabase_jwt_audience,
            "leeway": settings.jwt_leeway_seconds,
        }
        values.update(overrides)
        return cls(**values)

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()

    async def verify(self, token: str) -> Identity:
        if not isinstance(token, str) or not token:
            raise TokenRejected("missing_token", "no token")
        if len(token) > self.max_token_bytes:
            raise TokenRejected("token_too_large", f"tokens over {self.max_token_bytes} bytes are refused")
        parts = self._segments(token)
        header = self._decode(parts[0], "header")
        algorithm = self._check_header(header)  # before the payload: the header says how to read it
        payload = self._decode(parts[1], "payload")
        try:
            signature = _b64decode(parts[2])
        except ValueError:
            raise TokenRejected("malformed", "the token's signature is not base64url") from None
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        key = await self._key_for(algorithm, header)
        if not _ALGORITHMS[algorithm].verify(signing_input, key, signature):
            raise TokenRejected("bad_signature", "the token signature does not verify")
        return self._check_claims(payload, algorithm)

    # -- structure and header ------------------------------------------------------------------

    @staticmethod
    def _segments(token: str) -> list[str]:
        parts = token.split(".")
        if not token.isascii() or len(parts) != 3:
            raise TokenRejected("malformed", "the token is not a compact JWS (three dot-separated parts)")
        return parts

    @staticmethod
    def _decode(segment: str, what: str) -> dict[str, Any]:
        try:
            return _json_object(_b64decode(segment))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise TokenRejected("malformed", f"the token {what} is not a base64url-encoded JSON object") from None

    def _check_header(self, header: dict[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise TokenRejected("malformed", "the token header has no 'alg'")
        if alg.lower() == "none":
            raise TokenRejected("alg_none", "unsigned tokens (alg: none) are refused")
        present = [name for name in FORBIDDEN_HEADERS if name in header]
        if present:
            raise TokenRejected("forbidden_header", f"tokens naming their own key ({', '.join(present)}) are refused")
        if "crit" in header:
            raise TokenRejected("unknown_crit", "the token requires extensions (crit) this server does not implement")
        if alg != SYMMETRIC_ALGORITHM and alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenRejected("unsupported_algorithm", f"algorithm {alg[:20]!r} is not accepted")
        return alg

    async def _key_for(self, algorithm: str, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if algorithm == SYMMETRIC_ALGORITHM:
            if self.secret is None:
                raise TokenRejected("algorithm_mismatch", "HS256 tokens are not accepted (no shared secret configured)")
            # A kid is normal on Supabase HS256 tokens, but one naming a JWKS public key means the
            # token was "signed" with that public key as an HMAC secret: algorithm confusion.
            if isinstance(kid, str) and self.jwks is not None and self.jwks.cached(kid) is not None:
                raise TokenRejected("algorithm_mismatch", "HS256 token names an asymmetric key")
            return self.secret
        if self.jwks is None:
            raise TokenRejected("algorithm_mismatch", f"{algorithm} tokens are not accepted (no JWKS configured)")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("unknown_key", f"{algorithm} tokens must name their key (kid)")
        found = await self.jwks.get(kid)
        if found is None:
            raise TokenRejected("unknown_key", "the token's signing key (kid) is not in the JWKS")
        if found.algorithm != algorithm:
            raise TokenRejected("algorithm_mismatch", f"key {kid[:40]!r} verifies {found.algorithm}, not {algorithm}")
        return found.key

    # -- claims ----------------------------------------------------------------------------------

    def _check_claims(self, claims: dict[str, Any], algorithm: str) -> Identity:
        sub = claims.get("sub")
        verified_user = sub if isinstance(sub, str) and SUBJECT_RE.fullmatch(sub) else None

        def refuse(reason: str, message: str) -> TokenRejected:
            return TokenRejected(reason, message, user_id=verified_user)

        for name in ("exp", "iat", "role", "iss"):
            if name not in claims:
                raise refuse("missing_claim", f"the token has no '{name}' claim")
        role = claims["role"]
        if not isinstance(role, str) or not role:
            raise refuse("bad_claim", "'role' must be a non-empty string")
        if role == ANON_ROLE:
            raise refuse("anon_role", "anon keys are not user tokens")
        service = role == SERVICE_ROLE
        if not service:
            for name in ("sub", "aud"):
                if name not in claims:
                    raise refuse("missing_claim", f"the token has no '{name}' claim")
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_number(claims[name]):
                raise refuse("bad_claim", f"'{name}' must be a JSON number")
        now = self.clock()
        if claims["exp"] <= now - self.leeway:
            raise refuse("expired", "the token has expired")
        if claims["iat"] > now + self.leeway:
            raise refuse("not_yet_valid", "the token is issued in the future (iat)")
        if "nbf" in claims and claims["nbf"] > now + self.leeway:
            raise refuse("not_yet_valid", "the token is not valid yet (nbf)")
        issuers = (self.issuer, SERVICE_ROLE_ISSUER) if service else (self.issuer,)
        if not isinstance(claims["iss"], str) or claims["iss"] not in issuers:
            raise refuse("bad_issuer", "the token's issuer is not this project's")
        if "aud" in claims and not self._audience_ok(claims["aud"]):
            raise refuse("bad_audience", f"the token's audience is not {self.audience!r}")
        if not service and verified_user is None:
            raise refuse("bad_claim", "'sub' must be 1-64 characters of [A-Za-z0-9_-]")
        email = claims.get("email")
        return Identity(
            sub=verified_user,
            role=role,
            email=email if isinstance(email, str) and email else None,
            expires_at=int(claims["exp"]),
            algorithm=algorithm,
            claims=claims,
        )

    def _audience_ok(self, aud: Any) -> bool:
        if isinstance(aud, str):
            return aud == self.audience
        return isinstance(aud, list) and all(isinstance(a, str) for a in aud) and self.audience in aud


# --------------------------------------------------------------------------- security events


def refusal_reason(error: ApiError) -> str:
    """The subject-safe reason of a refusal (its ``reason`` detail, else its code)."""
    reason = error.details.get("reason") or error.code
    return reason if isinstance(reason, str) and _REASON_RE.fullmatch(reason) else error.code


# --------------------------------------------------------------------------- scope client


@dataclass(slots=True)
class _Cached:
    scope_token: str
    scope: Scope
    fresh_until: float


class ScopeClient:
    """Supabase token -> (scope token, ``Scope``), exchanged through auth and cached per token.

    With a NATS client the exchange is a request on ``auth.v1.exchange`` (falling back to HTTP
    ``POST {auth_url}/v1/token/exchange`` when no auth replica answers); without one, HTTP only.
    Answers are cached in a bounded LRU until ``margin`` seconds before the scope token expires;
    concurrent calls for the same token share one exchange. ``invalidate_user`` forgets a user's
    entries (realtime calls it on ``auth.membership.changed.<user>``). Failures are ``ApiError``
    ``unauthorized``/``forbidden`` (with auth's ``reason``) or ``unavailable``.

    If ``verifier`` is given, each new scope token is also verified against auth's JWKS before it
    is trusted (for deployments where the NATS account is shared with less trusted clients).
    """

    def __init__(
        self,
        auth_url: str,
        *,
        nats: NATS | None = None,
        tracer: trace.Tracer | None = None,
        max_entries: int = 10000,
        margin: float = 15.0,
        timeout: float = 5.0,
        verifier: ScopeVerifier | None = None,
    ) -> None:
        self.auth_url = auth_url.rstrip("/")
        self.nats = nats
        self.tracer = tracer or trace.get_tracer("liveboard.identity")
        self.max_entries = max_entries
        self.margin = margin
        self.timeout = timeout
        self.verifier = verifier
        self.hits = 0
        self.exchanges = 0
        self._cache: OrderedDict[bytes, _Cached] = OrderedDict()
        self._by_user: dict[str, set[bytes]] = {}
        self._inflight: dict[bytes, asyncio.Task[tuple[str, Scope]]] = {}
        self._invalidations = 0
        self._session: aiohttp.ClientSession | None = None

    def __len__(self) -> int:
        return len(self._cache)

    async def scope_for(
        self, supabase_token: str, *, ip: str | None = None, path: str | None = None
    ) -> tuple[str, Scope]:
        """The scope for ``supabase_token`` (cached, else exchanged).

        ``ip``/``path`` describe the end user's request; on a NATS exchange auth puts them in the
        security event if it refuses the token (over HTTP auth only sees this service's address).
        """
        key = hashlib.sha256(supabase_token.encode()).digest()
        entry = self._cache.get(key)
        if entry is not None:
            if entry.fresh_until > time.time():
                self._cache.move_to_end(key)
                self.hits += 1
                return entry.scope_token, entry.scope
            self._forget(key)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._exchange_and_cache(key, supabase_token, self._invalidations, ip, path))
            task.add_done_callback(_retrieve_exception)
            self._inflight[key] = task
        return await asyncio.shield(task)

    def invalidate_user(self, user_id: str) -> int:
        """Drop every cached scope of ``user_id``; returns how many were dropped."""
        self._invalidations += 1  # exchanges already in flight will not be cached either
        keys = self._by_user.pop(user_id, set())
        for key in keys:
            self._cache.pop(key, None)
        return len(keys)

    def clear(self) -> None:
        self._invalidations += 1
        self._cache.clear()
        self._by_user.clear()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> ScopeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals -------------------------------------------------------------------------------

    async def _exchange_and_cache(
        self, key: bytes, token: str, generation: int, ip: str | None, path: str | None
    ) -> tuple[str, Scope]:
        """Exchange, and cache the answer unless an invalidation happened since the call began."""
        try:
            body = await self._exchange(token, ip, path)
            scope_token = body["scope_token"]
            if self.verifier is not None:
                scope = await self.verifier.verify(scope_token)
            else:
                scope = Scope.from_claims({**body["claims"], "exp": body["expires_at"]})
            fresh_until = float(body["expires_at"]) - self.margin
            if generation == self._invalidations and fresh_until > time.time():
                self._store(key, _Cached(scope_token, scope, fresh_until))
            return scope_token, scope
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError("unavailable", f"auth answered an exchange with an unexpected body: {exc}") from None
        finally:
            self._inflight.pop(key, None)

    def _store(self, key: bytes, entry: _Cached) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        if entry.scope.sub:
            self._by_user.setdefault(entry.scope.sub, set()).add(key)
        while len(self._cache) > self.max_entries:
            oldest = next(iter(self._cache))
            self._forget(oldest)

    def _forget(self, key: bytes) -> None:
        entry = self._cache.pop(key, None)
        if entry is not None and entry.scope.sub:
            keys = self._by_user.get(entry.scope.sub)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_user[entry.scope.sub]

    async def _exchange(self, token: str, ip: str | None, path: str | None) -> dict[str, Any]:
        self.exchanges += 1
        if self.nats is not None:
            try:
                return await self._exchange_nats(token, ip, path)
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, nats.errors.ConnectionClosedError):
                log.warning("no auth replica answered over NATS; exchanging over HTTP")
        return await self._exchange_http(token)

    async def _exchange_nats(self, token: str, ip: str | None, path: str | None) -> dict[str, Any]:
        assert self.nats is not None
        request = {"token": token, **({"ip": ip} if ip else {}), **({"path": path} if path else {})}
        reply = await nats_request(self.nats, self.tracer, AUTH_EXCHANGE, orjson.dumps(request), timeout=self.timeout)
        try:
            answer = orjson.loads(reply.data)
        except orjson.JSONDecodeError:
            raise ApiError("unavailable", "auth answered an exchange with non-JSON") from None
        if isinstance(answer, dict) and answer.get("ok") is True and isinstance(answer.get("data"), dict):
            return answer["data"]
        raise _error_from(answer.get("error") if isinstance(answer, dict) else None)

    async def _exchange_http(self, token: str) -> dict[str, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        url = f"{self.auth_url}/v1/token/exchange"
        with self.tracer.start_as_current_span("POST /v1/token/exchange", kind=trace.SpanKind.CLIENT) as span:
            headers: dict[str, str] = {"Authorization": f"Bearer {token}"}
            inject(headers)
            try:
                async with self._session.post(url, headers=headers) as response:
                    span.set_attribute("http.response.status_code", response.status)
                    try:
                        answer = await response.json(content_type=None)
                    except ValueError:
                        answer = None
                    if response.status == 200 and isinstance(answer, dict):
                        return answer
                    raise _error_from(answer.get("error") if isinstance(answer, dict) else None, response.status)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise ApiError("unavailable", f"auth is unreachable: {exc.__class__.__name__}") from None


def _error_from(error: Any, status: int | None = None) -> ApiError:
    """Auth's error answer as an ``ApiError`` with the same code and reason (else ``unavailable``)."""
    if isinstance(error, dict) and error.get("code") in ("unauthorized", "forbidden", "unavailable", "rate_limited"):
        code = error["code"]
        details = {"reason": error["reason"]} if isinstance(error.get("reason"), str) else {}
        return ApiError(code, str(error.get("message") or code), **details)
    suffix = f" (HTTP {status})" if status else ""
    return ApiError("unavailable", f"auth could not exchange the token{suffix}")


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # Waiters may all have been cancelled; mark the exception seen so asyncio does not log it.
    if not task.cancelled():
        task.exception()


__all__ = [
    "MAX_TOKEN_BYTES",
    "Identity",
    "JwksKeys",
    "ScopeClient",
    "SupabaseVerifier",
    "TokenRejected",
    "bearer_token",
    "check_jwks_url",
    "parse_jwk",
]
