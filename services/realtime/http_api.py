"""Realtime REST (CONTRACT §4): health, stats, rooms, admin broadcast.

Stats, rooms and broadcast need a Supabase ``service_role`` key (everything) or a user token of
an organization admin, who sees and reaches only their own organizations' rooms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from libs.common.audit_feed import CALLER_ID
from libs.common.errors import ApiError
from libs.common.identity import bearer_token
from libs.common.messaging import NATS_CLIENT
from libs.common.web import documented, json_response, read_json

from .namespace import NAMESPACE
from .rooms import room_kind, room_organization
from .server import RESERVED_EVENTS, WebSocketServer

WS_SERVER = web.AppKey("websocket_server", WebSocketServer)


@dataclass(frozen=True)
class Admin:
    organizations: frozenset[str] | None  # None: every organization (service_role)

    def sees(self, organization_id: str | None) -> bool:
        return self.organizations is None or organization_id in self.organizations


async def admin_of(request: web.Request) -> Admin:
    scope = await request.app[WS_SERVER].access.scope(bearer_token(request.headers), service_role=True)
    if scope.sub:
        request[CALLER_ID] = scope.sub
    if scope.service:
        return Admin(None)
    orgs = frozenset(m.id for m in scope.organizations if scope.can_admin(m.id))
    if not orgs:
        raise ApiError("forbidden", "organization admins only")
    return Admin(orgs)


async def health(request: web.Request) -> web.Response:
    """Socket server health: connections and whether NATS is reachable (no authentication)."""
    server = request.app[WS_SERVER]
    client = request.app.get(NATS_CLIENT)
    nats_ok = bool(client and client.is_connected)
    status = "draining" if server.draining else ("healthy" if nats_ok else "degraded")
    return json_response(
        {"status": status, "active_connections": len(server.manager.sessions), "nats_connected": nats_ok},
        status=200 if status == "healthy" else 503,
    )


async def stats(request: web.Request) -> web.Response:
    """The seed's statistics (``server_stats``, ``manager_stats``, ``status``), scoped to the caller."""
    admin = await admin_of(request)
    server = request.app[WS_SERVER]
    body = server.manager.snapshot(set(admin.organizations) if admin.organizations is not None else None)
    # Open Engine.IO transports that have no admitted namespace yet belong to no organization:
    # server-wide, for service_role only (docs/decisions.md).
    body["server_stats"]["unauthenticated_transports"] = (
        server.guard.unauthenticated_count() if admin.organizations is None else 0
    )
    body["status"] = "draining" if server.draining else "healthy"
    return json_response(body)


async def rooms(request: web.Request) -> web.Response:
    """Rooms with members on this replica, scoped to the caller's organizations."""
    admin = await admin_of(request)
    manager = request.app[WS_SERVER].manager
    visible = set(admin.organizations) if admin.organizations is not None else None
    listing = [
        {"room": room, "type": room_kind(room), "members": members}
        for room, members in sorted(manager.room_counts(visible).items())
    ]
    return json_response({"rooms": listing, "total_rooms": len(listing)})


class BroadcastBody(BaseModel):
    room: str = Field(min_length=1, max_length=200)
    event: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    data: dict[str, Any] = Field(default_factory=dict)


@documented(BroadcastBody)
async def broadcast(request: web.Request) -> web.Response:
    """Emit ``event`` with ``data`` to a room on every replica (admins: their organizations only)."""
    admin = await admin_of(request)
    body = await read_json(request, BroadcastBody, max_bytes=request.app[WS_SERVER].config.max_message_bytes)
    if body.event in RESERVED_EVENTS:
        raise ApiError("invalid_payload", f"{body.event!r} is reserved for the server")
    server = request.app[WS_SERVER]
    kind = room_kind(body.room)
    if kind == "board":
        token = bearer_token(request.headers)
        if admin.organizations is None:
            organization_id = server.manager.board_orgs.get(body.room[6:])
        else:
            scope_token, _ = await server.scopes.scope_for(token)
            organization_id = (await server.boards.access(scope_token, body.room[6:]))["organization_id"]
    elif kind in ("org", "division"):
        organization_id = room_organization(body.room)
    else:
        raise ApiError("invalid_payload", "room must be board:<id>, org:<id> or org:<id>:div:<id>")
    if not admin.sees(organization_id):
        raise ApiError("forbidden", "that room belongs to another organization")
    await server.sio.emit(
        body.event,
        {"event_type": body.event, "data": body.data, "room": body.room},
        room=body.room,
        namespace=NAMESPACE,
    )
    return json_response({"ok": True, "room": body.room, "event": body.event})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/websocket/health", health)
    app.router.add_get("/api/v1/websocket/stats", stats)
    app.router.add_get("/api/v1/websocket/rooms", rooms)
    app.router.add_post("/api/v1/websocket/broadcast", broadcast)
