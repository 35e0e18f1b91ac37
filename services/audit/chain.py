"""The per-organization hash chain: append a row, verify a chain, prune it for retention.

Each chain (an organization's rows, or ``:global`` for security events of no organization) is a
list of rows numbered ``chain_pos`` 1, 2, 3, ... where
``hash = sha256(prev_hash || canonical_json(row))`` and ``prev_hash`` is the previous row's hash.
Editing, deleting or reordering any row breaks a link that ``verify`` reports.

Appends serialize per chain on the chain's ``chain_heads`` row (``FOR UPDATE``): two replicas
appending to one organization take turns, different organizations never wait for each other.
Because the row id (bigserial) is drawn while that lock is held, ids within one chain increase
in commit order, which is what makes the query API's keyset pagination stable.

Retention deletes a chain's oldest rows (always a prefix) and records the last deleted row's
position and hash as the chain's *anchor*; verification starts from the anchor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from .records import ActivityRecord

#: The ``prev_hash`` of a chain's first row.
GENESIS_HASH = "0" * 64

#: Every stored column except ``id`` (a storage detail) and ``hash`` (the result). A test fails
#: when the table gains a column that is not listed here, so nothing stored goes unprotected.
HASHED_COLUMNS = (
    "event_id",
    "action",
    "details",
    "task_id",
    "user_id",
    "organization_id",
    "division_id",
    "board_id",
    "seq",
    "correlation_id",
    "trace_id",
    "stream",
    "subject",
    "created_at",
    "recorded_at",
    "chain_key",
    "chain_pos",
    "prev_hash",
)

_INSERT = f"""
    INSERT INTO kanban_activity_log ({", ".join(HASHED_COLUMNS)}, hash)
    VALUES ({", ".join(f"${n}" for n in range(1, len(HASHED_COLUMNS) + 2))})
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id"""

#: Rows deleted per retention transaction, so pruning a big backlog never holds a chain for long.
PRUNE_BATCH = 5000


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical_json(row: Mapping[str, Any]) -> bytes:
    """The hashed form of a row: the hashed columns, keys sorted at every depth, UTC timestamps."""
    return orjson.dumps({name: _plain(row[name]) for name in HASHED_COLUMNS}, option=orjson.OPT_SORT_KEYS)


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_json(row)).hexdigest()


class _Duplicate(Exception):
    """Raised inside the append transaction to roll back the chain head when event_id exists."""


async def _lock_head(conn: asyncpg.Connection, chain_key: str) -> asyncpg.Record:
    head = await conn.fetchrow("SELECT * FROM chain_heads WHERE chain_key = $1 FOR UPDATE", chain_key)
    if head is None:
        await conn.execute(
            "INSERT INTO chain_heads (chain_key, head_hash, anchor_hash) VALUES ($1, $2, $2) ON CONFLICT DO NOTHING",
            chain_key,
            GENESIS_HASH,
        )
        head = await conn.fetchrow("SELECT * FROM chain_heads WHERE chain_key = $1 FOR UPDATE", chain_key)
    return head


async def append(conn: asyncpg.Connection, record: ActivityRecord) -> int | None:
    """Store ``record`` at the end of its chain; the new row id, or None when event_id is stored."""
    if await conn.fetchval("SELECT 1 FROM kanban_activity_log WHERE event_id = $1", record.event_id):
        return None  # the common redelivery case, answered without touching the chain lock
    # Hash what Postgres will hand back: jsonb may rewrite numbers (1e16 -> 10000000000000000).
    details = await conn.fetchval("SELECT $1::jsonb", record.details)
    try:
        async with conn.transaction():
            head = await _lock_head(conn, record.chain_key)
            row = asdict(record)
            row.update(
                details=details,
                recorded_at=datetime.now(UTC),
                chain_key=record.chain_key,
                chain_pos=head["head_pos"] + 1,
                prev_hash=head["head_hash"],
            )
            digest = row_hash(row["prev_hash"], row)
            row_id = await conn.fetchval(_INSERT, *(row[name] for name in HASHED_COLUMNS), digest)
            if row_id is None:
                raise _Duplicate  # a concurrent delivery of the same event won the race
            await conn.execute(
                "UPDATE chain_heads SET head_pos = $2, head_hash = $3, updated_at = now() WHERE chain_key = $1",
                record.chain_key,
                row["chain_pos"],
                digest,
            )
            return row_id
    except _Duplicate:
        return None


@dataclass(frozen=True)
class Broken:
    """The first row where a chain stops verifying (``id`` None: rows missing at the end)."""

    id: int | None
    event_id: str | None
    chain_pos: int | None
    reason: str
    message: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    first_broken: Broken | None
    anchor_pos: int
    head_pos: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "first_broken": asdict(self.first_broken) if self.first_broken else None,
            "anchor_pos": self.anchor_pos,
            "head_pos": self.head_pos,
        }


def _check(row: asyncpg.Record, pos: int, prev: str) -> Broken | None:
    def broken(reason: str, message: str) -> Broken:
        return Broken(row["id"], row["event_id"], row["chain_pos"], reason, message)

    if row["chain_pos"] != pos + 1:
        return broken("gap", f"expected chain position {pos + 1}, found {row['chain_pos']}: rows are missing")
    if row["prev_hash"] != prev:
        return broken("prev_hash_mismatch", "prev_hash does not match the previous row's hash")
    if row_hash(row["prev_hash"], row) != row["hash"]:
        return broken("hash_mismatch", "the row's content does not match its hash: it was altered")
    return None


async def verify(conn: asyncpg.Connection, chain_key: str) -> Verification:
    """Walk one chain from its anchor to its head in a single snapshot (appends may continue)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow("SELECT * FROM chain_heads WHERE chain_key = $1", chain_key)
        pos, prev = (head["anchor_pos"], head["anchor_hash"]) if head else (0, GENESIS_HASH)
        rows, first = 0, None
        cursor = conn.cursor(
            "SELECT * FROM kanban_activity_log WHERE chain_key = $1 ORDER BY chain_pos", chain_key, prefetch=500
        )
        async for row in cursor:
            rows += 1
            if first is None:
                first = _check(row, pos, prev)
            pos, prev = row["chain_pos"], row["hash"]
        head_pos = head["head_pos"] if head else 0
        if first is None and head is not None and (pos, prev) != (head["head_pos"], head["head_hash"]):
            first = Broken(
                None, None, pos + 1, "truncated", f"the chain head is at position {head['head_pos']}, rows end at {pos}"
            )
        return Verification(first is None, rows, first, head["anchor_pos"] if head else 0, head_pos)


async def prune(pool: asyncpg.Pool, cutoff: datetime) -> int:
    """Delete each chain's rows older than ``cutoff`` (a prefix) and move its anchor; rows deleted.

    Only a prefix can go: the first row at or after the cutoff stops the deletion even if later
    rows are older (clock skew between publishers), so every kept row still links to the anchor.
    """
    deleted = 0
    for chain_key in await pool.fetchval("SELECT coalesce(array_agg(chain_key), '{}') FROM chain_heads"):
        while True:
            async with pool.acquire() as conn, conn.transaction():
                head = await conn.fetchrow("SELECT * FROM chain_heads WHERE chain_key = $1 FOR UPDATE", chain_key)
                keep_from = await conn.fetchval(
                    """SELECT chain_pos FROM kanban_activity_log
                       WHERE chain_key = $1 AND chain_pos > $2 AND created_at >= $3
                       ORDER BY chain_pos LIMIT 1""",
                    chain_key,
                    head["anchor_pos"],
                    cutoff,
                )
                last = keep_from - 1 if keep_from is not None else head["head_pos"]
                last = min(last, head["anchor_pos"] + PRUNE_BATCH)
                anchor = await conn.fetchrow(
                    "SELECT chain_pos, hash FROM kanban_activity_log WHERE chain_key = $1 AND chain_pos = $2",
                    chain_key,
                    last,
                )
                if last <= head["anchor_pos"] or anchor is None:
                    break  # nothing old, or the would-be anchor row is gone (verify reports that)
                status = await conn.execute(
                    "DELETE FROM kanban_activity_log WHERE chain_key = $1 AND chain_pos <= $2", chain_key, last
                )
                await conn.execute(
                    "UPDATE chain_heads SET anchor_pos = $2, anchor_hash = $3, updated_at = now() WHERE chain_key = $1",
                    chain_key,
                    last,
                    anchor["hash"],
                )
                deleted += int(status.split()[-1])
    return deleted
