"""The audit query API (CONTRACT §5): list an organization's activity, verify its chain.

Order of checks: who is asking (401), is the question well formed (400), may they ask it (403).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from libs.common.db import PG_POOL
from libs.common.web import documented, json_response, validate

from . import chain, queries
from .access import caller_scope, require_audit_reader

_SCHEMAS = {
    "limit": {"type": "integer", "minimum": 1, "maximum": queries.MAX_LIMIT, "default": queries.DEFAULT_LIMIT},
    "since": {"type": "string", "format": "date-time"},
}


def _parameters(model: type[BaseModel]) -> list[dict]:
    return [
        {"name": name, "in": "query", "required": field.is_required(), "schema": _SCHEMAS.get(name, {"type": "string"})}
        for name, field in model.model_fields.items()
    ]


@documented(
    parameters=_parameters(queries.EventQuery),
    security=[{"bearer": []}],
    description=(
        "Newest first. `organization_id` is required (`:global` is the chain of security events of no "
        "organization, service_role only). Pass `next_cursor` back as `cursor` for the next page; rows "
        "stored meanwhile never shift pages. `limit` defaults to 100, at most 1000. `since` is an ISO 8601 time."
    ),
)
async def list_events(request: web.Request) -> web.Response:
    """An organization's activity log (admins of that organization, or service_role)."""
    scope = await caller_scope(request)
    query = validate(queries.EventQuery, dict(request.query))
    require_audit_reader(scope, query.organization_id)
    async with request.app[PG_POOL].acquire() as conn:
        return json_response(await queries.list_events(conn, query))


@documented(
    parameters=_parameters(queries.ChainQuery),
    security=[{"bearer": []}],
    description=(
        "Walks the organization's hash chain from its retention anchor to its head and reports "
        '`{"ok", "rows", "first_broken": {"id", "event_id", "chain_pos", "reason", "message"} | null}`.'
    ),
)
async def verify_chain(request: web.Request) -> web.Response:
    """Check that nobody altered, removed or reordered an organization's audit rows."""
    scope = await caller_scope(request)
    query = validate(queries.ChainQuery, dict(request.query))
    require_audit_reader(scope, query.organization_id)
    async with request.app[PG_POOL].acquire() as conn:
        result = await chain.verify(conn, query.organization_id)
    return json_response({"organization_id": query.organization_id, **result.to_dict()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/audit/events", list_events)
    app.router.add_get("/v1/audit/verify", verify_chain)
