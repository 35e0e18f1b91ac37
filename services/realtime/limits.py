"""Rate limits: per-IP handshakes per minute and per-connection messages per minute.

Both are sliding-window-ish token buckets: a burst up to the per-minute allowance is fine, a
sustained rate above it is refused. State is O(active keys) and swept by the cleanup task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity`` per ``period`` seconds."""

    capacity: float
    period: float = 60.0
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.capacity / self.period)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def idle_since(self, now: float) -> float:
        return now - self.updated


class MessageLimiter:
    """Per-connection message allowance; repeated refusals within a minute mean abuse."""

    __slots__ = ("bucket", "refused", "window_start")

    def __init__(self, per_minute: int) -> None:
        self.bucket = TokenBucket(per_minute)
        self.refused = 0
        self.window_start = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self.window_start > 60:
            self.window_start, self.refused = now, 0
        if self.bucket.take(now):
            return True
        self.refused += 1
        return False

    def abusive(self) -> bool:
        """Sustained abuse: more refused messages in this minute than a tenth of the allowance."""
        return self.refused > max(10, self.bucket.capacity // 10)


class ConnectionRateLimiter:
    """Handshakes per IP per minute."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, ip: str) -> bool:
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = self._buckets[ip] = TokenBucket(self.per_minute)
        return bucket.take()

    def sweep(self) -> int:
        """Forget IPs whose bucket has refilled completely (nothing left to remember)."""
        now = time.monotonic()
        stale = [ip for ip, b in self._buckets.items() if b.idle_since(now) > b.period]
        for ip in stale:
            del self._buckets[ip]
        return len(stale)

    def __len__(self) -> int:
        return len(self._buckets)
