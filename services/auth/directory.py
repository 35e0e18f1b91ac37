"""The directory query boards asks before it stores a reference to auth's data.

Boards owns cards, auth owns who belongs where; a card may only name what the board's own
organization holds. ``auth.v1.directory`` answers, for one organization (and optionally one of its
divisions): whether the division is the organization's, and which of the given users are members
who may read a board of that division (any role; a member limited to divisions reads only those,
and boards without a division are read by every member).

Request ``{"organization_id", "division_id"?, "user_ids"?: [...]}``; reply data
``{"organization_exists", "division_exists" (null without a division), "readers": [...]}``. The
answer names only users the request named, so it lists nobody the asker did not already know of;
only boards may ask (the NATS permissions in ``libs/common/nats_permissions.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from libs.common.ids import ID_PATTERN

Id = Annotated[StrictStr, StringConstraints(pattern=ID_PATTERN)]


class DirectoryQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    organization_id: Id
    division_id: Id | None = None
    user_ids: Annotated[list[Id], Field(max_length=100)] = []


async def directory(
    conn: asyncpg.Connection, organization_id: str, division_id: str | None, user_ids: list[str]
) -> dict[str, Any]:
    organization = await conn.fetchval("SELECT true FROM organizations WHERE id = $1", organization_id)
    division = None
    if division_id is not None:
        division = bool(
            await conn.fetchval(
                "SELECT true FROM divisions WHERE organization_id = $1 AND id = $2", organization_id, division_id
            )
        )
    readers: list[str] = []
    if user_ids:
        rows = await conn.fetch(
            """SELECT user_id FROM members
               WHERE organization_id = $1 AND user_id = any($2::text[])
                 AND (divisions IS NULL OR $3::text IS NULL OR $3 = any(divisions))
               ORDER BY user_id""",
            organization_id,
            list(dict.fromkeys(user_ids)),
            division_id,
        )
        readers = [row["user_id"] for row in rows]
    return {"organization_exists": bool(organization), "division_exists": division, "readers": readers}
