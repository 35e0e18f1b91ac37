"""Rebuild a board from its events alone, and the invariants a board must always satisfy
(``Replay`` and ``check_positions`` live in ``liveboard/bench/boardview.py``, which the soak
bench shares).

Used by the property, concurrency and REST tests: if replaying the events in ``seq`` order does
not give exactly the snapshot the API serves, an event is missing, duplicated, out of order or
lacks a field — which is precisely what realtime clients and audit would get wrong.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from liveboard.bench.boardview import Replay, check_positions

__all__ = ["Replay", "assert_replays", "check_positions", "stored_events"]


async def stored_events(conn: asyncpg.Connection, board_id: str) -> list[dict[str, Any]]:
    """All events of a board as envelopes, straight from the table (no API limit)."""
    rows = await conn.fetch(
        """SELECT seq, event_id::text AS event_id, event_type, payload, actor, correlation_id
           FROM boards.kanban_board_events WHERE board_id = $1 ORDER BY seq""",
        board_id,
    )
    return [
        {
            "seq": r["seq"],
            "event_id": r["event_id"],
            "event_type": r["event_type"],
            "data": _json(r["payload"]),
            "user_id": r["actor"],
            "correlation_id": r["correlation_id"],
        }
        for r in rows
    ]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def assert_replays(conn: asyncpg.Connection, board_id: str, snapshot: dict[str, Any]) -> Replay:
    """Events are 1..seq without gaps and replay to exactly ``snapshot``; comments too."""
    events = await stored_events(conn, board_id)
    assert [e["seq"] for e in events] == list(range(1, snapshot["seq"] + 1))
    replay = Replay.of(events)
    assert replay.snapshot() == snapshot
    check_positions(snapshot)
    comments = await conn.fetch(
        "SELECT id FROM boards.kanban_comments WHERE board_id = $1",
        board_id,
    )
    assert {r["id"] for r in comments} == set(replay.comments)
    return replay
