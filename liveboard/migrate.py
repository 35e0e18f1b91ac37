"""``liveboard migrate``: apply each service's migrations (safe from several pods at once)."""

from __future__ import annotations

import asyncio
import importlib

from libs.common.db import apply_migrations, create_pool

#: Services that own a Postgres schema, in the order their migrations are applied.
SCHEMAS = ("auth", "boards", "audit")


async def _migrate(database_url: str, services: tuple[str, ...]) -> dict[str, list[int]]:
    pool = await create_pool(database_url, max_size=2)
    try:
        applied: dict[str, list[int]] = {}
        async with pool.acquire() as conn:
            for service in services:
                module = importlib.import_module(f"services.{service}.app")
                applied[service] = await apply_migrations(conn, service, module.MIGRATIONS)
        return applied
    finally:
        await pool.close()


def migrate_all(database_url: str, services: tuple[str, ...] = SCHEMAS) -> dict[str, list[int]]:
    return asyncio.run(_migrate(database_url, services))
