"""NATS helpers through a real nats-server with JetStream."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs.common.correlation import correlation_id_var
from libs.common.messaging import connect, consume_span, ensure_stream, js_publish, publish, request


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


@pytest.fixture
async def nc(nats_url):
    client = await connect(nats_url, "test")
    yield client
    await client.drain()


async def test_publish_with_msg_id_detects_duplicates_and_keeps_headers(nc, spans):
    tracer, _ = spans
    js = nc.jetstream()
    stream = "T" + uuid.uuid4().hex[:8].upper()
    subject = f"test.{stream}.event"
    await ensure_stream(js, stream, [f"test.{stream}.>"])
    await ensure_stream(js, stream, [f"test.{stream}.>"])  # idempotent

    first = await js_publish(
        js, tracer, subject, b'{"n":1}', msg_id="event-1", correlation_id="corr-9", headers={"X-Extra": "yes"}
    )
    again = await js_publish(js, tracer, subject, b'{"n":1}', msg_id="event-1")
    other = await js_publish(js, tracer, subject, b'{"n":2}', msg_id="event-2")
    assert not first.duplicate
    assert again.duplicate and again.seq == first.seq
    assert other.seq == first.seq + 1

    sub = await js.pull_subscribe(subject, durable=None, stream=stream)
    msgs = await sub.fetch(2, timeout=5)
    assert [m.data for m in msgs] == [b'{"n":1}', b'{"n":2}']
    headers = msgs[0].headers
    assert headers["Nats-Msg-Id"] == "event-1"
    assert headers["Correlation-Id"] == "corr-9"
    assert headers["X-Extra"] == "yes"
    assert headers["traceparent"].startswith("00-")
    await asyncio.gather(*(m.ack() for m in msgs))


async def test_ensure_stream_updates_an_existing_stream(nc):
    js = nc.jetstream()
    stream = "U" + uuid.uuid4().hex[:8].upper()
    await ensure_stream(js, stream, [f"u.{stream}.a"])
    await ensure_stream(js, stream, [f"u.{stream}.a", f"u.{stream}.b"])
    info = await js.stream_info(stream)
    assert sorted(info.config.subjects) == [f"u.{stream}.a", f"u.{stream}.b"]


async def test_trace_and_correlation_survive_a_publish_consume_hop(nc, spans):
    tracer, exporter = spans
    subject = f"hop.{uuid.uuid4().hex}"
    seen: asyncio.Future = asyncio.get_running_loop().create_future()

    async def handler(msg):
        with consume_span(tracer, msg) as span:
            seen.set_result((span.get_span_context(), correlation_id_var.get()))

    await nc.subscribe(subject, cb=handler)
    with tracer.start_as_current_span("origin") as origin:
        await publish(nc, tracer, subject, b"{}", correlation_id="corr-hop")
    consumer_ctx, correlation = await asyncio.wait_for(seen, 5)
    assert consumer_ctx.trace_id == origin.get_span_context().trace_id
    assert correlation == "corr-hop"
    finished = {s.name: s for s in exporter.get_finished_spans()}
    producer = finished[f"{subject} publish"]
    consumer = finished[f"{subject} process"]
    assert consumer.parent.span_id == producer.context.span_id
    assert producer.parent.span_id == origin.get_span_context().span_id


async def test_request_reply_carries_trace_headers(nc, spans):
    tracer, _ = spans
    subject = f"rpc.{uuid.uuid4().hex}"

    async def responder(msg):
        await msg.respond(msg.headers.get("traceparent", "").encode())

    await nc.subscribe(subject, cb=responder)
    with tracer.start_as_current_span("caller") as caller:
        reply = await request(nc, tracer, subject, b"ping")
    trace_id = format(caller.get_span_context().trace_id, "032x")
    assert reply.data.decode().split("-")[1] == trace_id


async def test_client_reconnects_after_nats_restart(private_nats):
    client = await connect(private_nats.admin_url, "reconnect-test")
    try:
        private_nats.stop()
        await asyncio.sleep(0.3)
        assert not client.is_connected
        private_nats.start()
        for _ in range(100):
            if client.is_connected:
                break
            await asyncio.sleep(0.1)
        assert client.is_connected
        subject = f"after.{uuid.uuid4().hex}"
        sub = await client.subscribe(subject)
        await client.publish(subject, b"back")
        assert (await sub.next_msg(timeout=5)).data == b"back"
    finally:
        await client.close()
