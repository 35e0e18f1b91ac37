"""The realtime service's application factory."""

from __future__ import annotations

from aiohttp import web

from libs.common.service import service_app
from libs.common.settings import CommonSettings, load_settings


class Settings(CommonSettings):
    pass


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="realtime")
    return service_app(
        "realtime", settings, description="Socket.IO rooms for live boards.", make_global_tracer=make_global_tracer
    )
