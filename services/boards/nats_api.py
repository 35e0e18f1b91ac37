"""The same commands over NATS request/reply, for the realtime service.

Subjects ``boards.v1.<command>`` (queue group ``boards``, so replicas share the load) for each
socket event name, plus the queries ``board_access``, ``snapshot``, ``events`` and ``list_boards``
(payload ``{organization_id, division_id?}``, no ``board_id``).

Request (JSON)::

    {"token": "<scope token>", "client_op_id"?: str, "correlation_id"?: str, "ip"?: str,
     "payload": {... the socket event payload of CONTRACT §4, including board_id ...}}

with the trace context in the NATS headers. Reply: ``{"ok": true, "data": ...}`` or
``{"ok": false, "error": {"code", "message", ...}}`` — the same codes as REST. ``data`` of a
command is the event's data plus ``seq`` and ``event_id``, exactly what REST returns.

Each message is served in its own task (bounded by ``max_inflight``) so one slow board does not
hold up the others, and every failure becomes an error reply: a malformed message can never take
the subscription down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace
from pydantic import BaseModel

from libs.common import subjects
from libs.common.audit_feed import AuditFeed
from libs.common.correlation import correlation_id_var, new_correlation_id
from libs.common.errors import ApiError, invalid
from libs.common.identity import TokenRejected
from libs.common.messaging import consume_span
from libs.common.scopes import Scope
from libs.common.web import DEPENDENCY_ERRORS, validate

from . import payloads
from .access import Access
from .actions import Actions
from .mutation import Applied, Caller
from .queries import Queries

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def _as(model: type[M], message: BaseModel) -> M:
    """The REST-shaped command inside a NATS message (same fingerprint for idempotency)."""
    fields = set(model.model_fields)
    return model.model_validate(message.model_dump(mode="json", include=fields, exclude_unset=True))


class NatsApi:
    """Serves ``boards.v1.*`` (see the module docstring)."""

    def __init__(
        self,
        client: NATS,
        tracer: trace.Tracer,
        access: Access,
        actions: Actions,
        queries: Queries,
        *,
        feed: AuditFeed | None = None,
        max_inflight: int = 64,
    ) -> None:
        self.client = client
        self.feed = feed
        self.tracer = tracer
        self.access = access
        self.actions = actions
        self.queries = queries
        self._slots = asyncio.Semaphore(max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []
        self.handlers: dict[str, Callable[[Caller, dict[str, Any]], Awaitable[Any]]] = {
            "task_created": self.task_created,
            "task_moved": self.task_moved,
            "task_updated": self.task_updated,
            "task_deleted": self.task_deleted,
            "task_assigned": self.task_assigned,
            "task_commented": self.task_commented,
            "board_updated": self.board_updated,
            "column_updated": self.column_updated,
            "column_reordered": self.column_reordered,
            "board_access": self.board_access,
            "snapshot": self.snapshot,
            "events": self.events,
            "list_boards": self.list_boards,
        }

    async def start(self) -> None:
        for command in self.handlers:
            subscription = await self.client.subscribe(
                subjects.boards_command(command), queue=subjects.BOARDS_QUEUE, cb=self._on_message
            )
            self._subscriptions.append(subscription)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking requests, then let the ones in flight answer."""
        for subscription in self._subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        self._subscriptions.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def _on_message(self, msg: Msg) -> None:
        if not msg.reply:
            log.warning("ignoring a boards request without a reply subject", extra={"subject": msg.subject})
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        command = msg.subject.rsplit(".", 1)[-1]
        try:
            with consume_span(self.tracer, msg, kind=trace.SpanKind.SERVER, name=f"boards.v1.{command}") as span:
                reply = await self._answer(command, msg.data)
                if not reply["ok"]:
                    span.set_attribute("error.code", reply["error"]["code"])
            body = orjson.dumps(reply, default=str)
            if len(body) > self.client.max_payload:
                body = orjson.dumps(_error("payload_too_large", "answer too large for NATS; use the REST API"))
            await msg.respond(body)
        except nats.errors.Error as exc:
            log.warning("cannot reply to %s: %s", msg.subject, exc)
        finally:
            self._slots.release()

    async def _answer(self, command: str, raw: bytes) -> dict[str, Any]:
        request: payloads.NatsRequest | None = None
        scope: Scope | None = None
        try:
            handler = self.handlers.get(command)
            if handler is None:
                raise ApiError("not_found", f"unknown command {command!r}")
            request = _parse(raw)
            scope = await self.access.scope(request.token)
            correlation_id = request.correlation_id or correlation_id_var.get() or new_correlation_id()
            token = correlation_id_var.set(correlation_id)
            try:
                data = await handler(Caller(scope, correlation_id, request.client_op_id), request.payload)
            finally:
                correlation_id_var.reset(token)
            return {"ok": True, "data": data}
        except ApiError as exc:
            if self.feed is not None and (exc.status in (401, 403) or exc.audit is not None):
                user_id = exc.user_id if isinstance(exc, TokenRejected) else (scope.sub if scope else None)
                self.feed.refusal(
                    exc, ip=request.ip if request else None, path=f"nats:boards.v1.{command}", user_id=user_id
                )
            return {"ok": False, "error": exc.to_dict()}
        except DEPENDENCY_ERRORS as exc:
            log.warning("dependency unavailable: %s", exc, extra={"command": command})
            return _error("unavailable", "a backing service is unavailable; retry shortly")
        except Exception:
            log.exception("boards request failed", extra={"command": command})
            return _error("internal", "internal server error")

    # --- commands ---------------------------------------------------------------------------

    async def task_created(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.TaskCreatedMessage, payload)
        cmd = _as(payloads.CreateTask, message)
        return _result(await self.actions.create_task(caller, message.board_id, cmd))

    async def task_moved(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.TaskMovedMessage, payload)
        cmd = _as(payloads.MoveTask, message)
        return _result(await self.actions.move_task(caller, message.task_id, cmd, board_id=message.board_id))

    async def task_updated(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.TaskUpdatedMessage, payload)
        cmd = _as(payloads.UpdateTask, message)
        return _result(await self.actions.update_task(caller, message.task_id, cmd, board_id=message.board_id))

    async def task_deleted(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.TaskDeletedMessage, payload)
        return _result(await self.actions.delete_task(caller, message.task_id, board_id=message.board_id))

    async def task_assigned(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.TaskAssignedMessage, payload)
        cmd = _as(payloads.AssignTask, message)
        return _result(await self.actions.assign_task(caller, message.task_id, cmd, board_id=message.board_id))

    async def task_commented(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.TaskCommentedMessage, payload)
        cmd = _as(payloads.CommentTask, message)
        return _result(await self.actions.comment_task(caller, message.task_id, cmd, board_id=message.board_id))

    async def board_updated(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.BoardUpdatedMessage, payload)
        cmd = _as(payloads.UpdateBoard, message)
        return _result(await self.actions.update_board(caller, message.board_id, cmd))

    async def column_updated(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.ColumnUpdatedMessage, payload)
        cmd = _as(payloads.UpdateColumn, message)
        return _result(await self.actions.update_column(caller, message.column_id, cmd, board_id=message.board_id))

    async def column_reordered(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        message = validate(payloads.ColumnReorderedMessage, payload)
        cmd = _as(payloads.ReorderColumns, message)
        return _result(await self.actions.reorder_columns(caller, message.board_id, cmd))

    # --- queries ----------------------------------------------------------------------------

    async def board_access(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.queries.access(caller.scope, validate(payloads.BoardRef, payload).board_id)

    async def snapshot(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.queries.snapshot(caller.scope, validate(payloads.BoardRef, payload).board_id)

    async def events(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        query = validate(payloads.EventsQuery, payload)
        return await self.queries.events(caller.scope, query.board_id, query.since_seq, query.limit)

    async def list_boards(self, caller: Caller, payload: dict[str, Any]) -> dict[str, Any]:
        query = validate(payloads.BoardListQuery, payload)
        return await self.queries.list_boards(caller.scope, query.organization_id, query.division_id)


def _parse(raw: bytes) -> payloads.NatsRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("request is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("request must be a JSON object")
    if "token" not in body:
        raise ApiError("unauthorized", "request has no token")
    payload = body.get("payload")
    if isinstance(payload, dict):  # socket payloads may carry these themselves (CONTRACT §4)
        for name in ("client_op_id", "correlation_id"):
            if body.get(name) is None and payload.get(name) is not None:
                body[name] = payload[name]
    return validate(payloads.NatsRequest, body)


def _result(applied: Applied) -> dict[str, Any]:
    return applied.result


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}
