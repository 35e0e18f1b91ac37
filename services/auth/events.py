"""What auth tells the rest of the system: membership changes.

``auth.membership.changed.<user>`` (core NATS, after commit) carries the user's new membership
``version``: every service forgets the user's cached scope and refuses scope tokens issued at an
older version (``libs.common.access``), and realtime renews the user's sockets and leaves boards
they lost, all within a second. The message is fire-and-forget: if one is lost, scope tokens
(<= 5 minutes) expire and realtime re-checks every socket's rooms at each renewal, so the change
is still felt within one scope lifetime. Refusals are reported through ``libs.common.audit_feed``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from opentelemetry import trace

from libs.common.messaging import publish
from libs.common.subjects import membership_changed
from libs.common.web import DEPENDENCY_ERRORS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MembershipChange:
    """One user's access to one organization changed (``role`` None when removed)."""

    user_id: str
    organization_id: str
    role: str | None
    divisions: list[str] | None
    change: str  # "upserted" | "removed"
    #: The user's membership version after this change (scope tokens carry theirs as ``mv``).
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "organization_id": self.organization_id,
            "role": self.role,
            "divisions": self.divisions,
            "change": self.change,
            "version": self.version,
        }


async def publish_membership_changes(client: NATS, tracer: trace.Tracer, changes: list[MembershipChange]) -> None:
    """Announce committed changes; a NATS hiccup is logged, never turned into a failed request."""
    for change in changes:
        try:
            await publish(client, tracer, membership_changed(change.user_id), orjson.dumps(change.to_dict()))
        except DEPENDENCY_ERRORS as exc:
            log.warning("membership change not announced: %s", exc, extra=change.to_dict())
