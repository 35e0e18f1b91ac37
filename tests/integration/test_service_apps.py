"""Each service app, built by its real factory, against the real NATS and Postgres."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

SERVICES = ["auth", "boards", "audit", "realtime"]


@pytest.mark.parametrize("service", SERVICES)
async def test_health_ready_metrics_openapi_and_json_404(service, make_app, aiohttp_client):
    client = await aiohttp_client(make_app(service))

    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["service"] == service

    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200, body
    assert body["checks"]["nats"] is True
    if service != "realtime":
        assert body["checks"]["postgres"] is True

    metrics = await client.get("/metrics")
    assert metrics.status == 200
    families = {family.name for family in text_string_to_metric_families(await metrics.text())}
    assert {"http_requests", "liveboard_dependency_up"} <= families

    spec = await client.get("/openapi.json")
    assert spec.status == 200
    doc = await spec.json()
    assert doc["openapi"].startswith("3.")
    assert "/healthz" in doc["paths"]

    missing = await client.get("/no/such/route", headers={"X-Correlation-Id": "abc-123"})
    assert missing.status == 404
    assert missing.headers["Content-Type"].startswith("application/json")
    assert (await missing.json())["error"]["code"] == "not_found"
    assert missing.headers["X-Correlation-Id"] == "abc-123"


async def test_bad_correlation_id_is_refused(make_app, aiohttp_client):
    client = await aiohttp_client(make_app("boards"))
    response = await client.get("/healthz", headers={"X-Correlation-Id": "bad id with spaces"})
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_payload"


async def test_readyz_503_when_nats_is_down(private_nats, make_app, aiohttp_client):
    client = await aiohttp_client(make_app("boards", nats_url=private_nats.url))
    assert (await client.get("/readyz")).status == 200
    private_nats.stop()
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["checks"] == {"nats": False, "postgres": True}


async def test_readyz_503_when_postgres_is_down_and_recovers(private_postgres, make_app, aiohttp_client):
    client = await aiohttp_client(make_app("audit", database_url=private_postgres.url))
    assert (await client.get("/readyz")).status == 200
    private_postgres.stop()
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["postgres"] is False
    private_postgres.start()
    assert (await client.get("/readyz")).status == 200
