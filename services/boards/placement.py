"""Integer position -> rank, decided at commit time under the board lock.

A client says "put it at index 3 of that column"; the server reads the neighbours that are
there *now* (the card being moved excluded), clamps an index past the end, and picks a key
between them. When that key would be longer than the bound, the column's keys are respread
first and the caller emits one ``column_rebalanced`` event with the new keys, so that replaying
events still reproduces every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from . import ordering
from .records import card_fields

_CARD_NEIGHBOURS = """
    WITH others AS (SELECT count(*)::int AS n FROM kanban_cards WHERE column_id = $1 AND id IS DISTINCT FROM $2::text)
    SELECT others.n, ARRAY(
        SELECT rank FROM kanban_cards WHERE column_id = $1 AND id IS DISTINCT FROM $2::text
        ORDER BY rank OFFSET greatest(least($3::int, others.n) - 1, 0) LIMIT 2) AS around
    FROM others
"""
_COLUMN_NEIGHBOURS = """
    WITH others AS (SELECT count(*)::int AS n FROM kanban_columns WHERE board_id = $1 AND id IS DISTINCT FROM $2::text)
    SELECT others.n, ARRAY(
        SELECT rank FROM kanban_columns WHERE board_id = $1 AND id IS DISTINCT FROM $2::text
        ORDER BY rank OFFSET greatest(least($3::int, others.n) - 1, 0) LIMIT 2) AS around
    FROM others
"""


#: What a move needs before it writes, in one round trip while the board is locked: the card
#: ($1, on board $2), whether the target column ($3) is on that board, and the neighbours at
#: position $4 of that column (the card itself excluded), as ``place_card`` reads them.
MOVE_READ = f"""
    SELECT card.*,
           EXISTS (SELECT 1 FROM kanban_columns WHERE id = $3 AND board_id = $2) AS column_exists,
           others.n,
           ARRAY(SELECT rank FROM kanban_cards WHERE column_id = $3 AND id <> $1
                 ORDER BY rank OFFSET greatest(least($4::int, others.n) - 1, 0) LIMIT 2) AS around
    FROM (SELECT {card_fields()} FROM kanban_cards WHERE id = $1 AND board_id = $2) AS card,
         (SELECT count(*)::int AS n FROM kanban_cards WHERE column_id = $3 AND id <> $1) AS others
"""


@dataclass(frozen=True)
class Neighbours:
    """How many other cards the column holds, and the keys around the wanted position."""

    n: int
    around: list[str]


@dataclass(frozen=True)
class Placement:
    rank: str
    position: int  # resolved index
    clamped: bool
    #: ``[(id, new_rank), ...]`` of the *other* rows when their keys were respread, else ``None``.
    rebalanced: list[tuple[str, str]] | None = None


def _choose(n: int, around: list[str], position: int) -> tuple[int, str | None, str | None]:
    index = min(position, n)
    if index == 0:
        return index, None, (around[0] if around else None)
    return index, around[0], (around[1] if len(around) > 1 else None)


async def place_card(
    conn: asyncpg.Connection,
    column_id: str,
    position: int,
    *,
    card_id: str | None = None,
    current_rank: str | None = None,
    max_length: int = ordering.DEFAULT_MAX_LENGTH,
    neighbours: Neighbours | None = None,
) -> Placement:
    """Where card ``card_id`` (``None`` for a new card) lands at ``position`` of ``column_id``.

    ``current_rank`` is the card's key when it already sits in this column: if it is already
    between the wanted neighbours it is kept (a move to where the card is writes no new key).
    ``neighbours``: already read under the same lock (``MOVE_READ``), saving a round trip.
    """
    if neighbours is None:
        row = await conn.fetchrow(_CARD_NEIGHBOURS, column_id, card_id, position)
        neighbours = Neighbours(row["n"], list(row["around"]))
    index, before, after = _choose(neighbours.n, neighbours.around, position)
    if current_rank is not None and ordering.is_between(current_rank, before, after):
        return Placement(current_rank, index, index != position)
    rank = ordering.key_between(before, after)
    if len(rank) <= max_length:
        return Placement(rank, index, index != position)
    ids = await conn.fetch(
        "SELECT id FROM kanban_cards WHERE column_id = $1 AND id IS DISTINCT FROM $2::text ORDER BY rank",
        column_id,
        card_id,
    )
    keys = ordering.spread(len(ids) + 1)
    mine = keys.pop(index)
    others = [(r["id"], key) for r, key in zip(ids, keys, strict=True)]
    # The moving card may still hold an old key equal to a new one until its own UPDATE.
    await conn.execute("SET CONSTRAINTS kanban_cards_rank_unique DEFERRED")
    await conn.execute(
        """UPDATE kanban_cards SET rank = u.rank
           FROM unnest($1::text[], $2::text[]) AS u(id, rank) WHERE kanban_cards.id = u.id""",
        [card for card, _ in others],
        [key for _, key in others],
    )
    return Placement(mine, index, index != position, others)


async def place_column(
    conn: asyncpg.Connection, board_id: str, position: int | None, *, max_length: int = ordering.DEFAULT_MAX_LENGTH
) -> Placement:
    """Where a new column lands (``None``: at the end); respreads the board's column keys if long."""
    wanted = position if position is not None else 2**31 - 1
    row = await conn.fetchrow(_COLUMN_NEIGHBOURS, board_id, None, wanted)
    index, before, after = _choose(row["n"], list(row["around"]), wanted)
    clamped = position is not None and index != position
    rank = ordering.key_between(before, after)
    if len(rank) <= max_length:
        return Placement(rank, index, clamped)
    ids = await conn.fetch("SELECT id FROM kanban_columns WHERE board_id = $1 ORDER BY rank", board_id)
    keys = ordering.spread(len(ids) + 1)
    mine = keys.pop(index)
    others = [(r["id"], key) for r, key in zip(ids, keys, strict=True)]
    await respread_columns(conn, others)
    return Placement(mine, index, clamped, others)


async def respread_columns(conn: asyncpg.Connection, ranks: list[tuple[str, str]]) -> None:
    """Give columns new keys in one statement (the deferrable constraint checks at its end)."""
    await conn.execute(
        """UPDATE kanban_columns SET rank = u.rank
           FROM unnest($1::text[], $2::text[]) AS u(id, rank) WHERE kanban_columns.id = u.id""",
        [column for column, _ in ranks],
        [key for _, key in ranks],
    )
