"""The auth service's application factory: identity, organizations, memberships, scope tokens.

Start-up fails closed: no scope signing key, no Supabase secret/JWKS, or no issuer is a one-line
configuration error rather than a service that cannot vouch for anyone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from libs.common.errors import ApiError
from libs.common.identity import SupabaseVerifier
from libs.common.service import service_app
from libs.common.settings import load_settings

from .config import Settings
from .handlers import add_routes
from .responder import exchange_responder
from .state import AUTH, AuthState
from .tokens import load_signer

__all__ = ["MIGRATIONS", "Settings", "create_app"]

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="auth")
    state = AuthState(
        settings=settings,
        signer=load_signer(settings),
        verifier=SupabaseVerifier.from_settings(settings, jwks_cooldown=settings.supabase_jwks_cooldown),
    )
    app = service_app(
        "auth",
        settings,
        schema="auth",
        migrations_dir=MIGRATIONS,
        description="Identity, organizations, memberships and scope tokens.",
        make_global_tracer=make_global_tracer,
    )
    app[AUTH] = state
    add_routes(app)
    app.cleanup_ctx.append(exchange_responder)
    app.cleanup_ctx.append(jwks_prefetch)
    return app


async def jwks_prefetch(app: web.Application) -> AsyncIterator[None]:
    """Load Supabase's JWKS before the first request (best effort: it is fetched lazily otherwise)."""
    verifier = app[AUTH].verifier
    if verifier.jwks is not None:
        with contextlib.suppress(ApiError):  # logged by refresh; the first asymmetric token retries
            await verifier.jwks.refresh()
    yield
    await verifier.close()
