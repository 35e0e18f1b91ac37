"""The correlation id: one user action's name, carried verbatim through every service.

It lives in a context variable for the current task (logs read it) and in OpenTelemetry
baggage when it crosses a process boundary (HTTP, NATS headers, socket payloads).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

CORRELATION_HEADER = "X-Correlation-Id"
CORRELATION_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def is_valid_correlation_id(value: object) -> bool:
    return isinstance(value, str) and CORRELATION_RE.fullmatch(value) is not None


def current_correlation_id() -> str | None:
    return correlation_id_var.get()
