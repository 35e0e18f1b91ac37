"""Rows as the contract shows them: the JSON of a board, a column, a card, a comment, an event.

Snapshots, event data and command results are all built here, so a card looks the same in
``GET /v1/boards/{id}``, in a ``task_moved`` broadcast and in an audit row — which is also what
lets a test rebuild the database from the events alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from libs.common.events import Envelope

BOARD_COLUMNS = "id, organization_id, division_id, name, seq, created_by, created_at, updated_at, deleted_at"
EVENT_COLUMNS = (
    "board_id, seq, event_id, organization_id, event_type, payload, actor, correlation_id, trace_context, created_at"
)


def card_fields(prefix: str = "") -> str:
    """The columns ``card_json`` reads (``prefix``: a table alias with its dot)."""
    names = (
        "id, board_id, column_id, rank, title, description, due_date, labels, assignee_ids, version, created_by, "
        "created_at, updated_at"
    ).split(", ")
    return ", ".join(prefix + name for name in names)


CARD_FIELDS = card_fields()
COLUMN_FIELDS = "id, board_id, name, rank, wip_limit, version, created_at, updated_at"


def iso(moment: datetime | None) -> str | None:
    """UTC ISO-8601 ending in ``Z`` (the envelope's format), microseconds when not zero.

    orjson formats in C: a 5,000-card snapshot has 10,000 timestamps, and ``isoformat`` plus
    string surgery costs three times as much.
    """
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return orjson.dumps(moment, option=orjson.OPT_UTC_Z)[1:-1].decode()


def board_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "organization_id": row["organization_id"],
        "division_id": row["division_id"],
        "name": row["name"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def board_summary_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A board as the board list shows it (``GET /v1/boards``, ``list_boards``)."""
    return {
        "id": row["id"],
        "name": row["name"],
        "organization_id": row["organization_id"],
        "division_id": row["division_id"],
        "seq": row["seq"],
        "updated_at": iso(row["updated_at"]),
    }


def column_json(row: Mapping[str, Any], position: int) -> dict[str, Any]:
    return {
        "id": row["id"],
        "board_id": row["board_id"],
        "name": row["name"],
        "position": position,
        "rank": row["rank"],
        "wip_limit": row["wip_limit"],
        "version": row["version"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def card_json(row: Mapping[str, Any], position: int) -> dict[str, Any]:
    due = row["due_date"]
    return {
        "id": row["id"],
        "board_id": row["board_id"],
        "column_id": row["column_id"],
        "position": position,
        "rank": row["rank"],
        "title": row["title"],
        "description": row["description"],
        "due_date": due.isoformat() if due is not None else None,
        "labels": list(row["labels"]),
        "assignee_ids": list(row["assignee_ids"]),
        "version": row["version"],
        "created_by": row["created_by"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def comment_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "task_id": row["card_id"],
        "author_id": row["author_id"],
        "body": row["body"],
        "created_at": iso(row["created_at"]),
    }


def envelope_of(row: Mapping[str, Any]) -> Envelope:
    """The broadcast envelope of a stored event row (REST catch-up and JetStream carry the same)."""
    return Envelope(
        event_type=row["event_type"],
        data=row["payload"],
        user_id=row["actor"],
        board_id=row["board_id"],
        seq=row["seq"],
        event_id=str(row["event_id"]),
        timestamp=iso(row["created_at"]) or "",
        correlation_id=row["correlation_id"],
    )
