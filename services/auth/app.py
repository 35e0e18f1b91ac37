"""The auth service's application factory."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from libs.common.service import service_app
from libs.common.settings import CommonSettings, env, load_settings

MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(CommonSettings):
    auth_scope_signing_key: str | None = env("AUTH_SCOPE_SIGNING_KEY", default=None)


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="auth")
    return service_app(
        "auth",
        settings,
        schema="auth",
        migrations_dir=MIGRATIONS,
        description="Identity, organizations, memberships and scope tokens.",
        make_global_tracer=make_global_tracer,
    )
