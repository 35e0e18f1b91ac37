"""The skeleton every service app is built on: tracing, base endpoints, NATS, Postgres, readiness.

A service's ``create_app`` calls ``service_app`` and then adds its routes and its own resources;
this keeps the wiring of shared dependencies in one place instead of four copies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import Gauge

from .audit_feed import audit_feed_ctx, report_refusals
from .db import PG_POOL, pg_pool_ctx, pg_ready
from .messaging import NATS_CLIENT, nats_ctx
from .settings import CommonSettings, ConfigError
from .tasks import stop_tasks
from .tracing import setup_tracing
from .web import METRICS, READINESS, SETTINGS, ServiceInfo, base_app

#: Seconds between background dependency probes that keep the health gauges current.
PROBE_INTERVAL = 5.0


def instrument_asyncpg(provider: TracerProvider) -> None:
    """Spans for every asyncpg query. The instrumentation patches asyncpg globally, so it is only
    used in a real one-service process (``liveboard serve``), never in in-process tests."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)


def service_app(
    name: str,
    settings: CommonSettings,
    *,
    schema: str | None = None,
    migrations_dir: Path | None = None,
    description: str = "",
    client_max_size: int = 1 << 20,
    make_global_tracer: bool = False,
    pool_max_size: int = 10,
) -> web.Application:
    """A ready-wired application for service ``name`` (Postgres only when ``schema`` is given)."""
    provider = setup_tracing(
        settings.otel_service_name or name,
        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        trace_file=settings.trace_file,
        make_global=make_global_tracer,
    )
    if make_global_tracer and schema is not None:
        instrument_asyncpg(provider)
    app = base_app(
        ServiceInfo(name, description=description),
        provider.get_tracer(f"liveboard.{name}"),
        client_max_size=client_max_size,
        middlewares=[report_refusals],
        trusted_proxies=settings.trusted_networks,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(nats_ctx(settings, name))
    app.cleanup_ctx.append(audit_feed_ctx(name, settings))
    readiness = app[READINESS]

    async def nats_ok() -> bool:
        client = app.get(NATS_CLIENT)
        return bool(client and client.is_connected)

    readiness.checks["nats"] = nats_ok
    if schema is not None:
        if not settings.database_url:
            raise ConfigError(f"configuration error: DATABASE_URL is required by the {name} service")
        app.cleanup_ctx.append(
            pg_pool_ctx(
                settings.database_url, schema, migrations_dir, migrate=settings.migrate_on_start, max_size=pool_max_size
            )
        )

        async def postgres_ok() -> bool:
            pool = app.get(PG_POOL)
            return pool is not None and await pg_ready(pool)

        readiness.checks["postgres"] = postgres_ok

    up = Gauge(
        "liveboard_dependency_up",
        "1 when the dependency answered the last probe",
        ["dependency"],
        registry=app[METRICS],
    )

    async def probe(app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await readiness.report()
                for dependency, ok in readiness.last.items():
                    up.labels(dependency).set(1 if ok else 0)
                await asyncio.sleep(PROBE_INTERVAL)

        task = asyncio.create_task(loop(), name=f"{name}-dependency-probe")
        yield
        await stop_tasks([task])

    app.cleanup_ctx.append(probe)

    async def flush_traces(app: web.Application) -> None:
        provider.shutdown()

    app.on_cleanup.append(flush_traces)
    return app
