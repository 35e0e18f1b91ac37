"""Who is calling boards: a token in, a verified ``Scope`` out.

Boards decides with auth's *scope tokens* (ES256, verified locally against auth's JWKS, no call
per request). A caller holding only a Supabase access token (REST clients, the seed) gets it
exchanged through auth by the pluggable ``exchanger`` (``libs.common.identity.ScopeClient``,
which caches per token). A Supabase ``service_role`` key is an administrator, not a user: it is
refused here, because every board change must name the user who made it.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Protocol

import jwt
from aiohttp import web

from libs.common.errors import ApiError
from libs.common.identity import SERVICE_ROLE, SERVICE_ROLE_NOT_USER, TokenRejected, bearer_token
from libs.common.scopes import Scope, ScopeVerifier, is_scope_token

#: Longest token boards looks at (CONTRACT §7: up to 16 KiB gets a JSON 401, not a cut header).
MAX_TOKEN_CHARS = 16 * 1024


class Exchanger(Protocol):
    async def scope_for(self, supabase_token: str) -> tuple[str, Scope]: ...


def _claims_unverified(token: str) -> dict:
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise TokenRejected("malformed", "the token is not a JWT") from None


class Access:
    """Turns tokens into scopes (see the module docstring).

    Verified scope tokens are remembered until they expire (bounded LRU): realtime sends the
    same token with every socket message, and an ES256 verification per move is measurable.
    """

    def __init__(
        self, verifier: ScopeVerifier, exchanger: Exchanger | None = None, *, cache_size: int = 10_000
    ) -> None:
        self.verifier = verifier
        self.exchanger = exchanger
        self.cache_size = cache_size
        self._verified: OrderedDict[bytes, Scope] = OrderedDict()

    async def scope(self, token: str) -> Scope:
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRejected("too_large", "the token is too large")
        key = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(key)
        if cached is not None:
            if cached.expires_at > time.time():
                self._verified.move_to_end(key)
                return cached
            del self._verified[key]
        verified_here = is_scope_token(token)
        if verified_here:
            scope = await self.verifier.verify(token)
        else:
            if _claims_unverified(token).get("role") == SERVICE_ROLE:
                raise TokenRejected(SERVICE_ROLE_NOT_USER, "boards needs a user token, not a service_role key")
            if self.exchanger is None:
                raise ApiError("unauthorized", "send a scope token (exchange it at auth's POST /v1/token/exchange)")
            _, scope = await self.exchanger.scope_for(token)
        if scope.service or not scope.sub:
            raise TokenRejected(SERVICE_ROLE_NOT_USER, "boards needs a user token, not a service_role key")
        if verified_here:  # exchanged scopes are cached by the exchanger itself
            self._remember(key, scope)
        return scope

    def _remember(self, key: bytes, scope: Scope) -> None:
        self._verified[key] = scope
        while len(self._verified) > self.cache_size:
            self._verified.popitem(last=False)


ACCESS = web.AppKey("boards_access", Access)


async def caller_scope(request: web.Request) -> Scope:
    """The verified scope of a REST request's ``Authorization: Bearer`` token (401 otherwise)."""
    return await request.app[ACCESS].scope(bearer_token(request.headers))
