"""Reading the activity log: one chain at a time, newest first, keyset-paginated on the row id.

Pages are cut by id (``id < cursor``), never by offset: rows appended while a client pages
arrive with larger ids, so they never shift or repeat a later page (``chain.py`` explains why
ids within one chain grow in commit order).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field, field_validator

from libs.common.bounds import PG_BIGINT_MAX, utc_timestamp
from libs.common.correlation import CORRELATION_RE

from .records import GLOBAL_CHAIN, ID_RE

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_ID = ID_RE.pattern
#: ``organization_id`` may also name the chain of security events of no organization.
_CHAIN = rf"^(?:[A-Za-z0-9_-]{{1,64}}|{GLOBAL_CHAIN})$"

#: Optional filters: query parameter -> column (fixed names; values are always bind parameters).
FILTERS = {
    "board_id": "board_id",
    "task_id": "task_id",
    "user_id": "user_id",
    "correlation_id": "correlation_id",
}


class EventQuery(BaseModel):
    organization_id: str = Field(pattern=_CHAIN)
    board_id: str | None = Field(default=None, pattern=_ID)
    task_id: str | None = Field(default=None, pattern=_ID)
    user_id: str | None = Field(default=None, pattern=_ID)
    correlation_id: str | None = Field(default=None, pattern=CORRELATION_RE.pattern)
    since: datetime | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1)
    cursor: int | None = Field(
        default=None, ge=1, le=PG_BIGINT_MAX, description="next_cursor of the previous page (opaque)"
    )

    @field_validator("limit")
    @classmethod
    def _cap(cls, value: int) -> int:
        return min(value, MAX_LIMIT)

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return utc_timestamp(value) if value is not None else None


class ChainQuery(BaseModel):
    organization_id: str = Field(pattern=_CHAIN)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    event = dict(row)
    event.pop("chain_key")
    event["created_at"] = _iso(row["created_at"])
    event["recorded_at"] = _iso(row["recorded_at"])
    return event


async def list_events(conn: asyncpg.Connection, query: EventQuery) -> dict[str, Any]:
    conditions = ["chain_key = $1"]
    args: list[Any] = [query.organization_id]
    for name, column in FILTERS.items():
        value = getattr(query, name)
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    if query.since is not None:
        args.append(query.since)
        conditions.append(f"created_at >= ${len(args)}")
    if query.cursor is not None:
        args.append(query.cursor)
        conditions.append(f"id < ${len(args)}")
    args.append(query.limit + 1)  # one more than asked tells whether another page exists
    rows = await conn.fetch(
        f"SELECT * FROM kanban_activity_log WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    page = rows[: query.limit]
    more = len(rows) > query.limit
    return {"events": [event_json(row) for row in page], "next_cursor": str(page[-1]["id"]) if more else None}
