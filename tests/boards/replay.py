"""Rebuild a board from its events alone, and the invariants a board must always satisfy.

Used by the property, concurrency and REST tests: if replaying the events in ``seq`` order does
not give exactly the snapshot the API serves, an event is missing, duplicated, out of order or
lacks a field — which is precisely what realtime clients and audit would get wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.boards import event_schemas


@dataclass
class Replay:
    board: dict[str, Any] | None = None
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    deleted: bool = False

    @classmethod
    def of(cls, events: list[dict[str, Any]]) -> Replay:
        replay = cls()
        for event in events:
            replay.apply(event)
        return replay

    def apply(self, envelope: dict[str, Any]) -> None:
        assert envelope["seq"] == self.seq + 1, f"seq {envelope['seq']} after {self.seq}"
        self.seq = envelope["seq"]
        kind, data = envelope["event_type"], envelope["data"]
        event_schemas.check(kind, data)
        if kind == "board_created":
            self.board = data["board"]
            self.columns = {column["id"]: dict(column) for column in data["columns"]}
            self.cards = {card["id"]: dict(card) for card in data["cards"]}
        elif kind == "board_updated":
            self.board = data["board"]
        elif kind == "board_deleted":
            self.deleted = True
        elif kind in ("column_created", "column_updated"):
            self.columns[data["column"]["id"]] = dict(data["column"])
        elif kind == "column_reordered":
            for column in data["columns"]:
                self.columns[column["id"]]["rank"] = column["rank"]
        elif kind == "column_rebalanced":
            for card in data["cards"]:
                self.cards[card["id"]]["rank"] = card["rank"]
        elif kind in ("task_created", "task_moved", "task_updated", "task_assigned"):
            self.cards[data["task"]["id"]] = dict(data["task"])
        elif kind == "task_deleted":
            del self.cards[data["task_id"]]
            self.comments = {k: v for k, v in self.comments.items() if v["task_id"] != data["task_id"]}
        elif kind == "task_commented":
            self.comments[data["comment"]["id"]] = data["comment"]
        else:
            raise AssertionError(f"unknown event type {kind}")

    def snapshot(self) -> dict[str, Any]:
        """The same shape as ``GET /v1/boards/{id}``; positions recomputed from ranks."""
        columns = sorted(self.columns.values(), key=lambda c: c["rank"])
        out_columns = [{**column, "position": index} for index, column in enumerate(columns)]
        cards = []
        for column in columns:
            in_column = sorted(
                (c for c in self.cards.values() if c["column_id"] == column["id"]), key=lambda c: c["rank"]
            )
            cards += [{**card, "position": index} for index, card in enumerate(in_column)]
        return {"board": self.board, "columns": out_columns, "cards": cards, "seq": self.seq}


def check_positions(snapshot: dict[str, Any]) -> None:
    """Each column's positions are 0..n-1 in rank order, with distinct ranks."""
    positions = [c["position"] for c in snapshot["columns"]]
    assert positions == list(range(len(positions)))
    by_column: dict[str, list[dict[str, Any]]] = {}
    for card in snapshot["cards"]:
        by_column.setdefault(card["column_id"], []).append(card)
    for cards in by_column.values():
        assert [c["position"] for c in cards] == list(range(len(cards)))
        ranks = [c["rank"] for c in cards]
        assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


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
