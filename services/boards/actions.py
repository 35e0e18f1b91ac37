"""The actions layer: every change to kanban data, and every board event, is made here.

Each public method is one command of CONTRACT §4/§5. It runs inside ``Mutations.run`` (board
locked, caller authorized, events written in the same transaction, published after commit) and
returns ``Applied``, whose ``result`` is the event's ``data`` plus ``seq`` and ``event_id``.

Event data is built from the rows as written (``records``), complete enough that replaying a
board's events in ``seq`` order rebuilds its rows exactly: that is how the tests check this file.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from libs.common.errors import ApiError, id_taken, invalid, not_found
from libs.common.events import BOARD_EVENT_TYPES

from . import ordering, payloads
from .mutation import AfterCommit, Applied, Caller, Mutations, Target, Tx
from .placement import MOVE_READ, Neighbours, place_card, place_column, respread_columns
from .queries import card_position, column_position, hide_if_foreign, snapshot_of
from .records import BOARD_COLUMNS, CARD_FIELDS, COLUMN_FIELDS, board_json, card_json, column_json, comment_json
from .references import References

#: Every event type boards emits (the schemas in ``event_schemas`` must cover exactly these).
EVENT_TYPES = BOARD_EVENT_TYPES


def _new_id() -> str:
    return str(uuid.uuid4())


async def _card(tx: Tx, card_id: str) -> asyncpg.Record:
    """The card as it is now; no row lock needed, the board lock already serializes its writers."""
    row = await tx.conn.fetchrow(
        f"SELECT {CARD_FIELDS} FROM kanban_cards WHERE id = $1 AND board_id = $2", card_id, tx.board_id
    )
    if row is None:
        raise not_found("task")
    return row


async def _column(tx: Tx, column_id: str) -> asyncpg.Record:
    row = await tx.conn.fetchrow(
        f"SELECT {COLUMN_FIELDS} FROM kanban_columns WHERE id = $1 AND board_id = $2", column_id, tx.board_id
    )
    if row is None:
        raise await hide_if_foreign(tx.conn, tx.caller.scope, not_found("column"), [("column", column_id)])
    return row


async def _card_out(tx: Tx, row: asyncpg.Record) -> dict[str, Any]:
    return card_json(row, await card_position(tx.conn, row["column_id"], row["rank"]))


class Actions:
    """The only writer of the ``boards`` schema (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tracer: trace.Tracer,
        *,
        rank_max_length: int = ordering.DEFAULT_MAX_LENGTH,
        after_commit: list[AfterCommit] | None = None,
        registry: CollectorRegistry | None = None,
        references: References,
    ) -> None:
        self.mutations = Mutations(pool, tracer, after_commit=after_commit, registry=registry)
        self.rank_max_length = rank_max_length
        self.references = references

    async def _check_assignees(self, tx: Tx, assignee_ids: list[str]) -> None:
        await self.references.check_assignees(tx.board["organization_id"], tx.board["division_id"], assignee_ids)

    # --- boards -----------------------------------------------------------------------------

    async def create_board(self, caller: Caller, cmd: payloads.CreateBoard) -> Applied:
        """``board_created`` (seq 1) with the snapshot; an existing id with the same content is
        returned as it is now (``created`` false), with other content it is a ``conflict``. The
        division must be one of the organization's (asked of auth)."""
        caller.scope.require_write(cmd.organization_id, cmd.division_id)
        await self.references.check_division(cmd.organization_id, cmd.division_id)
        board_id = cmd.id or _new_id()

        async def body(tx: Tx) -> dict[str, Any] | None:
            row = await tx.conn.fetchrow(
                f"""INSERT INTO kanban_boards (id, organization_id, division_id, name, seq, created_by, created_at,
                                               updated_at)
                    VALUES ($1, $2, $3, $4, 0, $5, $6, $6) ON CONFLICT (id) DO NOTHING RETURNING {BOARD_COLUMNS}""",
                board_id,
                cmd.organization_id,
                cmd.division_id,
                cmd.name,
                tx.caller.user_id,
                tx.now,
            )
            if row is None:
                return await self._existing_board(tx, board_id, cmd)
            tx.board, tx.created = dict(row), True
            keys = ordering.spread(len(cmd.columns))
            columns = []
            for position, (name, rank) in enumerate(zip(cmd.columns, keys, strict=True)):
                column = await tx.conn.fetchrow(
                    f"""INSERT INTO kanban_columns (id, board_id, name, rank, created_at, updated_at)
                        VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMN_FIELDS}""",
                    _new_id(),
                    board_id,
                    name,
                    rank,
                    tx.now,
                )
                columns.append(column_json(column, position))
            tx.emit("board_created", {"board": board_json(row), "columns": columns, "cards": []})
            return None

        return await self.mutations.run(caller, "board_created", cmd.model_dump(mode="json"), body)

    async def _existing_board(self, tx: Tx, board_id: str, cmd: payloads.CreateBoard) -> dict[str, Any]:
        row = await tx.conn.fetchrow(f"SELECT {BOARD_COLUMNS} FROM kanban_boards WHERE id = $1", board_id)
        created = await tx.conn.fetchval(
            "SELECT payload FROM kanban_board_events WHERE board_id = $1 AND seq = 1", board_id
        )
        same = (
            row["deleted_at"] is None
            and created is not None
            and created["board"]["organization_id"] == cmd.organization_id
            and created["board"]["division_id"] == cmd.division_id
            and created["board"]["name"] == cmd.name
            and [column["name"] for column in created["columns"]] == list(cmd.columns)
        )
        if not same:
            raise id_taken()
        tx.board = dict(row)
        return await snapshot_of(tx.conn, row)

    async def update_board(self, caller: Caller, board_id: str, cmd: payloads.UpdateBoard) -> Applied:
        changes = cmd.changes.sent()

        async def body(tx: Tx) -> None:
            row = await tx.conn.fetchrow(
                f"UPDATE kanban_boards SET name = $2, updated_at = $3 WHERE id = $1 RETURNING {BOARD_COLUMNS}",
                tx.board_id,
                changes["name"],
                tx.now,
            )
            tx.emit("board_updated", {"board_id": tx.board_id, "changes": changes, "board": board_json(row)})

        return await self.mutations.run(
            caller, "board_updated", [board_id, changes], body, target=Target.board(board_id)
        )

    async def delete_board(self, caller: Caller, board_id: str) -> Applied:
        """Soft delete: the row and its event log stay (audit, catch-up); reads say ``not_found``.
        Destructive for everyone on the board, so it takes the organization's admin or owner."""

        async def body(tx: Tx) -> None:
            tx.caller.scope.require_admin(tx.board["organization_id"], "deleting a board")
            await tx.conn.execute("UPDATE kanban_boards SET deleted_at = $2 WHERE id = $1", tx.board_id, tx.now)
            tx.emit("board_deleted", {"board_id": tx.board_id, "deleted_by": tx.caller.who()})

        return await self.mutations.run(caller, "board_deleted", [board_id], body, target=Target.board(board_id))

    # --- columns ----------------------------------------------------------------------------

    async def create_column(self, caller: Caller, board_id: str, cmd: payloads.CreateColumn) -> Applied:
        column_id = cmd.id or _new_id()

        async def body(tx: Tx) -> dict[str, Any] | None:
            existing = await tx.conn.fetchrow(f"SELECT {COLUMN_FIELDS} FROM kanban_columns WHERE id = $1", column_id)
            if existing is not None:
                if existing["board_id"] != tx.board_id or existing["name"] != cmd.name:
                    raise id_taken()
                position = await column_position(tx.conn, tx.board_id, existing["rank"])
                return {"column": column_json(existing, position), "seq": tx.board["seq"]}
            count = await tx.conn.fetchval("SELECT count(*) FROM kanban_columns WHERE board_id = $1", tx.board_id)
            if count >= payloads.MAX_COLUMNS:
                raise invalid(f"a board has at most {payloads.MAX_COLUMNS} columns")
            placement = await place_column(tx.conn, tx.board_id, cmd.position, max_length=self.rank_max_length)
            if placement.rebalanced is not None:
                self._emit_reordered(tx, placement.rebalanced)
            row = await tx.conn.fetchrow(
                f"""INSERT INTO kanban_columns (id, board_id, name, rank, wip_limit, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {COLUMN_FIELDS}""",
                column_id,
                tx.board_id,
                cmd.name,
                placement.rank,
                cmd.wip_limit,
                tx.now,
            )
            tx.created = True
            tx.emit("column_created", {"column": column_json(row, placement.position)})
            return None

        request = [board_id, cmd.model_dump(mode="json")]
        return await self.mutations.run(caller, "column_created", request, body, target=Target.board(board_id))

    def _emit_reordered(self, tx: Tx, ranks: list[tuple[str, str]]) -> None:
        tx.emit(
            "column_reordered",
            {
                "column_ids": [column for column, _ in ranks],
                "columns": [
                    {"id": column, "position": index, "rank": rank} for index, (column, rank) in enumerate(ranks)
                ],
            },
        )

    async def update_column(
        self, caller: Caller, column_id: str, cmd: payloads.UpdateColumn, *, board_id: str | None = None
    ) -> Applied:
        changes = cmd.changes.sent()

        async def body(tx: Tx) -> None:
            await _column(tx, column_id)
            row = await tx.conn.fetchrow(
                f"""UPDATE kanban_columns SET name = coalesce($2, name),
                        wip_limit = CASE WHEN $3 THEN $4 ELSE wip_limit END,
                        version = version + 1, updated_at = $5
                    WHERE id = $1 RETURNING {COLUMN_FIELDS}""",
                column_id,
                changes.get("name"),
                "wip_limit" in changes,
                changes.get("wip_limit"),
                tx.now,
            )
            column = column_json(row, await column_position(tx.conn, tx.board_id, row["rank"]))
            tx.emit("column_updated", {"column_id": column_id, "changes": changes, "column": column})

        target = Target.board_of_column(column_id, board_id)
        return await self.mutations.run(caller, "column_updated", [column_id, changes], body, target=target)

    async def reorder_columns(self, caller: Caller, board_id: str, cmd: payloads.ReorderColumns) -> Applied:
        """``column_ids`` must name every column of the board exactly once, in the new order; a
        list made before another column was added is a ``conflict`` carrying the current order."""

        async def body(tx: Tx) -> None:
            rows = await tx.conn.fetch("SELECT id FROM kanban_columns WHERE board_id = $1 ORDER BY rank", tx.board_id)
            current = [r["id"] for r in rows]
            if len(cmd.column_ids) != len(set(cmd.column_ids)):
                raise invalid("column_ids: a column is listed twice")
            if not set(cmd.column_ids) <= set(current):
                error = invalid("column_ids: a column is not on this board")
                strangers = [("column", column) for column in cmd.column_ids if column not in current]
                raise await hide_if_foreign(tx.conn, tx.caller.scope, error, strangers)
            if len(cmd.column_ids) != len(current):  # a column was added since the client looked
                raise ApiError("conflict", "column_ids must list every column of the board", current=current)
            ranks = list(zip(cmd.column_ids, ordering.spread(len(cmd.column_ids)), strict=True))
            await respread_columns(tx.conn, ranks)
            self._emit_reordered(tx, ranks)

        request = [board_id, cmd.column_ids]
        return await self.mutations.run(caller, "column_reordered", request, body, target=Target.board(board_id))

    # --- cards ------------------------------------------------------------------------------

    async def create_task(self, caller: Caller, board_id: str, cmd: payloads.CreateTask) -> Applied:
        """``task_created`` with the new card; ``position`` defaults to the end of the column."""
        card_id = cmd.id or _new_id()

        async def body(tx: Tx) -> dict[str, Any] | None:
            existing = await tx.conn.fetchrow(f"SELECT {CARD_FIELDS} FROM kanban_cards WHERE id = $1", card_id)
            if existing is not None:
                same = (existing["board_id"], existing["title"], existing["description"]) == (
                    tx.board_id,
                    cmd.title,
                    cmd.description,
                )
                if not same:
                    raise id_taken()
                return {"task": await _card_out(tx, existing), "seq": tx.board["seq"]}
            await _column(tx, cmd.column_id)
            await self._check_assignees(tx, cmd.assignee_ids)
            wanted = cmd.position if cmd.position is not None else 2**31 - 1
            placement = await place_card(tx.conn, cmd.column_id, wanted, max_length=self.rank_max_length)
            if placement.rebalanced is not None:
                self._emit_rebalanced(tx, cmd.column_id, placement.rebalanced)
            row = await tx.conn.fetchrow(
                f"""INSERT INTO kanban_cards (id, board_id, column_id, rank, title, description, due_date, labels,
                                              assignee_ids, created_by, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING {CARD_FIELDS}""",
                card_id,
                tx.board_id,
                cmd.column_id,
                placement.rank,
                cmd.title,
                cmd.description,
                cmd.due_date,
                cmd.labels,
                cmd.assignee_ids,
                tx.caller.user_id,
                tx.now,
            )
            tx.created = True
            data: dict[str, Any] = {
                "task": card_json(row, placement.position),
                "created_by": tx.caller.who(),
                "timestamp": tx.event_time,
            }
            if cmd.position is not None and placement.clamped:
                data["conflict"] = _conflict(
                    ["position_clamped"],
                    {"column_id": cmd.column_id, "position": cmd.position},
                    {"column_id": cmd.column_id, "position": placement.position},
                )
            tx.emit("task_created", data)
            return None

        request = [board_id, cmd.model_dump(mode="json")]
        return await self.mutations.run(caller, "task_created", request, body, target=Target.board(board_id))

    def _emit_rebalanced(self, tx: Tx, column_id: str, ranks: list[tuple[str, str]]) -> None:
        tx.emit(
            "column_rebalanced",
            {"column_id": column_id, "cards": [{"id": card, "rank": rank} for card, rank in ranks]},
        )

    async def move_task(
        self, caller: Caller, task_id: str, cmd: payloads.MoveTask, *, board_id: str | None = None
    ) -> Applied:
        """Moves always land: a stale column, version or position is resolved and reported in
        ``conflict`` rather than refused, because the mover's intent ("put it there") still holds."""

        async def body(tx: Tx) -> None:
            # The card, the target column and its neighbours in one round trip: the board is
            # locked from here to commit, and on a hot board that time is its whole throughput.
            card = await tx.conn.fetchrow(MOVE_READ, task_id, tx.board_id, cmd.to_column_id, cmd.position)
            if card is None:
                raise not_found("task")
            if not card["column_exists"]:
                refs = [("column", cmd.to_column_id)]
                raise await hide_if_foreign(tx.conn, tx.caller.scope, not_found("column"), refs)
            reasons = []
            if cmd.expected_version is not None and cmd.expected_version != card["version"]:
                reasons.append("stale_version")
            if cmd.from_column_id is not None and cmd.from_column_id != card["column_id"]:
                reasons.append("stale_from_column")
            same_column = card["column_id"] == cmd.to_column_id
            placement = await place_card(
                tx.conn,
                cmd.to_column_id,
                cmd.position,
                card_id=task_id,
                current_rank=card["rank"] if same_column else None,
                max_length=self.rank_max_length,
                neighbours=Neighbours(card["n"], list(card["around"])),
            )
            if placement.clamped:
                reasons.append("position_clamped")
            if placement.rebalanced is not None:
                self._emit_rebalanced(tx, cmd.to_column_id, placement.rebalanced)
            row = await tx.conn.fetchrow(
                f"""UPDATE kanban_cards SET column_id = $2, rank = $3, version = version + 1, updated_at = $4
                    WHERE id = $1 RETURNING {CARD_FIELDS}""",
                task_id,
                cmd.to_column_id,
                placement.rank,
                tx.now,
            )
            data: dict[str, Any] = {
                "task_id": task_id,
                "from_column_id": card["column_id"],
                "to_column_id": cmd.to_column_id,
                "position": placement.position,
                "moved_by": tx.caller.who(),
                "timestamp": tx.event_time,
                "task": card_json(row, placement.position),
            }
            if reasons:
                data["conflict"] = _conflict(
                    reasons,
                    cmd.model_dump(exclude_none=True),
                    {
                        "from_column_id": card["column_id"],
                        "to_column_id": cmd.to_column_id,
                        "position": placement.position,
                        "version": card["version"],
                    },
                )
            tx.emit("task_moved", data)

        request = [task_id, board_id, cmd.model_dump(mode="json")]
        target = Target.board_of_card(task_id, board_id)
        return await self.mutations.run(caller, "task_moved", request, body, target=target)

    async def update_task(
        self, caller: Caller, task_id: str, cmd: payloads.UpdateTask, *, board_id: str | None = None
    ) -> Applied:
        """A stale ``expected_version`` is refused (``version_conflict`` with the current card):
        unlike a move, an edit made against old text cannot be resolved for the author."""
        changes = cmd.changes.sent()

        async def body(tx: Tx) -> None:
            card = await _card(tx, task_id)
            if cmd.expected_version is not None and cmd.expected_version != card["version"]:
                raise ApiError(
                    "version_conflict",
                    f"task is at version {card['version']}, not {cmd.expected_version}",
                    current=await _card_out(tx, card),
                )
            row = await tx.conn.fetchrow(
                f"""UPDATE kanban_cards SET
                        title = CASE WHEN $2 THEN $3 ELSE title END,
                        description = CASE WHEN $4 THEN $5 ELSE description END,
                        due_date = CASE WHEN $6 THEN $7::date ELSE due_date END,
                        labels = CASE WHEN $8 THEN $9::text[] ELSE labels END,
                        version = version + 1, updated_at = $10
                    WHERE id = $1 RETURNING {CARD_FIELDS}""",
                task_id,
                "title" in changes,
                changes.get("title"),
                "description" in changes,
                changes.get("description"),
                "due_date" in changes,
                changes.get("due_date"),
                "labels" in changes,
                changes.get("labels"),
                tx.now,
            )
            task = await _card_out(tx, row)
            shown = {name: task[name] for name in changes}
            tx.emit(
                "task_updated",
                {"task_id": task_id, "changes": shown, "task": task, "updated_by": tx.caller.who()},
            )

        request = [task_id, board_id, cmd.model_dump(mode="json", exclude_unset=True)]
        target = Target.board_of_card(task_id, board_id)
        return await self.mutations.run(caller, "task_updated", request, body, target=target)

    async def delete_task(self, caller: Caller, task_id: str, *, board_id: str | None = None) -> Applied:
        async def body(tx: Tx) -> None:
            card = await _card(tx, task_id)
            await tx.conn.execute("DELETE FROM kanban_cards WHERE id = $1", task_id)
            tx.emit(
                "task_deleted",
                {"task_id": task_id, "column_id": card["column_id"], "deleted_by": tx.caller.who()},
            )

        target = Target.board_of_card(task_id, board_id)
        return await self.mutations.run(caller, "task_deleted", [task_id, board_id], body, target=target)

    async def assign_task(
        self, caller: Caller, task_id: str, cmd: payloads.AssignTask, *, board_id: str | None = None
    ) -> Applied:
        """Replaces the assignee list (the request is the whole new list)."""

        async def body(tx: Tx) -> None:
            await _card(tx, task_id)
            await self._check_assignees(tx, cmd.assignee_ids)
            row = await tx.conn.fetchrow(
                f"""UPDATE kanban_cards SET assignee_ids = $2, version = version + 1, updated_at = $3
                    WHERE id = $1 RETURNING {CARD_FIELDS}""",
                task_id,
                cmd.assignee_ids,
                tx.now,
            )
            tx.emit(
                "task_assigned",
                {
                    "task_id": task_id,
                    "assignee_ids": list(row["assignee_ids"]),
                    "task": await _card_out(tx, row),
                    "assigned_by": tx.caller.who(),
                },
            )

        request = [task_id, board_id, cmd.assignee_ids]
        target = Target.board_of_card(task_id, board_id)
        return await self.mutations.run(caller, "task_assigned", request, body, target=target)

    async def comment_task(
        self, caller: Caller, task_id: str, cmd: payloads.CommentTask, *, board_id: str | None = None
    ) -> Applied:
        async def body(tx: Tx) -> None:
            await _card(tx, task_id)
            row = await tx.conn.fetchrow(
                """INSERT INTO kanban_comments (id, board_id, card_id, author_id, body, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, card_id, author_id, body, created_at""",
                _new_id(),
                tx.board_id,
                task_id,
                tx.caller.user_id,
                cmd.body,
                tx.now,
            )
            tx.created = True
            tx.emit("task_commented", {"task_id": task_id, "comment": comment_json(row), "author": tx.caller.who()})

        request = [task_id, board_id, cmd.body]
        target = Target.board_of_card(task_id, board_id)
        return await self.mutations.run(caller, "task_commented", request, body, target=target)


def _conflict(reasons: list[str], requested: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """``{reason, reasons, requested, resolved}``: ``reason`` is the first (most telling) one."""
    return {"reason": reasons[0], "reasons": reasons, "requested": requested, "resolved": resolved}
