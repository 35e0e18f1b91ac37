"""The audit service's application factory."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from libs.common.service import service_app
from libs.common.settings import CommonSettings, env, load_settings

MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(CommonSettings):
    audit_retention_days: int = env("AUDIT_RETENTION_DAYS", default=365, ge=1)


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="audit")
    return service_app(
        "audit",
        settings,
        schema="audit",
        migrations_dir=MIGRATIONS,
        description="Tamper-evident activity and security log.",
        make_global_tracer=make_global_tracer,
    )
