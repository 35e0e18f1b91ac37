"""Who is calling, for every service but auth: one verifier, one leeway, live revocation.

A bearer token is one of three kinds, told apart by its (unverified) claims and then verified
by the one tool that owns that kind:

* auth's ES256 *scope token* (``iss: liveboard-auth``) — verified locally against auth's JWKS
  (``scopes.ScopeVerifier``), remembered until it expires;
* a Supabase ``service_role`` key — verified locally (``identity.SupabaseVerifier``) and accepted
  only where the caller asks for it (``service_role=True``: administrative routes);
* any other token is a Supabase user token — memberships live in auth, so it is exchanged there
  (``identity.ScopeClient``, which caches per token).

Every kind uses the same clock leeway (``SUPABASE_JWT_LEEWAY``), so a token a few seconds past
its ``exp`` is accepted or refused alike by auth, boards, realtime and audit.

**Access removal is live.** Auth announces every membership change on
``auth.membership.changed.<user>`` with the user's new membership *version*; scope tokens carry
the version they were issued at (claim ``mv``). ``Revocations`` remembers announced versions for
as long as any older scope token could still be valid (the longest scope-token lifetime plus the
leeway), so a scope token issued before a change is refused (``reason: scope_stale``) and a
Supabase token is exchanged again — within the time the message takes, not the scope token's
lifetime. A service that missed the message (restart, NATS hiccup) falls back to that lifetime.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

import jwt
import orjson
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from opentelemetry import trace

from .errors import ApiError
from .identity import (
    SERVICE_ROLE,
    SERVICE_ROLE_NOT_USER,
    ScopeClient,
    SupabaseVerifier,
    TokenRejected,
)
from .scopes import SCOPE_ISSUER, Scope, ScopeVerifier
from .settings import CommonSettings
from .subjects import MEMBERSHIP_CHANGED_WILDCARD

log = logging.getLogger(__name__)

#: Longest bearer token looked at (CONTRACT §7: up to 16 KiB gets a JSON 401, not a cut header).
MAX_TOKEN_CHARS = 16 * 1024
#: The longest a scope token lives (auth's ``AUTH_SCOPE_TOKEN_TTL`` is capped at this).
MAX_SCOPE_TTL = 300
STALE = "scope_stale"


class Exchanger(Protocol):
    async def scope_for(self, supabase_token: str) -> tuple[str, Scope]: ...


class Revocations:
    """Membership versions announced by auth, kept while an older scope token could be valid."""

    def __init__(self, *, keep_seconds: float = MAX_SCOPE_TTL + 60, max_users: int = 100_000) -> None:
        self.keep_seconds = keep_seconds
        self.max_users = max_users
        self._versions: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def note(self, user_id: str, version: int) -> None:
        known, _ = self._versions.pop(user_id, (0, 0.0))
        self._versions[user_id] = (max(known, version), time.monotonic() + self.keep_seconds)
        while len(self._versions) > self.max_users:
            self._versions.popitem(last=False)

    def is_stale(self, scope: Scope) -> bool:
        if scope.sub is None:
            return False
        entry = self._versions.get(scope.sub)
        if entry is None:
            return False
        version, until = entry
        if until < time.monotonic():
            del self._versions[scope.sub]
            return False
        return scope.version < version


def membership_change(data: bytes) -> tuple[str, int] | None:
    """``(user_id, version)`` of an ``auth.membership.changed.<user>`` message, or None if malformed."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("user_id"), str):
        return None
    version = body.get("version")
    return body["user_id"], version if isinstance(version, int) and not isinstance(version, bool) else 0


def _claims_unverified(token: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise TokenRejected("malformed", "the token is not a JWT") from None
    return claims if isinstance(claims, dict) else {}


class Access:
    """Bearer token -> verified ``Scope`` (see the module docstring)."""

    def __init__(
        self,
        verifier: ScopeVerifier,
        exchanger: Exchanger | None = None,
        *,
        supabase: SupabaseVerifier | None = None,
        revocations: Revocations | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self.verifier = verifier
        self.exchanger = exchanger
        self.supabase = supabase
        self.revocations = revocations or Revocations()
        self.cache_size = cache_size
        self._verified: OrderedDict[str, Scope] = OrderedDict()
        self._subscription: Subscription | None = None

    @classmethod
    def from_settings(
        cls, settings: CommonSettings, *, nats: NATS | None = None, tracer: trace.Tracer | None = None
    ) -> Access:
        leeway = settings.jwt_leeway_seconds
        supabase = None
        if settings.supabase_jwt_secret or settings.supabase_jwks_url:
            supabase = SupabaseVerifier.from_settings(settings)
        return cls(
            ScopeVerifier(settings.scope_jwks_url, leeway=leeway),
            ScopeClient(settings.auth_service_url, nats=nats, tracer=tracer),
            supabase=supabase,
        )

    async def scope(self, token: str, *, service_role: bool = False) -> Scope:
        """The caller of ``token``; ``service_role`` admits the Supabase administrator key."""
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRejected("token_too_large", "the token is too large")
        cached = self._verified.get(token)
        if cached is not None and cached.expires_at + self.verifier.leeway > time.time():
            self._verified.move_to_end(token)
            return self._checked(cached, service_role)
        claims = _claims_unverified(token)
        if claims.get("iss") == SCOPE_ISSUER:
            scope = await self.verifier.verify(token)
            self._remember(token, scope)
        elif claims.get("role") == SERVICE_ROLE:
            if not service_role:
                raise TokenRejected(SERVICE_ROLE_NOT_USER, "this route needs a user token, not a service_role key")
            if self.supabase is None:
                raise TokenRejected("algorithm_mismatch", "service_role keys are not accepted here")
            identity = await self.supabase.verify(token)
            if not identity.service:
                raise TokenRejected(SERVICE_ROLE_NOT_USER, "not a service_role key")
            return Scope(sub=None, role=SERVICE_ROLE, service=True, expires_at=identity.expires_at)
        else:
            if self.exchanger is None:
                raise ApiError("unauthorized", "send a scope token (exchange it at auth's POST /v1/token/exchange)")
            _, scope = await self.exchanger.scope_for(token)
        return self._checked(scope, service_role)

    def _checked(self, scope: Scope, service_role: bool) -> Scope:
        if scope.service and not service_role:
            raise TokenRejected(SERVICE_ROLE_NOT_USER, "this route needs a user token, not a service_role key")
        if self.revocations.is_stale(scope):
            raise TokenRejected(STALE, "memberships changed since this scope token was issued; exchange it again")
        return scope

    def _remember(self, token: str, scope: Scope) -> None:
        self._verified[token] = scope
        while len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)

    # -- membership changes ----------------------------------------------------------------------

    def membership_changed(self, user_id: str, version: int) -> None:
        """Forget what was cached for ``user_id`` and refuse their scopes older than ``version``."""
        self.revocations.note(user_id, version)
        invalidate = getattr(self.exchanger, "invalidate_user", None)
        if invalidate is not None:
            invalidate(user_id)

    async def follow_membership_changes(self, client: NATS) -> None:
        async def on_message(msg: Any) -> None:
            change = membership_change(msg.data)
            if change is None:
                log.warning("ignoring a malformed membership change", extra={"subject": msg.subject})
                return
            self.membership_changed(*change)

        self._subscription = await client.subscribe(MEMBERSHIP_CHANGED_WILDCARD, cb=on_message)

    async def close(self) -> None:
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except Exception as exc:  # the connection is already closing: nothing to undo
                log.debug("membership subscription not removed: %s", exc)
            self._subscription = None
        close = getattr(self.exchanger, "close", None)
        if close is not None:
            await close()
        if self.supabase is not None:
            await self.supabase.close()
