"""A board rebuilt from its events alone, and the invariants a board must always satisfy.

Shared by ``liveboard bench soak``, the chaos suite and the boards tests: if replaying the events
in ``seq`` order does not give exactly the snapshot the API serves, an event is missing,
duplicated, out of order or lacks a field — which is precisely what realtime clients and audit
would get wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> Replay:
        """A view starting at a snapshot (``GET /v1/boards/{id}`` or a ``join_board`` ack)."""
        return cls(
            board=snapshot["board"],
            columns={c["id"]: dict(c) for c in snapshot["columns"]},
            cards={c["id"]: dict(c) for c in snapshot["cards"]},
            seq=snapshot["seq"],
        )

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


def position_problems(snapshot: dict[str, Any]) -> list[str]:
    """What is wrong with a snapshot's positions: each column's are 0..n-1 in rank order, with
    distinct ranks (empty when nothing is)."""
    problems = []
    positions = [c["position"] for c in snapshot["columns"]]
    if positions != list(range(len(positions))):
        problems.append(f"column positions are {positions}")
    by_column: dict[str, list[dict[str, Any]]] = {}
    for card in snapshot["cards"]:
        by_column.setdefault(card["column_id"], []).append(card)
    for column, cards in by_column.items():
        if [c["position"] for c in cards] != list(range(len(cards))):
            problems.append(f"card positions in {column} are {[c['position'] for c in cards]}")
        ranks = [c["rank"] for c in cards]
        if ranks != sorted(ranks) or len(set(ranks)) != len(ranks):
            problems.append(f"card ranks in {column} are not strictly increasing: {ranks}")
    return problems


def check_positions(snapshot: dict[str, Any]) -> None:
    """Each column's positions are 0..n-1 in rank order, with distinct ranks."""
    problems = position_problems(snapshot)
    assert not problems, "; ".join(problems)
