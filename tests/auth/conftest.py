"""Auth test fixtures: a local JWKS server and the auth app (real Postgres and NATS from
tests/conftest.py) trusting both the test HS256 secret and that JWKS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from .helpers import JwksServer, ec_key, rsa_key


@pytest.fixture
async def jwks_server(aiohttp_server: Callable[..., Awaitable[Any]]) -> JwksServer:
    server = JwksServer()
    server.add("ec-1", ec_key("ec-1"))
    server.add("rsa-1", rsa_key("rsa-1"))
    app = web.Application()
    app.router.add_get("/auth/v1/.well-known/jwks.json", server.handle)
    running = await aiohttp_server(app, host="127.0.0.1")
    server.url = str(running.make_url("/auth/v1/.well-known/jwks.json"))
    return server


@pytest.fixture
def auth_app(make_app: Callable[..., Any], jwks_server: JwksServer) -> Callable[..., web.Application]:
    """``auth_app(**settings)``: the auth app trusting the test secret and the local JWKS."""

    def build(**overrides: Any) -> web.Application:
        values: dict[str, Any] = {"supabase_jwks_url": jwks_server.url, "supabase_jwks_cooldown": 0.2}
        values.update(overrides)
        return make_app("auth", **values)

    return build


@pytest.fixture
async def auth(auth_app: Callable[..., web.Application], aiohttp_client: Callable[..., Awaitable[TestClient]]):
    return await aiohttp_client(auth_app())
