"""JSON logging: one object per line, with the trace and correlation ids of the current task.

Secrets are scrubbed here, once, so no call site has to remember: JWT-shaped strings, Bearer
credentials and any ``extra`` field whose name says token/secret/password are replaced.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson
from opentelemetry import trace

from .correlation import correlation_id_var

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)\S+")
_DSN_PASSWORD_RE = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@")
_SECRET_KEY_RE = re.compile(r"(?i)token|secret|password|authorization|signing_key|api_key")
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """Remove credentials from free text."""
    text = _JWT_RE.sub("[redacted-jwt]", text)
    text = _BEARER_RE.sub(r"\1[redacted]", text)
    return _DSN_PASSWORD_RE.sub(r"\1[redacted]@", text)


def _clean(key: str, value: Any, depth: int = 0) -> Any:
    """A log field with credentials removed, looking into containers (a headers dict, a list of
    values) as deep as anyone would nest them; anything else is logged as its redacted text."""
    if _SECRET_KEY_RE.search(key) and not key.endswith(("_count", "_expires_at")):
        return "[redacted]"
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth < 4:
        if isinstance(value, dict):
            return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [_clean(key, item, depth + 1) for item in value]
    if isinstance(value, bytes | bytearray):
        return redact(bytes(value).decode("utf-8", "replace"))
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object; the keys are the contract's (§6)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        span_context = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "service": self.service,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "trace_id": format(span_context.trace_id, "032x") if span_context.is_valid else None,
            "span_id": format(span_context.span_id, "016x") if span_context.is_valid else None,
            "correlation_id": _clean(
                "correlation_id", getattr(record, "correlation_id", None) or correlation_id_var.get()
            ),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = _clean(key, value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str = "info", stream: Any = None) -> None:
    """Route every logger (ours, aiohttp's, asyncpg's) through one JSON handler."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Access logs duplicate our request metrics and are noisy at load; keep them at warning.
    logging.getLogger("aiohttp.access").setLevel(max(logging.WARNING, root.level))
    for noisy in ("engineio.server", "socketio.server", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
