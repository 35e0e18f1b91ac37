"""Audit fixtures: a NATS of the test's own (so durable consumers see only this test's messages),
a publisher that goes through ``js_publish`` like boards does, a JWKS server for scope tokens,
the audit app in-process, and a direct Postgres connection for checking and tampering.

Postgres is the session's; every test uses fresh organization ids, so tests never see each
other's chains (the ``:global`` chain is shared and only ever appended to).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web

from libs.common.devstack import free_port
from libs.common.events import Envelope
from libs.common.messaging import connect, ensure_stream, js_publish
from libs.common.scopes import OrgMembership, Scope, ScopeSigner
from libs.common.subjects import (
    BOARD_EVENTS_STREAM,
    BOARD_EVENTS_WILDCARD,
    SECURITY_STREAM,
    SECURITY_WILDCARDS,
    board_events,
)
from libs.common.tracing import setup_tracing
from tests.directory import start_directory  # noqa: F401  (fixture)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def wait_until(
    check: Callable[[], Awaitable[Any]],
    until: Callable[[Any], bool] = bool,
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
) -> Any:
    """Poll ``check`` until ``until(value)``; return the value, or fail with the last one."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await check()
        if until(value):
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last value {value!r})")


def board_event(
    org: str,
    board: str,
    event_type: str = "task_moved",
    /,
    *,
    task_id: str | None = None,
    user_id: str | None = "user-1",
    seq: int | None = None,
    correlation_id: str | None = None,
    timestamp: str | None = None,
    **data: Any,
) -> Envelope:
    body: dict[str, Any] = {"task_id": task_id, **data} if task_id else dict(data)
    envelope = Envelope(event_type, body, user_id, board_id=board, seq=seq, correlation_id=correlation_id)
    if timestamp:
        envelope.timestamp = timestamp
    return envelope


@dataclass
class Publisher:
    """Publishes like the real producers: ``js_publish`` with ``Nats-Msg-Id`` and trace headers."""

    nc: Any
    js: Any
    tracer: Any
    published: list[Envelope] = field(default_factory=list)

    async def board(self, org: str, envelope: Envelope, *, msg_id: str | None = None) -> Any:
        subject = board_events(org, envelope.board_id or "none", envelope.event_type)
        return await self.raw(subject, envelope.to_json(), msg_id=msg_id or envelope.event_id, envelope=envelope)

    async def security(self, subject: str, envelope: Envelope, *, msg_id: str | None = None) -> Any:
        return await self.raw(subject, envelope.to_json(), msg_id=msg_id or envelope.event_id, envelope=envelope)

    async def raw(
        self, subject: str, payload: bytes, *, msg_id: str | None = None, envelope: Envelope | None = None
    ) -> Any:
        ack = await js_publish(
            self.js,
            self.tracer,
            subject,
            payload,
            msg_id=msg_id or uuid.uuid4().hex,
            correlation_id=envelope.correlation_id if envelope else None,
        )
        if envelope is not None and not ack.duplicate:
            self.published.append(envelope)
        return ack


@pytest.fixture
def audit_nats(private_nats):
    return private_nats


@pytest.fixture
async def publisher(audit_nats) -> AsyncIterator[Publisher]:
    nc = await connect(audit_nats.admin_url, "audit-test-publisher")
    js = nc.jetstream()
    await ensure_stream(js, BOARD_EVENTS_STREAM, [BOARD_EVENTS_WILDCARD])
    await ensure_stream(js, SECURITY_STREAM, list(SECURITY_WILDCARDS))
    provider = setup_tracing("audit-test-publisher")
    yield Publisher(nc, js, provider.get_tracer("audit-test"))
    await nc.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "audit, public"})
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads
    )
    yield conn
    await conn.close()


@dataclass
class Jwks:
    """A stand-in for auth's JWKS endpoint, and the signer whose keys it publishes."""

    signer: ScopeSigner
    url: str

    def token(self, sub: str | None, *orgs: tuple[str, str], ttl: int = 600, signer: ScopeSigner | None = None) -> str:
        scope = Scope(sub=sub, email=f"{sub}@example.com", organizations=tuple(OrgMembership(o, r) for o, r in orgs))
        return (signer or self.signer).sign(scope, int(time.time()) + ttl)


@pytest.fixture
async def jwks(aiohttp_server) -> Jwks:
    signer = ScopeSigner.generate()

    async def keys(_: web.Request) -> web.Response:
        return web.json_response(signer.jwks())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", keys)
    server = await aiohttp_server(app, host="127.0.0.1")
    return Jwks(signer, str(server.make_url("/.well-known/jwks.json")))


@pytest.fixture
def audit_settings(audit_nats, jwks) -> dict[str, Any]:
    """Overrides for the audit app under test: our NATS, our JWKS, quick lag and redelivery, and
    an auth URL where nothing listens (tests that need auth's token exchange run auth themselves)."""
    return {
        "nats_url": audit_nats.url,
        "auth_jwks_url": jwks.url,
        "auth_service_url": f"http://127.0.0.1:{free_port()}",
        "audit_lag_interval": 0.2,
        "audit_ack_wait": 2.0,
    }


@pytest.fixture
async def audit_client(audit_settings, make_app, aiohttp_client):
    """The audit app, started (consumers running), behind a test client.

    ``audit_settings`` comes first so that our NATS outlives the app's shutdown (fixtures are
    torn down in reverse order of set-up).
    """
    return await aiohttp_client(make_app("audit", **audit_settings))


async def count_rows(db: asyncpg.Connection, *orgs: str) -> int:
    return await db.fetchval("SELECT count(*) FROM kanban_activity_log WHERE chain_key = any($1::text[])", list(orgs))


async def consumer_settled(js: Any, stream: str, durable: str) -> bool:
    """JetStream has nothing left for this consumer: every message delivered and settled."""
    info = await js.consumer_info(stream, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0
