"""Postgres: the asyncpg pool as a ``cleanup_ctx`` resource and the migration runner.

Migrations are numbered plain SQL files (``V001__create_cards.sql``) in a service's
``migrations/`` folder, applied in order, each in its own transaction, while the runner holds a
session advisory lock for that schema: two pods starting at once apply every file exactly once.
An applied file whose text changed is refused (someone edited history).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
from aiohttp import web

log = logging.getLogger(__name__)

PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
MIGRATION_FILE_RE = re.compile(r"^V(\d{3,})__([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration could not be applied; start-up must stop."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path) -> list[Migration]:
    """The migration files of one folder, in version order; a malformed name is an error."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named V001__what_it_does.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return sorted(found, key=lambda m: m.version)


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"liveboard.migrations.{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def apply_migrations(conn: asyncpg.Connection, schema: str, directory: Path) -> list[int]:
    """Apply what is pending for ``schema``; return the versions this call applied."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise MigrationError(f"bad schema name {schema!r}")
    migrations = discover(directory)
    key = _lock_key(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch(f"SELECT version, checksum FROM {schema}.schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        done: list[int] = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(f"{schema} migration {migration.path.name} changed after it was applied")
                continue
            try:
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL search_path TO {schema}, public")
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{schema} migration {migration.path.name} failed: {exc}") from exc
            log.info("applied migration", extra={"schema": schema, "migration": migration.path.name})
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("jsonb", "json"):
        await conn.set_type_codec(
            kind,
            schema="pg_catalog",
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            format="text",
        )


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, wait: float = 30.0, schema: str | None = None
) -> asyncpg.Pool:
    """A pool with the JSON codecs registered; retries while Postgres is still starting."""
    deadline = time.monotonic() + wait
    server_settings = {"application_name": "liveboard"}
    if schema:
        server_settings["search_path"] = f"{schema}, public"
    while True:
        try:
            return await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                server_settings=server_settings,
                command_timeout=30,
            )
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def pg_pool_ctx(
    dsn: str, schema: str, migrations_dir: Path | None, *, migrate: bool = True, max_size: int = 10
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` generator: open the pool (migrating first), yield, close it."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(dsn, max_size=max_size, schema=schema)
        if migrate and migrations_dir is not None:
            async with pool.acquire() as conn:
                await apply_migrations(conn, schema, migrations_dir)
        app[PG_POOL] = pool
        yield
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()

    return ctx


async def pg_ready(pool: asyncpg.Pool, timeout: float = 1.0) -> bool:
    """True when a connection can answer ``SELECT 1`` within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        return True
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
