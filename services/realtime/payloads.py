"""Checks on socket payloads that realtime itself needs (boards validates the rest).

Realtime forwards mutations verbatim: their field rules have one owner, boards. What realtime
checks is what it acts on itself: ids used in room names, ``since_seq``, presence/typing/cursor
fields, the optional ``client_op_id``/``correlation_id``/``traceparent``, size and binary-ness —
and that the payload is JSON anything downstream can carry (``json_problem``): no NaN or
Infinity, no integer beyond 64 bits, no lone UTF-16 surrogate, no absurd nesting. The decoding
side of that rule (an event whose JSON does not parse still gets its ack) is ``decoding.py``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from libs.common.bounds import PG_BIGINT_MAX
from libs.common.correlation import is_valid_correlation_id
from libs.common.errors import ApiError
from libs.common.ids import ID_RE

OP_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: Keys realtime consumes itself and does not forward as part of the command payload.
ENVELOPE_KEYS = ("client_op_id", "correlation_id", "traceparent", "tracestate")


#: Deeper than any event's shape (``changes.labels[i]`` is 3); deeper is an attack on parsers.
MAX_DEPTH = 32
_INT64 = (-(2**63), 2**64 - 1)


def encoded_size(args: tuple[Any, ...]) -> int:
    """Bytes of the event's arguments as JSON. What orjson cannot encode (bytes, surrogates,
    huge integers, deep nesting) is refused, saying which of those it was."""
    try:
        return len(orjson.dumps(args))
    except TypeError:
        check_json(args)
        raise ApiError("invalid_payload", "the payload cannot be encoded as JSON") from None


def check_json(args: Any) -> None:
    """``invalid_payload`` naming the first field that no JSON parser downstream would accept."""
    problem = json_problem(args)
    if problem is not None:
        where, what = problem
        raise ApiError("invalid_payload", f"{where}: {what}" if where else what)


def json_problem(value: Any) -> tuple[str, str] | None:
    """``(path, problem)`` of the first value that is not portable JSON, or None.

    Iterative, so a nested payload cannot exhaust the stack. The path leaves out the outer
    argument list: ``title`` for ``emit("task_created", {"title": ...})``.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH + 1:  # +1: the argument list itself
            return path, f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            if _has_surrogate(item):
                return path, "contains a lone UTF-16 surrogate (a character cut in half); send well-formed Unicode"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not _INT64[0] <= item <= _INT64[1]:
                return path, "integers must fit in 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "NaN and Infinity are not JSON numbers"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _has_surrogate(key):
                    return path or "payload", "a key contains a lone UTF-16 surrogate; send well-formed Unicode"
                stack.append((child, name, depth + 1))
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                stack.append((child, f"{path}[{index}]" if path else "", depth + 1))
        elif isinstance(item, bytes | bytearray | memoryview):
            return path, "binary attachments are not accepted"
        else:
            return path, f"{type(item).__name__} is not JSON"
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= PG_BIGINT_MAX:
        raise ApiError("invalid_payload", f"{name} must be an integer from 0 to 2^63-1")
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
