"""Property: whatever several users do to one board at the same time, the board stays whole.

Hypothesis draws rounds of operations (create, move with stale versions/columns and positions
past the end, edit, assign, comment, delete, add/rename/reorder columns, rename the board); each
round's operations run concurrently through the actions layer against the real Postgres. After
all rounds:

- replaying the events in ``seq`` order gives exactly the snapshot (and the comments table);
- ``seq`` is 1..n without gaps; positions are 0..n-1 per column with distinct ranks;
- every committed mutation has exactly one event (its result's ``event_id``), and the only other
  events are the rebalances committed with a placement in the same transaction.

The rank bound is tiny (2 characters) so that rebalances happen inside these short runs too.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from libs.common.db import create_pool
from libs.common.errors import ApiError
from libs.common.scopes import OrgMembership, Scope
from services.boards import payloads
from services.boards.actions import Actions
from services.boards.mutation import Caller
from services.boards.queries import Queries

from .replay import assert_replays, stored_events

USERS = 3
#: Refusals a concurrent round may legitimately produce: the card went away, an edit raced, a
#: reorder listed the columns before another was added.
EXPECTED_REFUSALS = {"not_found", "version_conflict", "conflict"}
#: Events committed alongside a placement, not as a command's own event.
SIDE_EVENTS = {"column_rebalanced", "column_reordered"}

user = st.integers(0, USERS - 1)
index = st.integers(0, 50)
#: Mostly "second place": repeated inserts into one gap are what makes rank keys grow.
position = st.sampled_from([0, 1, 1, 1, 2, 3, 9])
#: Any text a title may hold (NUL is refused by validation, tested in test_payloads).
title = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=20).filter(str.strip)
operation = st.one_of(
    st.tuples(st.just("create"), user, index, st.none() | position),
    st.tuples(st.just("move"), user, index, index, position, st.booleans(), st.booleans()),
    st.tuples(st.just("move"), user, index, index, position, st.booleans(), st.booleans()),
    st.tuples(st.just("update"), user, index, title, st.booleans()),
    st.tuples(st.just("assign"), user, index, st.integers(0, 3)),
    st.tuples(st.just("comment"), user, index),
    st.tuples(st.just("delete"), user, index),
    st.tuples(st.just("reorder"), user, st.integers(0, 1000)),
    st.tuples(st.just("add_column"), user, st.none() | st.integers(0, 5)),
    st.tuples(st.just("rename_column"), user, index),
    st.tuples(st.just("rename_board"), user),
)
rounds = st.lists(st.lists(operation, min_size=1, max_size=10), min_size=1, max_size=5)


def _pick(items: list[Any], i: int) -> Any:
    return items[i % len(items)] if items else None


async def _apply(actions: Actions, caller: Caller, board_id: str, op: tuple, snap: dict) -> dict | None:
    """One drawn operation against the round-start snapshot (which concurrent ops make stale)."""
    kind, cards, columns = op[0], snap["cards"], snap["columns"]
    if kind == "create":
        column = _pick(columns, op[2])
        cmd = payloads.CreateTask(column_id=column["id"], title="card", position=op[3])
        return (await actions.create_task(caller, board_id, cmd)).result
    if kind == "add_column":
        cmd = payloads.CreateColumn(name="extra", position=op[2])
        return (await actions.create_column(caller, board_id, cmd)).result
    if kind == "reorder":
        ids = [c["id"] for c in columns]
        random.Random(op[2]).shuffle(ids)
        return (await actions.reorder_columns(caller, board_id, payloads.ReorderColumns(column_ids=ids))).result
    if kind == "rename_column":
        column = _pick(columns, op[2])
        cmd = payloads.UpdateColumn(changes=payloads.ColumnChanges(name=f"col {op[2]}"))
        return (await actions.update_column(caller, column["id"], cmd)).result
    if kind == "rename_board":
        cmd = payloads.UpdateBoard(changes=payloads.BoardChanges(name=f"board by {caller.user_id}"))
        return (await actions.update_board(caller, board_id, cmd)).result
    card = _pick(cards, op[2])
    if card is None:
        return None
    if kind == "move":
        _, _, _, to, pos, stale_version, stale_from = op
        other = [c["id"] for c in columns if c["id"] != card["column_id"]]
        cmd = payloads.MoveTask(
            to_column_id=_pick(columns, to)["id"],
            position=pos,
            expected_version=card["version"] - 1 if stale_version else card["version"],
            from_column_id=other[0] if stale_from and other else card["column_id"],
        )
        return (await actions.move_task(caller, card["id"], cmd)).result
    if kind == "update":
        changes = payloads.CardChanges(title=op[3], labels=["x"])
        cmd = payloads.UpdateTask(changes=changes, expected_version=card["version"] if op[4] else None)
        return (await actions.update_task(caller, card["id"], cmd)).result
    if kind == "assign":
        cmd = payloads.AssignTask(assignee_ids=[f"user-{i}" for i in range(op[3])])
        return (await actions.assign_task(caller, card["id"], cmd)).result
    if kind == "comment":
        return (await actions.comment_task(caller, card["id"], payloads.CommentTask(body="hi"))).result
    if kind == "delete":
        return (await actions.delete_task(caller, card["id"])).result
    raise AssertionError(kind)


class AnyReference:
    """These properties are about ordering and replay, not auth's directory (tested against a real
    auth in tests/security): every assignee and division is accepted here."""

    async def check_division(self, organization_id: str, division_id: str | None) -> None:
        return None

    async def check_assignees(self, organization_id: str, division_id: str | None, user_ids: list[str]) -> None:
        return None


async def _scenario(database_url: str, drawn: list[list[tuple]]) -> None:
    pool = await create_pool(database_url, max_size=8, schema="boards")
    try:
        actions = Actions(pool, TracerProvider().get_tracer("test"), rank_max_length=2, references=AnyReference())
        queries = Queries(pool)
        org = "org-" + uuid.uuid4().hex[:10]
        callers = [
            Caller(Scope(sub=f"user-{i}", email=f"user{i}@example.com", organizations=(OrgMembership(org, "member"),)))
            for i in range(USERS)
        ]
        created = await actions.create_board(
            callers[0], payloads.CreateBoard(organization_id=org, name="P", columns=["a", "b", "c"])
        )
        board_id = created.result["board"]["id"]
        results = [created.result]
        for round_ops in drawn:
            snap = await queries.snapshot(callers[0].scope, board_id)
            outcomes = await asyncio.gather(
                *(_apply(actions, callers[op[1]], board_id, op, snap) for op in round_ops), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, ApiError):
                    assert outcome.code in EXPECTED_REFUSALS, outcome
                elif isinstance(outcome, BaseException):
                    raise outcome
                elif outcome is not None:
                    results.append(outcome)

        final = await queries.snapshot(callers[0].scope, board_id)
        async with pool.acquire() as conn:
            await assert_replays(conn, board_id, final)
            events = await stored_events(conn, board_id)
        by_id = {e["event_id"]: e for e in events}
        result_ids = [r["event_id"] for r in results]
        assert len(result_ids) == len(set(result_ids))
        for result in results:
            assert by_id[result["event_id"]]["seq"] == result["seq"]
        by_seq = {e["seq"]: e for e in events}
        for event in events:
            if event["event_id"] not in set(result_ids):
                # A side event is committed just before its command's own event, same transaction.
                assert event["event_type"] in SIDE_EVENTS, event
                assert by_seq[event["seq"] + 1]["event_id"] in set(result_ids)
    finally:
        await pool.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(drawn=rounds)
@example(  # rebalances of cards and columns, concurrently, on every run
    drawn=[
        [("create", 0, 0, None), ("create", 1, 0, None), ("create", 2, 0, None)],
        [("create", 0, 0, 1), ("create", 1, 0, 1), ("move", 2, 9, 0, 1, True, True), ("add_column", 1, 1)],
        [("move", 0, 1, 1, 0, False, False), ("move", 1, 2, 1, 1, False, True), ("delete", 2, 3)],
    ]
)
def test_concurrent_interleavings_replay_to_the_snapshot(boards_schema, drawn):
    asyncio.run(_scenario(boards_schema, drawn))
