"""The event envelope every persisted board event travels in (CONTRACT §4).

One type, one (de)serialization: boards writes it, NATS carries it, realtime broadcasts it and
audit stores it. Ephemeral events (typing, cursor, presence) use the same shape without
``seq``/``event_id``.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

ENVELOPE_FIELDS = (
    "event_type",
    "data",
    "user_id",
    "timestamp",
    "board_id",
    "event_id",
    "seq",
    "correlation_id",
)

#: Every persisted board event type (CONTRACT §4): boards emits exactly these (its schemas must
#: cover them), realtime broadcasts them and refuses to let an admin broadcast impersonate them.
BOARD_EVENT_TYPES = (
    "board_created",
    "board_updated",
    "board_deleted",
    "column_created",
    "column_updated",
    "column_reordered",
    "column_rebalanced",
    "task_created",
    "task_moved",
    "task_updated",
    "task_deleted",
    "task_assigned",
    "task_commented",
)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class EnvelopeError(ValueError):
    """A message that is not an envelope; consumers dead-letter it instead of retrying forever."""


@dataclass(slots=True)
class Envelope:
    event_type: str
    data: dict[str, Any]
    user_id: str | None
    board_id: str | None = None
    seq: int | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = field(default_factory=utc_now_iso)
    correlation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Any) -> Envelope:
        if not isinstance(raw, dict):
            raise EnvelopeError("envelope must be a JSON object")
        missing = [name for name in ("event_type", "data", "event_id", "timestamp") if name not in raw]
        if missing:
            raise EnvelopeError(f"envelope lacks {', '.join(missing)}")
        if not isinstance(raw["event_type"], str) or not raw["event_type"]:
            raise EnvelopeError("event_type must be a non-empty string")
        if not isinstance(raw["data"], dict):
            raise EnvelopeError("data must be an object")
        seq = raw.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
            raise EnvelopeError("seq must be a positive integer")
        for name in ("user_id", "board_id", "correlation_id"):
            if raw.get(name) is not None and not isinstance(raw[name], str):
                raise EnvelopeError(f"{name} must be a string")
        if not isinstance(raw["event_id"], str) or not isinstance(raw["timestamp"], str):
            raise EnvelopeError("event_id and timestamp must be strings")
        return cls(**{name: raw.get(name) for name in ENVELOPE_FIELDS})

    @classmethod
    def from_json(cls, payload: bytes | str) -> Envelope:
        try:
            raw = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError(f"not JSON: {exc}") from None
        return cls.from_dict(raw)
