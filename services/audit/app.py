"""The audit service's application factory: consumers, periodic jobs and the query API, wired.

Resources start in ``cleanup_ctx`` order after the shared NATS connection and Postgres pool
(``service_app``), so they stop first: on SIGTERM the consumers stop fetching, finish and ack the
batch in hand, and only then are the pool closed and NATS drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from libs.common.access import Access
from libs.common.db import PG_POOL
from libs.common.messaging import JETSTREAM, NATS_CLIENT
from libs.common.service import service_app
from libs.common.settings import CommonSettings, env, load_settings
from libs.common.subjects import BOARD_EVENTS_STREAM, BOARD_EVENTS_WILDCARD, SECURITY_STREAM, SECURITY_WILDCARDS
from libs.common.web import METRICS, SETTINGS, TRACER

from . import chain
from .access import ACCESS
from .consumer import AuditConsumer, ConsumerSpec
from .handlers import add_routes
from .metrics import AUDIT_METRICS, AuditMetrics

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class Settings(CommonSettings):
    audit_retention_days: int = env("AUDIT_RETENTION_DAYS", default=365, ge=1)
    audit_retention_interval: float = env("AUDIT_RETENTION_INTERVAL", default=3600.0, gt=0)
    #: Prefix of the durable consumer names; every replica of one deployment shares it.
    audit_consumer_name: str = env("AUDIT_CONSUMER_NAME", default="audit", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    audit_fetch_batch: int = env("AUDIT_FETCH_BATCH", default=100, ge=1, le=1000)
    audit_lag_interval: float = env("AUDIT_LAG_INTERVAL", default=5.0, gt=0)
    #: Seconds before JetStream redelivers a message a crashed replica had fetched but not acked.
    audit_ack_wait: float = env("AUDIT_ACK_WAIT", default=30.0, ge=1)


CONSUMERS = web.AppKey("audit_consumers", list)


def consumer_specs(prefix: str) -> list[ConsumerSpec]:
    return [
        ConsumerSpec(BOARD_EVENTS_STREAM, (BOARD_EVENTS_WILDCARD,), f"{prefix}-board-events"),
        ConsumerSpec(SECURITY_STREAM, SECURITY_WILDCARDS, f"{prefix}-security-events"),
    ]


async def consumers_ctx(app: web.Application) -> AsyncIterator[None]:
    settings: Settings = app[SETTINGS]  # type: ignore[assignment]
    consumers = [
        AuditConsumer(
            spec,
            js=app[JETSTREAM],
            pool=app[PG_POOL],
            tracer=app[TRACER],
            metrics=app[AUDIT_METRICS],
            batch=settings.audit_fetch_batch,
            ack_wait=settings.audit_ack_wait,
            replicas=settings.nats_stream_replicas,
        )
        for spec in consumer_specs(settings.audit_consumer_name)
    ]
    app[CONSUMERS] = consumers
    tasks = [asyncio.create_task(c.run(), name=f"audit-consume-{c.spec.stream}") for c in consumers]
    yield
    for consumer in consumers:
        consumer.stop()
    _, pending = await asyncio.wait(tasks, timeout=settings.shutdown_timeout)
    for task in pending:  # stuck on a dead dependency: unacked messages are simply redelivered
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def access_ctx(app: web.Application) -> AsyncIterator[None]:
    """Token verification (scope tokens, Supabase user tokens via auth, service_role), following
    membership changes so a demoted admin loses the log within a second."""
    settings: Settings = app[SETTINGS]  # type: ignore[assignment]
    access = Access.from_settings(settings, nats=app[NATS_CLIENT], tracer=app[TRACER])
    await access.follow_membership_changes(app[NATS_CLIENT])
    app[ACCESS] = access
    yield
    await access.close()


async def stop_fetching(app: web.Application) -> None:
    """On SIGTERM, before cleanup: no new batches (the one in hand still finishes)."""
    for consumer in app.get(CONSUMERS, []):
        consumer.stop()


def periodic(
    name: str, interval: Callable[[Settings], float], job: Callable[[web.Application], Awaitable[None]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` running ``job`` at start-up and then every ``interval`` seconds; failures are logged."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        stopping = asyncio.Event()
        seconds = interval(app[SETTINGS])  # type: ignore[arg-type]

        async def loop() -> None:
            while not stopping.is_set():
                try:
                    await job(app)
                except Exception as exc:
                    log.warning("%s failed: %s", name, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), seconds)

        task = asyncio.create_task(loop(), name=f"audit-{name}")
        yield
        stopping.set()
        try:
            await asyncio.wait_for(task, timeout=5)
        except TimeoutError:
            pass  # wait_for cancelled it

    return ctx


async def refresh_lag(app: web.Application) -> None:
    for consumer in app[CONSUMERS]:
        with contextlib.suppress(Exception):  # consumer not declared yet, NATS away: next round
            await consumer.refresh_lag()


async def apply_retention(app: web.Application) -> None:
    settings: Settings = app[SETTINGS]  # type: ignore[assignment]
    cutoff = datetime.now(UTC) - timedelta(days=settings.audit_retention_days)
    deleted = await chain.prune(app[PG_POOL], cutoff)
    if deleted:
        app[AUDIT_METRICS].pruned.inc(deleted)
        log.info("retention pruned rows", extra={"rows": deleted, "cutoff": cutoff.isoformat()})


def create_app(settings: Settings | None = None, *, make_global_tracer: bool = False) -> web.Application:
    settings = settings or load_settings(Settings, service_name="audit")
    app = service_app(
        "audit",
        settings,
        schema="audit",
        migrations_dir=MIGRATIONS,
        description="Tamper-evident activity and security log.",
        make_global_tracer=make_global_tracer,
    )
    app[AUDIT_METRICS] = AuditMetrics.register(app[METRICS])
    app.cleanup_ctx.append(access_ctx)
    app.cleanup_ctx.append(consumers_ctx)
    app.cleanup_ctx.append(periodic("consumer-lag", lambda s: s.audit_lag_interval, refresh_lag))
    app.cleanup_ctx.append(periodic("retention", lambda s: s.audit_retention_interval, apply_retention))
    app.on_shutdown.append(stop_fetching)
    add_routes(app)
    return app
