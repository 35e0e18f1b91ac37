"""Who is asking: one function, ``caller_scope``, turns a request's Bearer token into a ``Scope``.

Accepted tokens:

- auth's ES256 *scope token* (the normal case), verified against auth's JWKS;
- a Supabase ``service_role`` key (HS256 with the project secret, ``iss: supabase``), the
  administrator on administrative routes such as this whole API (CONTRACT §3).

- a plain Supabase user token: memberships live in auth, so it is exchanged there for a scope
  (``libs.common.identity.ScopeClient``, cached per token); without one it is refused with a
  hint to exchange it first.
"""

from __future__ import annotations

from typing import Any, Protocol

import jwt
from aiohttp import web

from libs.common.errors import ApiError, unauthorized
from libs.common.scopes import SCOPE_ISSUER, Scope, ScopeVerifier

SERVICE_ROLE_ISSUER = "supabase"
#: Header parameters that point at a key chosen by the sender: never honoured, always refused.
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk")
_TIME_CLAIMS = ("exp", "iat", "nbf")


class UserScopes(Protocol):
    """Exchanges a Supabase user token for a scope (``libs.common.identity.ScopeClient``)."""

    async def scope_for(self, token: str) -> tuple[str, Scope]: ...


class Access:
    """Token verifiers configured once per app (keys are cached between requests)."""

    def __init__(
        self, verifier: ScopeVerifier, *, service_secret: str | None, leeway: int = 30, users: UserScopes | None = None
    ) -> None:
        self.verifier = verifier
        self.service_secret = service_secret
        self.leeway = leeway
        self.users = users

    def service_role(self, token: str) -> Scope:
        if not self.service_secret:
            raise unauthorized("service_role keys are not accepted here (no SUPABASE_JWT_SECRET)")
        try:
            claims = jwt.decode(
                token,
                self.service_secret,
                algorithms=["HS256"],
                issuer=SERVICE_ROLE_ISSUER,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired", reason="expired") from None
        except jwt.InvalidTokenError as exc:
            raise unauthorized(f"invalid token: {exc}") from None
        if claims.get("role") != "service_role":
            raise unauthorized("not a service_role key")
        for name in _TIME_CLAIMS:  # PyJWT would accept "exp": "1700000000"; the contract does not
            if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], int | float)):
                raise unauthorized(f"{name} must be a number")
        return Scope(sub=None, role="service_role", service=True, expires_at=int(claims["exp"]))

    async def scope(self, token: str) -> Scope:
        try:
            header = jwt.get_unverified_header(token)
            claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise unauthorized("malformed token") from None
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise unauthorized("tokens naming their own key (jku, x5u, jwk) are refused")
        if claims.get("iss") == SCOPE_ISSUER:
            return await self.verifier.verify(token)
        if claims.get("role") == "service_role":
            return self.service_role(token)
        if self.users is None:
            raise unauthorized("present a scope token from auth (POST /v1/token/exchange) or a service_role key")
        _, scope = await self.users.scope_for(token)
        return scope


ACCESS = web.AppKey("audit_access", Access)


async def caller_scope(request: web.Request) -> Scope:
    """The verified caller of ``request``, or a 401 ``ApiError``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Bearer token required")
    return await request.app[ACCESS].scope(token.strip())


def require_audit_reader(scope: Scope, organization_id: str) -> None:
    """Admins and owners of that organization, or service_role; everyone else gets 403."""
    if not scope.can_admin(organization_id):
        raise ApiError("forbidden", "reading the audit log needs the admin role in this organization")
