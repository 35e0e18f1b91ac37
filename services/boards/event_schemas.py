"""The ``data`` of every board event boards emits, as pydantic models (one per event type).

This is what realtime broadcasts and audit stores, so it is written down once and checked:
the tests validate every event they produce against ``SCHEMAS`` and fail when an event type in
``actions.EVENT_TYPES`` has no schema here (or a schema has no event type). Models allow extra
keys — adding a field is not a breaking change — but every key listed is required.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Actor(_Data):
    id: str
    email: str | None


class Board(_Data):
    id: str
    organization_id: str
    division_id: str | None
    name: str
    created_by: str
    created_at: str
    updated_at: str


class Column(_Data):
    id: str
    board_id: str
    name: str
    position: int
    rank: str
    wip_limit: int | None
    version: int
    created_at: str
    updated_at: str


class Card(_Data):
    id: str
    board_id: str
    column_id: str
    position: int
    rank: str
    title: str
    description: str
    due_date: str | None
    labels: list[str]
    assignee_ids: list[str]
    version: int
    created_by: str
    created_at: str
    updated_at: str


class Conflict(_Data):
    reason: str
    reasons: list[str]
    requested: dict[str, Any]
    resolved: dict[str, Any]


class BoardCreated(_Data):
    board: Board
    columns: list[Column]
    cards: list[Card]


class BoardUpdated(_Data):
    board_id: str
    changes: dict[str, Any]
    board: Board


class BoardDeleted(_Data):
    board_id: str
    deleted_by: Actor


class ColumnCreated(_Data):
    column: Column


class ColumnUpdated(_Data):
    column_id: str
    changes: dict[str, Any]
    column: Column


class ColumnRank(_Data):
    id: str
    position: int
    rank: str


class ColumnReordered(_Data):
    column_ids: list[str]
    columns: list[ColumnRank]


class CardRank(_Data):
    id: str
    rank: str


class ColumnRebalanced(_Data):
    column_id: str
    cards: list[CardRank]


class TaskCreated(_Data):
    task: Card
    created_by: Actor
    timestamp: str
    conflict: Conflict | None = None


class TaskMoved(_Data):
    task_id: str
    from_column_id: str
    to_column_id: str
    position: int
    moved_by: Actor
    timestamp: str
    task: Card
    conflict: Conflict | None = None


class TaskUpdated(_Data):
    task_id: str
    changes: dict[str, Any]
    task: Card
    updated_by: Actor


class TaskDeleted(_Data):
    task_id: str
    column_id: str
    deleted_by: Actor


class TaskAssigned(_Data):
    task_id: str
    assignee_ids: list[str]
    task: Card
    assigned_by: Actor


class Comment(_Data):
    id: str
    task_id: str
    author_id: str
    body: str
    created_at: str


class TaskCommented(_Data):
    task_id: str
    comment: Comment
    author: Actor


SCHEMAS: dict[str, type[BaseModel]] = {
    "board_created": BoardCreated,
    "board_updated": BoardUpdated,
    "board_deleted": BoardDeleted,
    "column_created": ColumnCreated,
    "column_updated": ColumnUpdated,
    "column_reordered": ColumnReordered,
    "column_rebalanced": ColumnRebalanced,
    "task_created": TaskCreated,
    "task_moved": TaskMoved,
    "task_updated": TaskUpdated,
    "task_deleted": TaskDeleted,
    "task_assigned": TaskAssigned,
    "task_commented": TaskCommented,
}


def check(event_type: str, data: dict[str, Any]) -> None:
    """Raise ``KeyError`` for an unknown type, ``pydantic.ValidationError`` for bad data."""
    SCHEMAS[event_type].model_validate(data)
