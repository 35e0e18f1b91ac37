"""The hash chain: tampering is named by /v1/audit/verify, appends serialize, retention keeps it verifiable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from libs.common.db import create_pool
from services.audit import chain
from services.audit.records import ActivityRecord

from .conftest import board_event, count_rows, new_id, wait_until


async def _seed(publisher, db, org: str, timestamps: list[str | None]) -> list:
    board = new_id("board")
    for n, timestamp in enumerate(timestamps):
        await publisher.board(org, board_event(org, board, task_id=f"card-{n}", seq=n + 1, timestamp=timestamp))
    await wait_until(lambda: count_rows(db, org), lambda count: count == len(timestamps))
    return await db.fetch("SELECT * FROM kanban_activity_log WHERE chain_key = $1 ORDER BY chain_pos", org)


async def _verify(client, tokens, org: str) -> dict:
    response = await client.get(
        "/v1/audit/verify",
        params={"organization_id": org},
        headers={"Authorization": f"Bearer {tokens.service_role()}"},
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def test_an_altered_row_is_named_by_verify(audit_client, publisher, db, tokens):
    org = new_id("org")
    rows = await _seed(publisher, db, org, [None] * 6)
    assert await _verify(audit_client, tokens, org) == {
        "organization_id": org,
        "ok": True,
        "rows": 6,
        "first_broken": None,
        "anchor_pos": 0,
        "head_pos": 6,
    }

    victim = rows[3]
    await db.execute(
        """UPDATE kanban_activity_log SET details = jsonb_set(details, '{task_id}', '"card-evil"') WHERE id = $1""",
        victim["id"],
    )
    result = await _verify(audit_client, tokens, org)
    assert result["ok"] is False and result["rows"] == 6
    assert result["first_broken"]["id"] == victim["id"]
    assert result["first_broken"]["event_id"] == victim["event_id"]
    assert result["first_broken"]["reason"] == "hash_mismatch"


async def test_recomputed_hash_deleted_row_and_cut_tail_are_detected(audit_client, publisher, db, tokens):
    org = new_id("org")
    rows = await _seed(publisher, db, org, [None] * 6)

    # A forger who also fixes the altered row's hash still breaks the next row's link.
    forged = dict(rows[1])
    forged["user_id"] = "someone-else"
    await db.execute(
        "UPDATE kanban_activity_log SET user_id = $2, hash = $3 WHERE id = $1",
        rows[1]["id"],
        "someone-else",
        chain.row_hash(forged["prev_hash"], forged),
    )
    broken = (await _verify(audit_client, tokens, org))["first_broken"]
    assert (broken["id"], broken["reason"]) == (rows[2]["id"], "prev_hash_mismatch")

    other = new_id("org")
    rows = await _seed(publisher, db, other, [None] * 5)
    await db.execute("DELETE FROM kanban_activity_log WHERE id = $1", rows[2]["id"])
    broken = (await _verify(audit_client, tokens, other))["first_broken"]
    assert (broken["id"], broken["reason"]) == (rows[3]["id"], "gap")

    third = new_id("org")
    rows = await _seed(publisher, db, third, [None] * 4)
    await db.execute("DELETE FROM kanban_activity_log WHERE id = $1", rows[-1]["id"])
    result = await _verify(audit_client, tokens, third)
    assert result["ok"] is False and result["rows"] == 3
    assert result["first_broken"]["reason"] == "truncated" and result["first_broken"]["id"] is None


async def test_every_stored_column_is_hashed(audit_client, db):
    columns = await db.fetch(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = 'audit' AND table_name = 'kanban_activity_log'"""
    )
    assert {c["column_name"] for c in columns} == {*chain.HASHED_COLUMNS, "id", "hash"}


async def test_concurrent_appends_to_one_organization_serialize(audit_client, database_url):
    org = new_id("org")
    now = datetime.now(UTC)
    records = [
        ActivityRecord(
            event_id=new_id("evt"),
            action="task_updated",
            details={"n": n, "float": 0.1 * n, "big": 1e16},
            task_id=None,
            user_id="u",
            organization_id=org,
            division_id=None,
            board_id="b",
            seq=n + 1,
            correlation_id=None,
            trace_id=None,
            stream="KANBAN_EVENTS",
            subject=f"kanban.events.{org}.b.task_updated",
            created_at=now,
        )
        for n in range(40)
    ]
    pool = await create_pool(database_url, max_size=20, schema="audit")
    try:

        async def store(record: ActivityRecord) -> int | None:
            async with pool.acquire() as conn:
                return await chain.append(conn, record)

        ids = await asyncio.gather(*(store(r) for r in records + records[:10]))  # ten delivered twice
        assert sum(i is not None for i in ids) == 40
        positions = [
            r["chain_pos"]
            for r in await pool.fetch("SELECT chain_pos FROM kanban_activity_log WHERE chain_key = $1", org)
        ]
        assert sorted(positions) == list(range(1, 41))
        async with pool.acquire() as conn:
            result = await chain.verify(conn, org)
        assert result.ok and result.rows == 40, result
    finally:
        await pool.close()


async def test_retention_prunes_a_prefix_and_the_chain_still_verifies(
    audit_settings, make_app, aiohttp_client, publisher, db, tokens
):
    client = await aiohttp_client(
        make_app("audit", **audit_settings, audit_retention_days=30, audit_retention_interval=0.2)
    )
    org = new_id("org")
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    # old, old, old, new, old (stuck behind a newer row, so kept), new
    rows = await _seed(publisher, db, org, [old, old, old, None, old, None])

    await wait_until(lambda: count_rows(db, org), lambda n: n == 3)
    kept = await db.fetch("SELECT * FROM kanban_activity_log WHERE chain_key = $1 ORDER BY chain_pos", org)
    assert [r["id"] for r in kept] == [r["id"] for r in rows[3:]]
    head = await db.fetchrow("SELECT * FROM chain_heads WHERE chain_key = $1", org)
    assert (head["anchor_pos"], head["anchor_hash"]) == (3, rows[2]["hash"])
    result = await _verify(client, tokens, org)
    assert (result["ok"], result["rows"], result["anchor_pos"]) == (True, 3, 3)

    await db.execute("UPDATE kanban_activity_log SET action = 'task_deleted' WHERE id = $1", rows[3]["id"])
    broken = (await _verify(client, tokens, org))["first_broken"]
    assert (broken["id"], broken["reason"]) == (rows[3]["id"], "hash_mismatch")
    metrics = await (await client.get("/metrics")).text()
    assert "audit_rows_pruned_total" in metrics
