"""REST API of CONTRACT §5. Each handler: authenticate, parse, delegate to actions or queries.

``Idempotency-Key`` is the REST spelling of ``client_op_id``; the correlation id is the one the
shared middleware bound for this request (``X-Correlation-Id`` or a new one).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from libs.common.correlation import current_correlation_id
from libs.common.errors import invalid
from libs.common.web import documented, json_response, read_json, validate

from . import payloads
from .access import caller_scope
from .actions import Actions
from .mutation import Applied, Caller
from .queries import EVENTS_LIMIT, Queries

ACTIONS = web.AppKey("boards_actions", Actions)
QUERIES = web.AppKey("boards_queries", Queries)
IDEMPOTENCY_HEADER = "Idempotency-Key"
_CLIENT_OP_RE = re.compile(payloads.CLIENT_OP_PATTERN)
_ID_RE = re.compile(payloads.ID_PATTERN)


async def _caller(request: web.Request) -> Caller:
    scope = await caller_scope(request)
    op_id = request.headers.get(IDEMPOTENCY_HEADER)
    if op_id is not None and not _CLIENT_OP_RE.fullmatch(op_id):
        raise invalid(f"{IDEMPOTENCY_HEADER} must be 1-128 of [A-Za-z0-9._:-]")
    return Caller(scope, correlation_id=current_correlation_id(), client_op_id=op_id)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not _ID_RE.fullmatch(value):
        raise invalid(f"{name}: must match {payloads.ID_PATTERN}")
    return value


def _answer(applied: Applied, *, created_status: int = 200) -> web.Response:
    return json_response(applied.result, status=created_status if applied.created else 200)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d{1,18}", raw):
        raise invalid(f"{name}: must be a non-negative integer")
    value = int(raw)
    if value < low:
        raise invalid(f"{name}: must be >= {low}")
    return min(value, high) if high is not None else value


_ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _responses(**by_status: str) -> dict[str, Any]:
    """OpenAPI responses: the given ones plus the shared JSON error."""
    return {
        "responses": {
            "200": {"description": "OK: the event data plus seq and event_id"},
            **{status.removeprefix("s"): {"description": text} for status, text in by_status.items()},
            "default": _ERROR,
        }
    }


_SNAPSHOT = _responses(s200="The board snapshot {board, columns, cards, seq}")


@documented(payloads.CreateBoard, **_responses(s200="Exists with the same content", s201="Created: the snapshot"))
async def create_board(request: web.Request) -> web.Response:
    """Create a board (optionally with columns) and return its snapshot.

    An explicit ``id`` that exists with the same content returns it (200); with different
    content, 409 ``conflict``.
    """
    caller = await _caller(request)
    cmd = await read_json(request, payloads.CreateBoard)
    return _answer(await request.app[ACTIONS].create_board(caller, cmd), created_status=201)


@documented(
    parameters=[
        {"name": "organization_id", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "division_id", "in": "query", "schema": {"type": "string"}},
    ],
    **_responses(s200="{boards: [{id, name, organization_id, division_id, seq, updated_at}, ...]}"),
)
async def list_boards(request: web.Request) -> web.Response:
    """The organization's boards the caller may read, newest (last created) first (deleted ones
    left out; at most 500). ``division_id`` narrows to one division. A member limited to some
    divisions sees those divisions' boards and the organization-wide ones. No
    ``organization_id`` or a malformed id -> 400; an organization or division the caller cannot
    read -> 403."""
    scope = await caller_scope(request)
    params = {name: request.query[name] for name in ("organization_id", "division_id") if name in request.query}
    query = validate(payloads.BoardListQuery, params)
    return json_response(await request.app[QUERIES].list_boards(scope, query.organization_id, query.division_id))


@documented(**_SNAPSHOT)
async def get_board(request: web.Request) -> web.Response:
    """The board's snapshot: board, columns and cards with integer positions, and its seq."""
    scope = await caller_scope(request)
    return json_response(await request.app[QUERIES].snapshot(scope, _path_id(request, "board_id")))


@documented(
    parameters=[
        {"name": "since_seq", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": EVENTS_LIMIT}},
    ],
    **_responses(s200="{events: [envelope...], seq}", s410="resync_required: the events are no longer retained"),
)
async def board_events(request: web.Request) -> web.Response:
    """Persisted events with ``seq > since_seq``, in order (at most ``limit``, default and max 1000)."""
    scope = await caller_scope(request)
    since = _int_param(request, "since_seq", 0, 0)
    limit = _int_param(request, "limit", EVENTS_LIMIT, 1, EVENTS_LIMIT)
    return json_response(await request.app[QUERIES].events(scope, _path_id(request, "board_id"), since, limit))


@documented(payloads.BoardChanges)
async def update_board(request: web.Request) -> web.Response:
    """Rename a board (``board_updated``)."""
    caller = await _caller(request)
    changes = await read_json(request, payloads.BoardChanges)
    cmd = payloads.UpdateBoard(changes=changes)
    return _answer(await request.app[ACTIONS].update_board(caller, _path_id(request, "board_id"), cmd))


async def delete_board(request: web.Request) -> web.Response:
    """Delete a board (``board_deleted``); its history stays for audit."""
    caller = await _caller(request)
    return _answer(await request.app[ACTIONS].delete_board(caller, _path_id(request, "board_id")))


@documented(payloads.CreateColumn)
async def create_column(request: web.Request) -> web.Response:
    """Add a column (``column_created``), at ``position`` or at the end."""
    caller = await _caller(request)
    cmd = await read_json(request, payloads.CreateColumn)
    applied = await request.app[ACTIONS].create_column(caller, _path_id(request, "board_id"), cmd)
    return _answer(applied, created_status=201)


@documented(payloads.ColumnChanges)
async def update_column(request: web.Request) -> web.Response:
    """Rename a column or set its WIP limit (``column_updated``)."""
    caller = await _caller(request)
    changes = await read_json(request, payloads.ColumnChanges)
    cmd = payloads.UpdateColumn(changes=changes)
    return _answer(await request.app[ACTIONS].update_column(caller, _path_id(request, "column_id"), cmd))


@documented(payloads.ReorderColumns)
async def reorder_columns(request: web.Request) -> web.Response:
    """Put the board's columns in the given order (``column_reordered``); list every column once."""
    caller = await _caller(request)
    cmd = await read_json(request, payloads.ReorderColumns)
    return _answer(await request.app[ACTIONS].reorder_columns(caller, _path_id(request, "board_id"), cmd))


@documented(payloads.CreateTask)
async def create_card(request: web.Request) -> web.Response:
    """Add a card (``task_created``); the result's ``task`` is the new card."""
    caller = await _caller(request)
    cmd = await read_json(request, payloads.CreateTask)
    applied = await request.app[ACTIONS].create_task(caller, _path_id(request, "board_id"), cmd)
    return _answer(applied, created_status=201)


@documented(payloads.CardPatch, **_responses(s409="version_conflict, with the current card in error.current"))
async def update_card(request: web.Request) -> web.Response:
    """Change title, description, due date or labels (``task_updated``); stale version -> 409."""
    caller = await _caller(request)
    patch = await read_json(request, payloads.CardPatch)
    actions = request.app[ACTIONS]
    return _answer(await actions.update_task(caller, _path_id(request, "card_id"), patch.as_update()))


@documented(payloads.MoveTask)
async def move_card(request: web.Request) -> web.Response:
    """Move a card to ``position`` of ``to_column_id`` (``task_moved``); conflicts are resolved
    and reported in ``conflict`` rather than refused."""
    caller = await _caller(request)
    cmd = await read_json(request, payloads.MoveTask)
    return _answer(await request.app[ACTIONS].move_task(caller, _path_id(request, "card_id"), cmd))


async def delete_card(request: web.Request) -> web.Response:
    """Delete a card (``task_deleted``)."""
    caller = await _caller(request)
    return _answer(await request.app[ACTIONS].delete_task(caller, _path_id(request, "card_id")))


@documented(payloads.CommentTask)
async def comment_card(request: web.Request) -> web.Response:
    """Comment on a card (``task_commented``)."""
    caller = await _caller(request)
    cmd = await read_json(request, payloads.CommentTask)
    applied = await request.app[ACTIONS].comment_task(caller, _path_id(request, "card_id"), cmd)
    return _answer(applied, created_status=201)


@documented(payloads.AssignTask)
async def assign_card(request: web.Request) -> web.Response:
    """Replace a card's assignees (``task_assigned``)."""
    caller = await _caller(request)
    cmd = await read_json(request, payloads.AssignTask)
    return _answer(await request.app[ACTIONS].assign_task(caller, _path_id(request, "card_id"), cmd))


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/boards", list_boards),
    ("POST", "/v1/boards", create_board),
    ("GET", "/v1/boards/{board_id}", get_board),
    ("PATCH", "/v1/boards/{board_id}", update_board),
    ("DELETE", "/v1/boards/{board_id}", delete_board),
    ("GET", "/v1/boards/{board_id}/events", board_events),
    ("POST", "/v1/boards/{board_id}/columns", create_column),
    ("POST", "/v1/boards/{board_id}/columns/reorder", reorder_columns),
    ("PATCH", "/v1/columns/{column_id}", update_column),
    ("POST", "/v1/boards/{board_id}/cards", create_card),
    ("PATCH", "/v1/cards/{card_id}", update_card),
    ("POST", "/v1/cards/{card_id}/move", move_card),
    ("DELETE", "/v1/cards/{card_id}", delete_card),
    ("POST", "/v1/cards/{card_id}/comments", comment_card),
    ("PUT", "/v1/cards/{card_id}/assignees", assign_card),
]


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
