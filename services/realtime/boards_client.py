"""Requests from realtime to the boards service over NATS (``boards.v1.<command>``).

Realtime holds no board state: every mutation and every read is boards' answer. The caller's
scope token, ``client_op_id`` and correlation id travel in the request; the trace in headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import nats.errors
import orjson
from nats.aio.client import Client as NATS
from opentelemetry import trace

from libs.common.errors import STATUS_BY_CODE, ApiError
from libs.common.messaging import request
from libs.common.subjects import boards_command
from libs.common.tracing import inject

#: Socket events that are mutations forwarded to boards under the same name.
MUTATIONS = frozenset(
    {
        "task_created",
        "task_moved",
        "task_updated",
        "task_deleted",
        "task_assigned",
        "task_commented",
        "board_updated",
        "column_updated",
        "column_reordered",
    }
)


def _too_large(limit: int) -> ApiError:
    """A request NATS cannot carry: the client's message, not a failure of ours (WEBSOCKET_MAX_MESSAGE_BYTES
    may be set above what the NATS server carries)."""
    return ApiError("payload_too_large", f"this request is over the {limit} bytes the message bus carries")


class BoardsClient:
    def __init__(
        self, nats_client: Callable[[], NATS | None], tracer: trace.Tracer, timeout: float = 5.0, http_url: str = ""
    ) -> None:
        self._nats = nats_client
        self.tracer = tracer
        self.timeout = timeout
        self.http_url = http_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def call(
        self,
        command: str,
        token: str,
        payload: dict[str, Any],
        *,
        client_op_id: str | None = None,
        correlation_id: str | None = None,
        ip: str | None = None,
    ) -> Any:
        """Boards' ``data`` for ``command``, or the ``ApiError`` it answered with. ``ip`` is the
        end user's address, for the security event if boards refuses."""
        client = self._nats()
        if client is None or not client.is_connected:
            raise ApiError("unavailable", "boards is unreachable (no NATS connection)")
        body: dict[str, Any] = {"token": token, "payload": payload}
        if client_op_id is not None:
            body["client_op_id"] = client_op_id
        if correlation_id is not None:
            body["correlation_id"] = correlation_id
        if ip is not None:
            body["ip"] = ip
        encoded = orjson.dumps(body)
        if len(encoded) > client.max_payload:
            raise _too_large(client.max_payload)
        try:
            reply = await request(
                client,
                self.tracer,
                boards_command(command),
                encoded,
                timeout=self.timeout,
                correlation_id=correlation_id,
            )
        except nats.errors.MaxPayloadError:  # the server's limit, should it be lower than announced
            raise _too_large(client.max_payload) from None
        except nats.errors.NoRespondersError:
            raise ApiError("unavailable", "boards is not running") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise ApiError("unavailable", "boards did not answer in time") from None
        except nats.errors.ConnectionClosedError:
            raise ApiError("unavailable", "boards is unreachable (NATS connection closed)") from None
        try:
            answer = orjson.loads(reply.data)
        except orjson.JSONDecodeError:
            raise ApiError("internal", "boards sent an unreadable reply") from None
        if answer.get("ok"):
            return answer.get("data")
        error = answer.get("error") or {}
        code = error.get("code")
        if code not in STATUS_BY_CODE:  # a code this contract does not know: report it as internal
            raise ApiError("internal", str(error.get("message", "boards failed")))
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        refused = ApiError(code, error.get("message", "boards refused the request"), **details)
        refused.reported = True  # boards recorded it in the audit log already
        raise refused

    async def access(self, token: str, board_id: str, correlation_id: str | None = None) -> dict[str, Any]:
        return await self.call("board_access", token, {"board_id": board_id}, correlation_id=correlation_id)

    async def list_boards(
        self, token: str, organization_id: str, division_id: str | None = None, correlation_id: str | None = None
    ) -> dict[str, Any]:
        """``{boards: [...]}``: the organization's boards the token's user may read, newest first."""
        payload: dict[str, Any] = {"organization_id": organization_id}
        if division_id is not None:
            payload["division_id"] = division_id
        return await self.call("list_boards", token, payload, correlation_id=correlation_id)

    async def snapshot(self, token: str, board_id: str, correlation_id: str | None = None) -> dict[str, Any]:
        try:
            return await self.call("snapshot", token, {"board_id": board_id}, correlation_id=correlation_id)
        except ApiError as exc:
            if exc.code != "payload_too_large":
                raise
            return await self._http_get(f"/v1/boards/{board_id}", token)

    async def events(
        self, token: str, board_id: str, since_seq: int, limit: int = 1000, correlation_id: str | None = None
    ) -> dict[str, Any]:
        payload = {"board_id": board_id, "since_seq": since_seq, "limit": limit}
        try:
            return await self.call("events", token, payload, correlation_id=correlation_id)
        except ApiError as exc:
            if exc.code != "payload_too_large":
                raise
            return await self._http_get(f"/v1/boards/{board_id}/events?since_seq={since_seq}&limit={limit}", token)

    async def _http_get(self, path: str, token: str) -> dict[str, Any]:
        """Answers too large for a NATS message (a 5,000-card board is ~2 MB) come over REST."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(self.timeout, 10)))
        headers = inject({"Authorization": f"Bearer {token}"})
        with self.tracer.start_as_current_span(f"GET {path.split('?')[0]}", kind=trace.SpanKind.CLIENT):
            try:
                async with self._session.get(f"{self.http_url}{path}", headers=headers) as response:
                    body = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise ApiError("unavailable", f"boards REST unreachable: {exc}") from None
        if response.status == 200 and isinstance(body, dict):
            return body
        error = body.get("error", {}) if isinstance(body, dict) else {}
        code = error.get("code") if error.get("code") in STATUS_BY_CODE else "internal"
        raise ApiError(code, str(error.get("message", f"boards answered {response.status}")))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
