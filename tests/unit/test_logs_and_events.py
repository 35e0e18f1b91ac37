"""JSON log lines carry trace and correlation ids and never a credential; the envelope round-trips."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from libs.common.correlation import correlation_id_var
from libs.common.events import Envelope, EnvelopeError
from libs.common.logs import configure_logging
from liveboard.devtokens import user_token


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure_logging("boards", "debug", stream=stream)
    yield stream
    configure_logging("test", "warning")


def lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_log_line_has_the_contract_fields_inside_a_span(log_stream):
    tracer = TracerProvider().get_tracer("t")
    token = correlation_id_var.set("corr-1")
    try:
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("x").info("moved %s", "card", extra={"board_id": "b1"})
            ctx = span.get_span_context()
    finally:
        correlation_id_var.reset(token)
    (entry,) = lines(log_stream)
    assert entry["service"] == "boards"
    assert entry["level"] == "info"
    assert entry["message"] == "moved card"
    assert entry["trace_id"] == format(ctx.trace_id, "032x")
    assert entry["span_id"] == format(ctx.span_id, "016x")
    assert entry["correlation_id"] == "corr-1"
    assert entry["board_id"] == "b1"


def test_tokens_and_secrets_never_reach_the_log(log_stream):
    jwt = user_token("s" * 40, "user-1", "u@example.com")
    log = logging.getLogger("x")
    log.warning("refused token %s", jwt)
    log.warning("header was Bearer %s", "opaque-credential-123")
    log.warning("dsn postgresql://app:hunter2@db:5432/x")
    log.warning("extra fields", extra={"token": "abc", "supabase_jwt_secret": "zzz", "user_id": "u1"})
    try:
        raise ValueError(f"bad {jwt}")
    except ValueError:
        log.exception("failed")
    text = log_stream.getvalue()
    for secret in (jwt, "opaque-credential-123", "hunter2", "zzz", jwt.split(".")[1]):
        assert secret not in text
    entries = lines(log_stream)
    assert entries[3]["token"] == "[redacted]"
    assert entries[3]["user_id"] == "u1"


def test_envelope_round_trip_and_rejects():
    env = Envelope(
        event_type="task_moved", data={"task_id": "t1"}, user_id="u1", board_id="b1", seq=7, correlation_id="c-1"
    )
    back = Envelope.from_json(env.to_json())
    assert back == env
    assert set(orjson.loads(env.to_json())) == {
        "event_type",
        "data",
        "user_id",
        "timestamp",
        "board_id",
        "event_id",
        "seq",
        "correlation_id",
    }
    for bad in (
        b"not json",
        b"[]",
        b'{"event_type": "x"}',
        orjson.dumps({**env.to_dict(), "seq": 0}),
        orjson.dumps({**env.to_dict(), "data": []}),
        orjson.dumps({**env.to_dict(), "seq": True}),
    ):
        with pytest.raises(EnvelopeError):
            Envelope.from_json(bad)
