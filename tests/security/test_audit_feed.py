"""No refusal is swallowed: security events that cannot reach the audit log are counted in an
exported metric and logged; those that can are published, also after NATS was restarted."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from libs.common.audit_feed import AuditFeed
from libs.common.errors import ApiError
from libs.common.tracing import setup_tracing
from tests.conftest import service_connect_options


def _count(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("liveboard_audit_feed_events_total", {"outcome": outcome}) or 0.0


async def _feed(url: str, registry: CollectorRegistry, **kwargs) -> tuple[AuditFeed, nats.NATS]:
    client = await nats.connect(url, **service_connect_options("boards"), max_reconnect_attempts=-1)
    tracer = setup_tracing("test-feed").get_tracer("test")
    feed = AuditFeed("boards", client.jetstream(), tracer, registry, **kwargs)
    feed.start()
    return feed, client


async def test_refusals_are_published_and_counted(private_nats):
    registry = CollectorRegistry()
    feed, client = await _feed(private_nats.url, registry)
    try:
        feed.refusal(ApiError("forbidden", "no"), ip="203.0.113.9", path="/v1/boards/x", user_id="u-1")
        for _ in range(100):
            if _count(registry, "published") == 1:
                break
            await asyncio.sleep(0.05)
        assert _count(registry, "published") == 1
        assert b"liveboard_refusals_total" in generate_latest(registry)
    finally:
        await feed.stop()
        await client.close()


async def test_an_event_that_cannot_be_published_is_counted_and_logged(private_nats, caplog):
    registry = CollectorRegistry()
    feed, client = await _feed(private_nats.url, registry, attempts=2, publish_timeout=0.5)
    private_nats.stop()  # NATS gone: the event cannot be stored anywhere
    try:
        with caplog.at_level(logging.WARNING, logger="libs.common.audit_feed"):
            feed.refusal(ApiError("unauthorized", "no"), ip=None, path="/x")
            for _ in range(200):
                if _count(registry, "dropped_unpublishable"):
                    break
                await asyncio.sleep(0.05)
        assert _count(registry, "dropped_unpublishable") == 1
        assert any("audit events dropped" in r.getMessage() for r in caplog.records)
    finally:
        await feed.stop(timeout=0.5)
        with contextlib.suppress(ConnectionResetError):  # closing a connection to a dead server
            await client.close()


async def test_a_full_queue_drops_are_counted_and_logged(private_nats, caplog):
    registry = CollectorRegistry()
    feed, client = await _feed(private_nats.url, registry, max_pending=1)
    try:
        with caplog.at_level(logging.WARNING, logger="libs.common.audit_feed"):
            for _ in range(50):  # faster than one task can publish
                feed.security("rate_limited", {"sid": "s"})
        assert _count(registry, "dropped_queue_full") > 0
        assert any("audit events dropped" in r.getMessage() for r in caplog.records)
    finally:
        await feed.stop()
        await client.close()


async def test_the_feed_declares_its_stream_again_after_nats_lost_it(tmp_path):
    """A NATS that restarts empty (no stream): the next event re-declares SECURITY_EVENTS."""
    from libs.common.devstack import NatsServer, free_port
    from tests.conftest import NATS_PASSWORDS

    server = NatsServer(data_dir=tmp_path / "a", port=free_port(), passwords=NATS_PASSWORDS).start()
    registry = CollectorRegistry()
    feed, client = await _feed(server.url, registry)
    try:
        feed.security("probe", {"n": 1})
        for _ in range(100):
            if _count(registry, "published") == 1:
                break
            await asyncio.sleep(0.05)
        assert _count(registry, "published") == 1
        server.stop()
        server.data_dir = tmp_path / "b"  # same port, empty storage
        server.start()
        await asyncio.sleep(1.5)  # reconnect
        feed.security("probe", {"n": 2})
        for _ in range(200):
            if _count(registry, "published") == 2:
                break
            await asyncio.sleep(0.05)
        assert _count(registry, "published") == 2
    finally:
        await feed.stop(timeout=0.5)
        await client.close()
        server.stop()
