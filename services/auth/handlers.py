"""Auth's HTTP API (CONTRACT §3): token exchange, scope-token keys, organizations and memberships.

Handlers are thin: authenticate, validate the body, run one transaction from ``memberships``,
announce what changed after commit, answer. Refusals are reported by the shared
``libs.common.audit_feed.report_refusals`` middleware.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.common.audit_feed import CALLER_ID
from libs.common.bounds import StorableText
from libs.common.db import PG_POOL
from libs.common.errors import ApiError
from libs.common.identity import Identity, bearer_token
from libs.common.ids import ID_PATTERN, ID_RE
from libs.common.messaging import NATS_CLIENT
from libs.common.web import TRACER, documented, json_response, read_json

from . import memberships
from .events import publish_membership_changes
from .state import AUTH, IDENTITY
from .tokens import exchange

_ID_RE = ID_RE

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), StorableText]
BEARER = [{"bearer": []}]

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=320, pattern=r"^[^@\s]+@\S+$"),
    StorableText,
]


class OrganizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Id | None = None
    name: Name


class DivisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Id | None = None
    name: Name


class MemberIn(BaseModel):
    """``divisions`` omitted or null: every division of the organization."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["owner", "admin", "member", "viewer"]
    divisions: Annotated[list[Id], Field(min_length=1, max_length=1000)] | None = None
    email: Email | None = None


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID_RE.fullmatch(value):
        raise ApiError("invalid_payload", f"{name} must be 1-64 characters of [A-Za-z0-9_-]")
    return value


async def authenticate(request: web.Request) -> Identity:
    """The verified Supabase caller (user or service_role key), remembered for refusal reports."""
    identity = await request.app[AUTH].verifier.verify(bearer_token(request.headers))
    request[IDENTITY] = identity
    if identity.sub:
        request[CALLER_ID] = identity.sub
    return identity


def _created(body: Any, created: bool) -> web.Response:
    return json_response(body, status=201 if created else 200)


@documented(security=BEARER)
async def token_exchange(request: web.Request) -> web.Response:
    """Exchange a Supabase access token (Bearer) for a short-lived scope token and its claims."""
    body = await exchange(request.app[AUTH], request.app[PG_POOL], bearer_token(request.headers))
    return json_response(body, headers={"Cache-Control": "no-store"})


async def jwks(request: web.Request) -> web.Response:
    """Public keys that verify scope tokens (current and retired)."""
    return json_response(request.app[AUTH].signer.jwks(), headers={"Cache-Control": "public, max-age=300"})


@documented(body=OrganizationIn, security=BEARER)
async def create_organization(request: web.Request) -> web.Response:
    """Create an organization; a user who creates one becomes its owner (service_role: ownerless)."""
    caller = await authenticate(request)
    payload: OrganizationIn = await read_json(request, OrganizationIn)
    async with request.app[PG_POOL].acquire() as conn:
        body, created, changes = await memberships.create_organization(conn, caller, payload.id, payload.name)
    await publish_membership_changes(request.app[NATS_CLIENT], request.app[TRACER], changes)
    return _created(body, created)


@documented(security=BEARER)
async def list_organizations(request: web.Request) -> web.Response:
    """The caller's organizations, with their role and divisions there."""
    caller = await authenticate(request)
    async with request.app[PG_POOL].acquire() as conn:
        organizations = await memberships.organizations_of(conn, caller)
    return json_response({"organizations": organizations})


@documented(body=DivisionIn, security=BEARER)
async def create_division(request: web.Request) -> web.Response:
    """Create a division of an organization (owners, admins, service_role)."""
    caller = await authenticate(request)
    organization_id = path_id(request, "org")
    payload: DivisionIn = await read_json(request, DivisionIn)
    async with request.app[PG_POOL].acquire() as conn:
        body, created = await memberships.create_division(conn, caller, organization_id, payload.id, payload.name)
    return _created(body, created)


@documented(security=BEARER)
async def list_divisions(request: web.Request) -> web.Response:
    """An organization's divisions (any member)."""
    caller = await authenticate(request)
    organization_id = path_id(request, "org")
    async with request.app[PG_POOL].acquire() as conn:
        divisions = await memberships.list_divisions(conn, caller, organization_id)
    return json_response({"organization_id": organization_id, "divisions": divisions})


@documented(body=MemberIn, security=BEARER)
async def put_member(request: web.Request) -> web.Response:
    """Add a member or replace their role/divisions (owners, admins, service_role)."""
    caller = await authenticate(request)
    organization_id = path_id(request, "org")
    user_id = path_id(request, "user_id")
    payload: MemberIn = await read_json(request, MemberIn)
    async with request.app[PG_POOL].acquire() as conn:
        body, created, change = await memberships.put_member(
            conn,
            caller,
            organization_id,
            user_id,
            role=payload.role,
            divisions=payload.divisions,
            email=payload.email,
            email_given="email" in payload.model_fields_set,
        )
    if change is not None:
        await publish_membership_changes(request.app[NATS_CLIENT], request.app[TRACER], [change])
    return _created(body, created)


@documented(security=BEARER)
async def delete_member(request: web.Request) -> web.Response:
    """Remove a member (owners, admins, service_role; the last owner stays)."""
    caller = await authenticate(request)
    organization_id = path_id(request, "org")
    user_id = path_id(request, "user_id")
    async with request.app[PG_POOL].acquire() as conn:
        change = await memberships.remove_member(conn, caller, organization_id, user_id)
    await publish_membership_changes(request.app[NATS_CLIENT], request.app[TRACER], [change])
    return web.Response(status=204)


@documented(security=BEARER)
async def list_members(request: web.Request) -> web.Response:
    """An organization's members (owners, admins, service_role)."""
    caller = await authenticate(request)
    organization_id = path_id(request, "org")
    async with request.app[PG_POOL].acquire() as conn:
        members = await memberships.list_members(conn, caller, organization_id)
    return json_response({"organization_id": organization_id, "members": members})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/token/exchange", token_exchange)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_post("/v1/organizations", create_organization)
    app.router.add_get("/v1/organizations", list_organizations)
    app.router.add_post("/v1/organizations/{org}/divisions", create_division)
    app.router.add_get("/v1/organizations/{org}/divisions", list_divisions)
    app.router.add_put("/v1/organizations/{org}/members/{user_id}", put_member)
    app.router.add_delete("/v1/organizations/{org}/members/{user_id}", delete_member)
    app.router.add_get("/v1/organizations/{org}/members", list_members)
