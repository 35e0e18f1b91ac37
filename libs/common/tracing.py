"""OpenTelemetry set-up and W3C context propagation over HTTP, NATS headers and dict payloads.

There is no ready-made nats-py instrumentation, so the carriers live here once: every place that
crosses a process boundary calls ``inject`` on the way out and ``extract`` on the way in. The
correlation id rides in baggage (and in its own header, for readers that don't parse baggage).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry import baggage, context, trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from .correlation import correlation_id_var, is_valid_correlation_id

CORRELATION_BAGGAGE_KEY = "correlation_id"
CORRELATION_NATS_HEADER = "Correlation-Id"

_global_lock = threading.Lock()
_global_set = False


class JsonLinesSpanExporter(SpanExporter):
    """Writes each finished span as one JSON line; for tests and local debugging without a collector."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            lines.append(
                orjson.dumps(
                    {
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
                        "kind": span.kind.name,
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "status": span.status.status_code.name,
                        "attributes": dict(span.attributes or {}),
                    },
                    default=str,
                )
            )
        with self._lock, open(self.path, "ab") as handle:
            handle.write(b"\n".join(lines) + b"\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:  # nothing held open between exports
        return None


def setup_tracing(
    service_name: str,
    *,
    otlp_endpoint: str | None = None,
    trace_file: str | None = None,
    make_global: bool = False,
) -> TracerProvider:
    """A tracer provider for one service; global only for a real process (``liveboard serve``).

    In-process tests run several services in one interpreter, so each app keeps its own provider
    and our spans use it explicitly; instrumentations that insist on the global one get it only
    when ``make_global`` is set.
    """
    global _global_set
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if trace_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(trace_file)))
    if make_global:
        with _global_lock:
            if not _global_set:
                trace.set_tracer_provider(provider)
                _global_set = True
    return provider


def inject(carrier: MutableMapping[str, str], correlation_id: str | None = None) -> MutableMapping[str, str]:
    """Write ``traceparent``/``tracestate``/``baggage`` (and the correlation id) into ``carrier``."""
    cid = correlation_id or correlation_id_var.get()
    ctx = context.get_current()
    if cid:
        ctx = baggage.set_baggage(CORRELATION_BAGGAGE_KEY, cid, context=ctx)
        carrier[CORRELATION_NATS_HEADER] = cid
    get_global_textmap().inject(carrier, context=ctx)
    return carrier


def extract(carrier: Mapping[str, Any] | None) -> tuple[context.Context, str | None]:
    """The remote parent context and the correlation id found in ``carrier`` (headers or payload)."""
    carrier = carrier or {}
    text_carrier = {k: v for k, v in carrier.items() if isinstance(v, str)}
    ctx = get_global_textmap().extract(text_carrier)
    cid = (
        text_carrier.get(CORRELATION_NATS_HEADER)
        or text_carrier.get("correlation_id")
        or baggage.get_baggage(CORRELATION_BAGGAGE_KEY, context=ctx)
    )
    cid = str(cid) if is_valid_correlation_id(cid) else None
    return ctx, cid


@contextmanager
def continued(
    tracer: trace.Tracer,
    name: str,
    carrier: Mapping[str, Any] | None,
    *,
    kind: trace.SpanKind = trace.SpanKind.SERVER,
    correlation_id: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[trace.Span]:
    """A span continuing the trace in ``carrier``, with the correlation id bound for logs."""
    parent, found = extract(carrier)
    cid = correlation_id or found
    if cid:
        parent = baggage.set_baggage(CORRELATION_BAGGAGE_KEY, cid, context=parent)
    token = context.attach(parent)
    cid_token = correlation_id_var.set(cid)
    try:
        with tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes or {})) as span:
            if cid:
                span.set_attribute("correlation_id", cid)
            yield span
    finally:
        correlation_id_var.reset(cid_token)
        context.detach(token)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
