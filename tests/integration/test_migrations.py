"""The migration runner against a real Postgres: once, in order, concurrently safe, atomic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from libs.common.db import MigrationError, apply_migrations, pg_pool_ctx


def write(folder: Path, name: str, sql: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(sql)


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    write(folder, "V001__create_things.sql", "CREATE TABLE things (id int PRIMARY KEY, name text);")
    write(folder, "V002__seed_things.sql", "INSERT INTO things VALUES (1, 'one');")
    return folder


async def test_applies_in_order_once_and_is_idempotent(fresh_database, migrations):
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await apply_migrations(conn, "demo", migrations) == [1, 2]
        assert await apply_migrations(conn, "demo", migrations) == []
        write(migrations, "V003__more.sql", "INSERT INTO things VALUES (2, 'two');")
        assert await apply_migrations(conn, "demo", migrations) == [3]
        assert await conn.fetchval("SELECT count(*) FROM demo.things") == 2
        rows = await conn.fetch("SELECT version, name FROM demo.schema_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(1, "create_things"), (2, "seed_things"), (3, "more")]
    finally:
        await conn.close()


async def test_two_concurrent_runners_apply_each_file_once(fresh_database, migrations):
    # A slow first migration widens the race window: without the lock both runners would apply it.
    write(
        migrations,
        "V001__create_things.sql",
        "SELECT pg_sleep(0.5); CREATE TABLE things (id int PRIMARY KEY, name text);",
    )
    conns = [await asyncpg.connect(fresh_database) for _ in range(2)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, "demo", migrations) for c in conns))
        assert sorted(results) == [[], [1, 2]]
        assert await conns[0].fetchval("SELECT count(*) FROM demo.things") == 1
    finally:
        for conn in conns:
            await conn.close()


async def test_failing_migration_rolls_back_and_stops_startup(fresh_database, migrations, aiohttp_client):
    write(migrations, "V003__broken.sql", "INSERT INTO things VALUES (3, 'three'); SELECT no_such_function();")
    conn = await asyncpg.connect(fresh_database)
    try:
        with pytest.raises(MigrationError, match=r"V003__broken\.sql failed"):
            await apply_migrations(conn, "demo", migrations)
        assert await conn.fetchval("SELECT count(*) FROM demo.things") == 1  # V003's insert rolled back
        assert await conn.fetchval("SELECT max(version) FROM demo.schema_migrations") == 2
    finally:
        await conn.close()

    from aiohttp import web

    app = web.Application()
    app.cleanup_ctx.append(pg_pool_ctx(fresh_database, "demo", migrations))
    with pytest.raises(MigrationError):
        await aiohttp_client(app)


async def test_edited_history_and_bad_names_are_refused(fresh_database, migrations):
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn, "demo", migrations)
        write(migrations, "V001__create_things.sql", "CREATE TABLE things (id bigint PRIMARY KEY);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, "demo", migrations)
        write(migrations, "oops.sql", "SELECT 1;")
        with pytest.raises(MigrationError, match=r"V001__what_it_does\.sql"):
            await apply_migrations(conn, "demo", migrations)
    finally:
        await conn.close()


async def test_liveboard_migrate_command_applies_every_service_schema(fresh_database):
    proc = await asyncio.create_subprocess_exec(
        "liveboard",
        "migrate",
        env={"DATABASE_URL": fresh_database, "PATH": _venv_path()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    conn = await asyncpg.connect(fresh_database)
    try:
        schemas = {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
        assert {"auth", "boards", "audit"} <= schemas
        for schema in ("auth", "boards", "audit"):
            assert await conn.fetchval(f"SELECT to_regclass('{schema}.schema_migrations')") is not None
    finally:
        await conn.close()


def _venv_path() -> str:
    import os
    import sys

    return os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
