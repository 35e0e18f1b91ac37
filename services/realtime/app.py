"""The realtime service's application factory (and the seed's test helper)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from libs.common.service import service_app
from libs.common.settings import load_settings
from libs.common.web import METRICS, TRACER, UNTRACED_PREFIXES

from . import demo, http_api
from .config import Settings, WebSocketConfig
from .server import WebSocketServer

__all__ = ["Settings", "WebSocketConfig", "create_app", "create_test_websocket_app"]


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="realtime")
    app = service_app(
        "realtime",
        settings,
        description="Socket.IO rooms for live boards.",
        make_global_tracer=make_global_tracer,
        client_max_size=settings.transport_max_bytes,
    )
    # Long-lived Engine.IO requests are not one "request" each: no per-request span or histogram.
    app[UNTRACED_PREFIXES] = ("/socket.io/", "/static/")
    server = WebSocketServer(settings, app[TRACER], app[METRICS])
    app[http_api.WS_SERVER] = server
    server.attach(app)
    http_api.add_routes(app)
    demo.add_routes(app)
    return app


async def create_test_websocket_app(**overrides: Any) -> web.Application:
    """The seed's integration-test helper: a realtime app from the environment plus ``overrides``."""
    return create_app(load_settings(Settings, service_name="realtime", **overrides))
