"""The SDK's Node tests against the real stack: auth, boards and realtime (in-process, real NATS
and Postgres) plus a small control server through which a Node test arranges what only the
test suite may do — organizations and members, tokens with a chosen lifetime, a
``resync_required`` from realtime, pruning a board's events as retention would."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from services.realtime.http_api import WS_SERVER
from services.realtime.rooms import board_room
from tests.realtime.conftest import Stack, make_stack, stack  # noqa: F401  (fixtures: importing registers them)

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "clients" / "js"
NODE = shutil.which("node")

needs_sdk_build = pytest.mark.skipif(
    NODE is None or not (SDK / "node_modules").exists() or not (SDK / "dist" / "index.js").exists(),
    reason="needs node and the SDK built (`make sdk` runs npm ci and the build; make test does it)",
)


def control_app(live: Stack, database_url: str) -> web.Application:
    async def setup(request: web.Request) -> web.Response:
        """``{users: {name: role}, columns?: [...], cards?: n}`` → an organization with those
        members and a board created by the first owner."""
        body = await request.json()
        users = {name: live.user(name) for name in body["users"]}
        org = await live.organization(**{name: (users[name], role) for name, role in body["users"].items()})
        owner = next(users[name] for name, role in body["users"].items() if role == "owner")
        snapshot = await live.board(
            org, owner, columns=tuple(body.get("columns", ("To do", "Doing", "Done"))), cards=body.get("cards", 3)
        )
        return web.json_response(
            {
                "organization_id": org,
                "division_id": snapshot["board"]["division_id"],
                "board_id": snapshot["board"]["id"],
                "snapshot": snapshot,
                "users": {name: {"id": u.id, "email": u.email, "token": u.token} for name, u in users.items()},
            }
        )

    async def token(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {"token": live.tokens.user(body["sub"], body["email"], ttl=int(body.get("ttl", 3600)))}
        )

    async def resync(request: web.Request) -> web.Response:
        """What realtime sends a room when it cannot fill a gap (feeds.py)."""
        body = await request.json()
        server = live.realtime_app[WS_SERVER]
        await server.sio.emit(
            "resync_required", {"board_id": body["board_id"]}, room=board_room(body["board_id"]), namespace="/workspace"
        )
        return web.json_response({"ok": True})

    async def prune(request: web.Request) -> web.Response:
        """What retention does (boards' Outbox.housekeeping), for the board's events up to ``seq``."""
        body = await request.json()
        conn = await asyncpg.connect(database_url, server_settings={"search_path": "boards"})
        try:
            status = await conn.execute(
                "DELETE FROM kanban_board_events WHERE board_id = $1 AND seq <= $2 AND published_at IS NOT NULL",
                body["board_id"],
                int(body["seq"]),
            )
            oldest = await conn.fetchval(
                "SELECT min(seq) FROM kanban_board_events WHERE board_id = $1", body["board_id"]
            )
        finally:
            await conn.close()
        return web.json_response({"deleted": int(status.split()[-1]), "oldest": oldest})

    app = web.Application()
    app.router.add_post("/setup", setup)
    app.router.add_post("/token", token)
    app.router.add_post("/resync", resync)
    app.router.add_post("/prune", prune)
    return app
