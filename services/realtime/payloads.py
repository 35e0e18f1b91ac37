"""Checks on socket payloads that realtime itself needs (boards validates the rest).

Realtime forwards mutations verbatim: their field rules have one owner, boards. What realtime
checks is what it acts on itself: ids used in room names, ``since_seq``, presence/typing/cursor
fields, the optional ``client_op_id``/``correlation_id``/``traceparent``, size and binary-ness.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from libs.common.correlation import is_valid_correlation_id
from libs.common.errors import ApiError
from libs.common.ids import ID_RE

OP_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Keys realtime consumes itself and does not forward as part of the command payload.
ENVELOPE_KEYS = ("client_op_id", "correlation_id", "traceparent", "tracestate")


def encoded_size(args: tuple[Any, ...]) -> int:
    """Bytes of the event's arguments as JSON; binary attachments are refused here."""
    try:
        return len(orjson.dumps(args))
    except TypeError:
        raise ApiError("invalid_payload", "binary attachments are not accepted") from None


def payload_object(args: tuple[Any, ...]) -> dict[str, Any]:
    if len(args) != 1 or not isinstance(args[0], dict):
        raise ApiError("invalid_payload", "the payload must be one JSON object")
    return args[0]


def require_id(data: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise ApiError("invalid_payload", f"{name} must be an id of 1-64 characters [A-Za-z0-9_-]")
    return value


def optional_seq(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ApiError("invalid_payload", f"{name} must be a non-negative integer")
    return value


def client_op_id(data: dict[str, Any]) -> str | None:
    value = data.get("client_op_id")
    if value is None:
        return None
    if not isinstance(value, str) or not OP_ID_RE.fullmatch(value):
        raise ApiError("invalid_payload", "client_op_id must be 1-128 characters of [A-Za-z0-9._:-]")
    return value


def correlation_id(data: dict[str, Any]) -> str | None:
    value = data.get("correlation_id")
    if value is None:
        return None
    if not is_valid_correlation_id(value):
        raise ApiError("invalid_payload", "correlation_id must be 1-128 characters of [A-Za-z0-9._:-]")
    return value


def command_payload(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ENVELOPE_KEYS}


def require_bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise ApiError("invalid_payload", f"{name} must be true or false")
    return value


def require_number(data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value or abs(value) > 1e9:
        raise ApiError("invalid_payload", f"{name} must be a finite number")
    return float(value)


def require_choice(data: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = data.get(name)
    if value not in choices:
        raise ApiError("invalid_payload", f"{name} must be one of {', '.join(choices)}")
    return value
