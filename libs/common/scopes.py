"""Scope tokens: what auth vouches for about a caller, and the rules every service applies to it.

Auth exchanges a Supabase access token for a short-lived ES256 *scope token* listing the caller's
organizations (role, divisions). Other services verify it against auth's published JWKS and
decide with ``Scope``'s methods, so "who may do what" is written once, here.

Roles (CONTRACT §3): viewer reads; member reads and writes boards; admin also manages members,
reads the audit log, broadcasts and deletes boards; owner everything.

Admin and owner are organization-wide roles: auth refuses to store them with a division list, and
a membership that has one anyway (written before that rule) confers no admin rights here — so a
division-limited admin can never read the whole organization's audit log or widen their own
access (docs/security.md).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from .errors import ApiError

SCOPE_ISSUER = "liveboard-auth"
SCOPE_AUDIENCE = "liveboard"
SCOPE_ALGORITHM = "ES256"
ROLES = ("viewer", "member", "admin", "owner")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class OrgMembership:
    id: str
    role: str
    divisions: tuple[str, ...] | None = None  # None = every division

    def covers(self, division_id: str | None) -> bool:
        return self.divisions is None or division_id is None or division_id in self.divisions

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "divisions": list(self.divisions) if self.divisions is not None else None,
        }


def _refused(message: str, organization_id: str) -> ApiError:
    """``forbidden``, recorded in the audit log of the organization it was about (a refusal
    raised deep inside a command knows that organization; the request path may not)."""
    error = ApiError("forbidden", message)
    error.audit = {"organization_id": organization_id}
    return error


@dataclass(frozen=True)
class Scope:
    """A verified caller. ``service`` is the Supabase service_role administrator (no user)."""

    sub: str | None
    email: str | None = None
    role: str = "authenticated"
    organizations: tuple[OrgMembership, ...] = ()
    service: bool = False
    expires_at: int = 0
    #: The user's membership version when auth issued the scope (claim ``mv``): a scope older than
    #: a version announced on ``auth.membership.changed.<user>`` is stale (``access.Revocations``).
    version: int = 0

    def membership(self, organization_id: str) -> OrgMembership | None:
        return next((m for m in self.organizations if m.id == organization_id), None)

    def _at_least(self, organization_id: str, division_id: str | None, role: str) -> bool:
        if self.service:
            return True
        member = self.membership(organization_id)
        return member is not None and _RANK[member.role] >= _RANK[role] and member.covers(division_id)

    def can_read(self, organization_id: str, division_id: str | None = None) -> bool:
        return self._at_least(organization_id, division_id, "viewer")

    def can_write(self, organization_id: str, division_id: str | None = None) -> bool:
        return self._at_least(organization_id, division_id, "member")

    def can_admin(self, organization_id: str) -> bool:
        """Manage members, read the audit log, broadcast, delete boards: admins and owners of the
        whole organization (a division list on an admin membership withholds these rights)."""
        if self.service:
            return True
        member = self.membership(organization_id)
        return member is not None and _RANK[member.role] >= _RANK["admin"] and member.divisions is None

    def require_admin(self, organization_id: str, what: str) -> None:
        if not self.can_admin(organization_id):
            raise _refused(f"{what} needs the organization's admin or owner role", organization_id)

    def require_read(self, organization_id: str, division_id: str | None = None) -> None:
        if not self.can_read(organization_id, division_id):
            raise _refused("no access to this organization or division", organization_id)

    def require_write(self, organization_id: str, division_id: str | None = None) -> None:
        if not self.can_write(organization_id, division_id):
            if self.can_read(organization_id, division_id):
                raise _refused("read-only access: viewers cannot change boards", organization_id)
            raise _refused("no access to this organization or division", organization_id)

    def to_claims(self) -> dict[str, Any]:
        return {
            "sub": self.sub,
            "email": self.email,
            "role": self.role,
            "organizations": [m.to_dict() for m in self.organizations],
            "mv": self.version,
        }

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Scope:
        orgs = tuple(
            OrgMembership(o["id"], o["role"], tuple(o["divisions"]) if o.get("divisions") is not None else None)
            for o in claims.get("organizations") or []
        )
        return cls(
            sub=claims.get("sub"),
            email=claims.get("email"),
            role=claims.get("role", "authenticated"),
            organizations=orgs,
            service=claims.get("role") == "service_role",
            expires_at=int(claims.get("exp", 0)),
            version=int(claims.get("mv") or 0),
        )


def _public_jwk(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": SCOPE_ALGORITHM})
    return jwk


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """A stable kid: the RFC 7638 thumbprint, so every replica with the same key agrees."""
    import base64
    import hashlib
    import json

    jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


@dataclass
class ScopeSigner:
    """Auth's signing side: one current key, plus retired public keys still published for rotation."""

    private_key: ec.EllipticCurvePrivateKey
    retired: list[ec.EllipticCurvePublicKey] = field(default_factory=list)

    @classmethod
    def from_pem(cls, pem: str, retired_pems: list[str] | None = None) -> ScopeSigner:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("AUTH_SCOPE_SIGNING_KEY must be an EC P-256 private key (PEM)")
        retired = [serialization.load_pem_public_key(p.encode()) for p in retired_pems or []]
        return cls(key, retired)  # type: ignore[arg-type]

    @classmethod
    def generate(cls) -> ScopeSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @property
    def kid(self) -> str:
        return key_id(self.private_key.public_key())

    def jwks(self) -> dict[str, Any]:
        keys = [_public_jwk(self.private_key.public_key(), self.kid)]
        keys += [_public_jwk(pub, key_id(pub)) for pub in self.retired]
        return {"keys": keys}

    def sign(self, scope: Scope, expires_at: int) -> str:
        now = int(time.time())
        claims = {**scope.to_claims(), "iss": SCOPE_ISSUER, "aud": SCOPE_AUDIENCE, "iat": now, "exp": expires_at}
        return jwt.encode(claims, self.private_key, algorithm=SCOPE_ALGORITHM, headers={"kid": self.kid})


class ScopeVerifier:
    """Verifies scope tokens against auth's JWKS: cached, refetched on an unknown kid at most once
    per ``cooldown`` seconds (random kids cannot make us hammer auth)."""

    def __init__(
        self,
        jwks_url: str | None = None,
        *,
        jwks: dict[str, Any] | None = None,
        cooldown: float = 30.0,
        leeway: int = 5,
    ) -> None:
        self.jwks_url = jwks_url
        self.cooldown = cooldown
        self.leeway = leeway
        self._keys: dict[str, Any] = {}
        self._fetched_at = -1e9
        self._lock = asyncio.Lock()
        self.fetches = 0
        if jwks is not None:
            self._load(jwks)

    def _load(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for entry in jwks.get("keys", []):
            if entry.get("kty") == "EC" and entry.get("kid"):
                keys[entry["kid"]] = ECAlgorithm.from_jwk(entry)
        self._keys = keys

    async def _refresh(self) -> None:
        if self.jwks_url is None:
            return
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.cooldown:
                return
            self._fetched_at = time.monotonic()
            self.fetches += 1
            try:
                timeout = aiohttp.ClientTimeout(total=5)
                async with aiohttp.ClientSession(timeout=timeout) as session, session.get(self.jwks_url) as response:
                    response.raise_for_status()
                    self._load(await response.json())
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise ApiError("unavailable", f"cannot fetch scope keys: {exc}") from None

    async def verify(self, token: str) -> Scope:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise ApiError("unauthorized", "malformed scope token") from None
        if header.get("alg") != SCOPE_ALGORITHM:
            raise ApiError("unauthorized", "scope tokens are ES256")
        kid = header.get("kid")
        if kid not in self._keys:
            await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise ApiError("unauthorized", "unknown scope key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[SCOPE_ALGORITHM],
                audience=SCOPE_AUDIENCE,
                issuer=SCOPE_ISSUER,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise ApiError("unauthorized", "scope token expired", reason="expired") from None
        except jwt.InvalidTokenError as exc:
            raise ApiError("unauthorized", f"invalid scope token: {exc}") from None
        return Scope.from_claims(claims)


def is_scope_token(token: str) -> bool:
    """Whether ``token`` claims to be one of ours (routing only; verification decides)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss") == SCOPE_ISSUER
    except jwt.InvalidTokenError:
        return False
