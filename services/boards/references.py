"""References to auth's data that a board change stores: checked with auth before they are.

A board names a division and cards name assignees; both belong to auth. Boards asks auth's
directory (``auth.v1.directory``, request/reply over NATS) so a board can only name a division
of its own organization and a card can only be assigned to members who may read its board —
never a user or division of another organization (whose existence the answer must not reveal:
a foreign id and a missing one are refused alike).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client as NATS
from opentelemetry import trace

from libs.common.errors import ApiError, invalid
from libs.common.messaging import request
from libs.common.subjects import AUTH_DIRECTORY


class References:
    """Asks auth's directory (see the module docstring)."""

    def __init__(self, nats_client: Callable[[], NATS], tracer: trace.Tracer, *, timeout: float = 5.0) -> None:
        self._nats = nats_client
        self.tracer = tracer
        self.timeout = timeout

    async def _ask(self, query: dict[str, Any]) -> dict[str, Any]:
        try:
            reply = await request(self._nats(), self.tracer, AUTH_DIRECTORY, orjson.dumps(query), timeout=self.timeout)
            answer = orjson.loads(reply.data)
        except (nats.errors.Error, TimeoutError, orjson.JSONDecodeError) as exc:
            raise ApiError("unavailable", f"auth's directory did not answer ({type(exc).__name__}); retry") from None
        if not isinstance(answer, dict) or answer.get("ok") is not True or not isinstance(answer.get("data"), dict):
            raise ApiError("unavailable", "auth's directory could not answer; retry")
        return answer["data"]

    async def check_division(self, organization_id: str, division_id: str | None) -> None:
        """``division_id`` must be one of the organization's divisions (None: organization-wide)."""
        if division_id is None:
            return
        data = await self._ask({"organization_id": organization_id, "division_id": division_id})
        if data.get("division_exists") is not True:
            raise invalid("division_id: not a division of this organization")

    async def check_assignees(self, organization_id: str, division_id: str | None, user_ids: list[str]) -> None:
        """Every assignee must be a member of the board's organization who may read the board."""
        if not user_ids:
            return
        query = {"organization_id": organization_id, "division_id": division_id, "user_ids": user_ids}
        readers = set((await self._ask(query)).get("readers") or ())
        strangers = [user for user in user_ids if user not in readers]
        if strangers:
            raise invalid(
                "assignee_ids: not members who may read this board: " + ", ".join(strangers[:5]),
                assignee_ids=strangers,
            )
