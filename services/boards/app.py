"""The boards service's application factory."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from libs.common.service import service_app
from libs.common.settings import CommonSettings, load_settings

MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(CommonSettings):
    pass


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="boards")
    return service_app(
        "boards",
        settings,
        schema="boards",
        migrations_dir=MIGRATIONS,
        description="Boards, columns, cards; ordered board events.",
        make_global_tracer=make_global_tracer,
    )
