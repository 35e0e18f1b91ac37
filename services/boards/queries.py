"""Reads: snapshots, event catch-up, board access, board lists. Nothing here writes.

A snapshot is read in one REPEATABLE READ transaction so its ``seq`` and its rows are the same
moment: a client that applies events with ``seq`` greater than the snapshot's misses nothing and
applies nothing twice. Positions are computed from ranks (``row_number() - 1``), never stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from libs.common.errors import ApiError, hidden, not_found
from libs.common.scopes import Scope

from .records import (
    BOARD_COLUMNS,
    COLUMN_FIELDS,
    EVENT_COLUMNS,
    board_json,
    board_summary_json,
    card_fields,
    card_json,
    column_json,
    envelope_of,
)

EVENTS_LIMIT = 1000
#: Most boards one list answer carries (the newest ones); ~200 bytes each, so
#: the answer stays far below a NATS message.
BOARDS_LIMIT = 500

_COLUMNS = f"""
    SELECT {COLUMN_FIELDS}, (row_number() OVER (ORDER BY rank) - 1)::int AS position
    FROM kanban_columns WHERE board_id = $1 ORDER BY rank
"""
_CARDS = f"""
    SELECT {card_fields("c.")}, (row_number() OVER (PARTITION BY c.column_id ORDER BY c.rank) - 1)::int AS position
    FROM kanban_cards c JOIN kanban_columns col ON col.id = c.column_id
    WHERE c.board_id = $1 ORDER BY col.rank, c.rank
"""


async def board_row(conn: asyncpg.Connection, board_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(f"SELECT {BOARD_COLUMNS} FROM kanban_boards WHERE id = $1", board_id)
    if row is None or row["deleted_at"] is not None:
        raise not_found("board")
    return row


async def readable_board(conn: asyncpg.Connection, scope: Scope, board_id: str) -> asyncpg.Record:
    """The board, if ``scope`` may read it; ``not_found`` otherwise, the same whether it is missing
    or another tenant's (the latter is recorded for the owner's audit log)."""
    row = await board_row(conn, board_id)
    if not scope.can_read(row["organization_id"], row["division_id"]):
        raise hidden("board", row["organization_id"], board_id=board_id)
    return row


#: The board a referenced thing lives on, by kind (``$1`` is its id).
_BOARD_OF = {
    "board": "SELECT $1::text",
    "task": "SELECT board_id FROM kanban_cards WHERE id = $1",
    "column": "SELECT board_id FROM kanban_columns WHERE id = $1",
}


async def hide_if_foreign(
    conn: asyncpg.Connection, scope: Scope, error: ApiError, refs: Iterable[tuple[str, str]]
) -> ApiError:
    """``error`` for a command naming things that are not where it says (a card of another board
    under this board's id, another board's column): unchanged for the caller, but when one of
    ``refs`` (``(kind, id)``: ``board``, ``task``, ``column``) exists on a board ``scope`` may not
    read, it is recorded like ``hidden``'s refusal in that board organization's audit log."""
    for kind, ref in refs:
        row = await conn.fetchrow(
            f"""SELECT id, organization_id, division_id FROM kanban_boards
                WHERE id = ({_BOARD_OF[kind]}) AND deleted_at IS NULL""",
            ref,
        )
        if row is not None and not scope.can_read(row["organization_id"], row["division_id"]):
            error.audit = {"reason": "not_visible", "organization_id": row["organization_id"], "board_id": row["id"]}
            break
    return error


async def snapshot_of(conn: asyncpg.Connection, board: asyncpg.Record) -> dict[str, Any]:
    """``{board, columns, cards, seq}`` of an already authorized board, on ``conn``'s snapshot."""
    columns = await conn.fetch(_COLUMNS, board["id"])
    cards = await conn.fetch(_CARDS, board["id"])
    return {
        "board": board_json(board),
        "columns": [column_json(row, row["position"]) for row in columns],
        "cards": [card_json(row, row["position"]) for row in cards],
        "seq": board["seq"],
    }


async def card_position(conn: asyncpg.Connection, column_id: str, rank: str) -> int:
    return await conn.fetchval(
        "SELECT count(*)::int FROM kanban_cards WHERE column_id = $1 AND rank < $2", column_id, rank
    )


async def column_position(conn: asyncpg.Connection, board_id: str, rank: str) -> int:
    return await conn.fetchval(
        "SELECT count(*)::int FROM kanban_columns WHERE board_id = $1 AND rank < $2", board_id, rank
    )


class Queries:
    """The read side, used by REST and by the NATS API alike."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def snapshot(self, scope: Scope, board_id: str) -> dict[str, Any]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            board = await readable_board(conn, scope, board_id)
            return await snapshot_of(conn, board)

    async def events(self, scope: Scope, board_id: str, since_seq: int, limit: int = EVENTS_LIMIT) -> dict[str, Any]:
        """Events with ``seq > since_seq`` in order, or ``resync_required`` once they were pruned."""
        limit = max(1, min(limit, EVENTS_LIMIT))
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            board = await readable_board(conn, scope, board_id)
            if since_seq < board["seq"]:
                oldest = await conn.fetchval("SELECT min(seq) FROM kanban_board_events WHERE board_id = $1", board_id)
                if oldest is None or since_seq < oldest - 1:
                    raise ApiError(
                        "resync_required",
                        "events since that seq are no longer retained; load the snapshot",
                        seq=board["seq"],
                    )
            rows = await conn.fetch(
                f"""SELECT {EVENT_COLUMNS} FROM kanban_board_events
                    WHERE board_id = $1 AND seq > $2 ORDER BY seq LIMIT $3""",
                board_id,
                since_seq,
                limit,
            )
        events = [envelope_of(row).to_dict() for row in rows]
        return {"events": events, "seq": board["seq"], "has_more": bool(events) and events[-1]["seq"] < board["seq"]}

    async def list_boards(self, scope: Scope, organization_id: str, division_id: str | None = None) -> dict[str, Any]:
        """The organization's boards that ``scope`` may read, newest (last created) first.

        With ``division_id``, only that division's boards (``forbidden`` if the caller cannot read
        it). Without, a member limited to divisions gets the boards of those divisions plus the
        organization-wide ones (no division) — exactly the boards ``snapshot`` would let them read.
        """
        scope.require_read(organization_id, division_id)
        member = scope.membership(organization_id)
        divisions = list(member.divisions) if member is not None and member.divisions is not None else None
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {BOARD_COLUMNS} FROM kanban_boards
                    WHERE organization_id = $1 AND deleted_at IS NULL
                      AND ($2::text IS NULL OR division_id = $2)
                      AND ($3::text[] IS NULL OR division_id IS NULL OR division_id = ANY($3::text[]))
                    ORDER BY created_at DESC, id DESC LIMIT $4""",
                organization_id,
                division_id,
                divisions,
                BOARDS_LIMIT,
            )
        boards = [row for row in rows if scope.can_read(row["organization_id"], row["division_id"])]
        return {"boards": [board_summary_json(row) for row in boards]}

    async def access(self, scope: Scope, board_id: str) -> dict[str, Any]:
        """What realtime needs to admit a socket to a board's room."""
        async with self.pool.acquire() as conn:
            board = await readable_board(conn, scope, board_id)
        return {
            "board_id": board["id"],
            "organization_id": board["organization_id"],
            "division_id": board["division_id"],
            "seq": board["seq"],
            "can_write": scope.can_write(board["organization_id"], board["division_id"]),
        }
