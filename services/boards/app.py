"""The boards service's application factory: settings, and the wiring of its parts.

``create_app`` builds on ``service_app`` (tracing, health, NATS, the Postgres pool and the
migrations in ``migrations/``) and adds one ``cleanup_ctx`` resource that owns everything boards
runs: the actions layer, the queries, token verification, the outbox relay and the NATS API.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import ValidationInfo, field_validator

from libs.common.audit_feed import AUDIT_FEED
from libs.common.db import PG_POOL
from libs.common.messaging import NATS_CLIENT, NATS_RECONNECT_HOOKS
from libs.common.service import service_app
from libs.common.settings import CommonSettings, env, load_settings
from libs.common.web import METRICS, TRACER

from .access import ACCESS, Access
from .actions import Actions
from .faults import exit_after_commits
from .handlers import ACTIONS, QUERIES, add_routes
from .nats_api import NatsApi
from .ordering import DEFAULT_MAX_LENGTH
from .outbox import Outbox, OutboxConfig
from .queries import Queries
from .references import References

MIGRATIONS = Path(__file__).parent / "migrations"
OUTBOX = web.AppKey("boards_outbox", Outbox)


class Settings(CommonSettings):
    pool_size: int = env("BOARDS_POOL_SIZE", default=20, ge=2, le=500)
    event_retention_days: float | None = env("BOARDS_EVENT_RETENTION_DAYS", default=None, gt=0)
    client_op_retention_hours: float = env("BOARDS_CLIENT_OP_RETENTION_HOURS", default=168.0, gt=0)
    relay_interval: float = env("BOARDS_RELAY_INTERVAL", default=5.0, gt=0)
    rank_max_length: int = env("BOARDS_RANK_MAX_LENGTH", default=DEFAULT_MAX_LENGTH, ge=4, le=255)
    # Test hooks: the first must be set for the second to be accepted at all.
    test_hooks: bool = env("LIVEBOARD_TEST_HOOKS", default=False)
    fault_exit_after_commit: int = env("BOARDS_FAULT_EXIT_AFTER_COMMIT", default=0, ge=0)

    @field_validator("fault_exit_after_commit")
    @classmethod
    def _only_with_test_hooks(cls, value: int, info: ValidationInfo) -> int:
        if value and not info.data.get("test_hooks"):
            raise ValueError("is a test-only crash hook and requires LIVEBOARD_TEST_HOOKS=1")
        return value


def boards_ctx(settings: Settings) -> Any:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool, client, tracer = app[PG_POOL], app[NATS_CLIENT], app[TRACER]
        outbox = Outbox(
            pool,
            lambda: asyncpg.connect(settings.database_url, timeout=5),
            lambda: client,
            tracer,
            OutboxConfig(
                replicas=settings.nats_stream_replicas,
                sweep_interval=settings.relay_interval,
                retention_days=settings.event_retention_days,
                client_op_retention_hours=settings.client_op_retention_hours,
            ),
            registry=app[METRICS],
        )
        hooks = [outbox.publish]
        if settings.fault_exit_after_commit:
            hooks.insert(0, exit_after_commits(settings.fault_exit_after_commit))
        actions = Actions(
            pool,
            tracer,
            rank_max_length=settings.rank_max_length,
            after_commit=hooks,
            registry=app[METRICS],
            references=References(lambda: client, tracer),
        )
        queries = Queries(pool)
        access = Access.from_settings(settings, nats=client, tracer=tracer)
        await access.follow_membership_changes(client)
        app[ACTIONS], app[QUERIES], app[ACCESS], app[OUTBOX] = actions, queries, access, outbox
        await outbox.ensure_stream()  # best effort: the relay declares it later if NATS is not ready
        app[NATS_RECONNECT_HOOKS].append(outbox.nats_reconnected)  # NATS may have lost writes: rewind
        relay = asyncio.create_task(outbox.run(), name="boards-outbox-relay")
        api = NatsApi(client, tracer, access, actions, queries, feed=app[AUDIT_FEED])
        await api.start()
        yield
        await api.stop()
        await outbox.flush(timeout=2.0)  # what is left is published by the next relay pass anywhere
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        await access.close()

    return ctx


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="boards")
    app = service_app(
        "boards",
        settings,
        schema="boards",
        migrations_dir=MIGRATIONS,
        description="Boards, columns, cards; ordered board events.",
        make_global_tracer=make_global_tracer,
        pool_max_size=settings.pool_size,
    )
    app.cleanup_ctx.append(boards_ctx(settings))
    add_routes(app)
    return app
