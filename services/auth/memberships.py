"""Organizations, divisions and memberships: the SQL and the rules of who may change what.

Rules (CONTRACT §3, §7):

* Managing an organization (divisions, members, listing members) takes a ``service_role`` key or
  the organization's owner/admin. Anyone else gets 403 whether or not the organization exists,
  so ids of other tenants' organizations are not probed one 404 at a time.
* An admin cannot grant ``owner``, nor change or remove an owner. The last owner stays: they
  cannot be removed or demoted (409), so an organization created by a user is never orphaned.
* Admin and owner are organization-wide roles: a membership with one of them and a division list
  is refused (400), and a stored one (from before that rule) manages nothing. So no change can
  give anyone more than the organization-wide admin who made it holds, and nobody limited to
  divisions can lift their own limit.
* Every change bumps the user's membership version (``member_versions``) in the same
  transaction; scope tokens carry it, so services refuse tokens issued before the change.
* A change takes the organization's row lock for its transaction, so concurrent changes to one
  organization are serialized (two owners cannot demote each other to zero owners).
* Creating with an explicit id that exists with the same content returns it (200, not created);
  different content is 409 ``conflict``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from libs.common.errors import ApiError, id_taken, not_found
from libs.common.identity import Identity
from libs.common.scopes import OrgMembership

from .events import MembershipChange

MANAGERS = ("owner", "admin")


@dataclass(frozen=True)
class Manager:
    """Who is managing an organization: the service_role administrator, or a member's role."""

    user_id: str | None
    role: str  # "service_role" | "owner" | "admin"

    @property
    def is_owner_level(self) -> bool:
        return self.role in ("service_role", "owner")


def _forbidden(message: str, reason: str) -> ApiError:
    return ApiError("forbidden", message, reason=reason)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def organization_body(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "created_at": _iso(row["created_at"])}


def division_body(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "organization_id": row["organization_id"],
        "name": row["name"],
        "created_at": _iso(row["created_at"]),
    }


def member_body(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "organization_id": row["organization_id"],
        "user_id": row["user_id"],
        "role": row["role"],
        "divisions": list(row["divisions"]) if row["divisions"] is not None else None,
        "email": row["email"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


async def manager_of(
    conn: asyncpg.Connection, caller: Identity, organization_id: str, *, lock: bool = False
) -> Manager:
    """The caller as a manager of the organization (row-locked when ``lock``), else 403/404."""
    suffix = " FOR UPDATE" if lock else ""
    exists = await conn.fetchval(f"SELECT true FROM organizations WHERE id = $1{suffix}", organization_id)
    if caller.service:
        if not exists:
            raise not_found("organization")
        return Manager(None, "service_role")
    row = None
    if exists:
        row = await conn.fetchrow(
            "SELECT role, divisions FROM members WHERE organization_id = $1 AND user_id = $2",
            organization_id,
            caller.sub,
        )
    if row is None or row["role"] not in MANAGERS or row["divisions"] is not None:
        raise _forbidden("only this organization's owners and admins may do this", "not_org_admin")
    return Manager(caller.sub, row["role"])


async def bump_version(conn: asyncpg.Connection, user_id: str) -> int:
    """The user's next membership version (call inside the transaction that changes them)."""
    return await conn.fetchval(
        """INSERT INTO member_versions (user_id, version) VALUES ($1, 1)
           ON CONFLICT (user_id) DO UPDATE SET version = member_versions.version + 1
           RETURNING version""",
        user_id,
    )


async def create_organization(
    conn: asyncpg.Connection, caller: Identity, organization_id: str | None, name: str
) -> tuple[dict[str, Any], bool, list[MembershipChange]]:
    """(organization, created?, membership changes). A user creating one becomes its owner."""
    organization_id = organization_id or str(uuid.uuid4())
    async with conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO organizations (id, name, created_by) VALUES ($1, $2, $3)
               ON CONFLICT (id) DO NOTHING RETURNING *""",
            organization_id,
            name,
            caller.sub,
        )
        if row is None:
            existing = await conn.fetchrow("SELECT * FROM organizations WHERE id = $1", organization_id)
            if not caller.service:
                role = await conn.fetchval(
                    "SELECT role FROM members WHERE organization_id = $1 AND user_id = $2", organization_id, caller.sub
                )
                if role not in MANAGERS:  # someone else's organization: the same answer as any taken id
                    raise id_taken()
            if existing is None or existing["name"] != name:
                raise id_taken()
            return organization_body(existing), False, []
        changes: list[MembershipChange] = []
        if not caller.service:
            assert caller.sub is not None
            await conn.execute(
                "INSERT INTO members (organization_id, user_id, role, email) VALUES ($1, $2, 'owner', $3)",
                organization_id,
                caller.sub,
                caller.email,
            )
            version = await bump_version(conn, caller.sub)
            changes.append(MembershipChange(caller.sub, organization_id, "owner", None, "upserted", version))
        return organization_body(row), True, changes


async def organizations_of(conn: asyncpg.Connection, caller: Identity) -> list[dict[str, Any]]:
    """The caller's organizations with their role there (every organization for service_role)."""
    if caller.service:
        rows = await conn.fetch(
            "SELECT *, NULL::text AS role, NULL::text[] AS divisions FROM organizations ORDER BY id"
        )
    else:
        rows = await conn.fetch(
            """SELECT o.*, m.role, m.divisions FROM organizations o
               JOIN members m ON m.organization_id = o.id AND m.user_id = $1 ORDER BY o.id""",
            caller.sub,
        )
    return [
        {
            **organization_body(row),
            "role": row["role"],
            "divisions": list(row["divisions"]) if row["divisions"] is not None else None,
        }
        for row in rows
    ]


async def create_division(
    conn: asyncpg.Connection, caller: Identity, organization_id: str, division_id: str | None, name: str
) -> tuple[dict[str, Any], bool]:
    division_id = division_id or str(uuid.uuid4())
    async with conn.transaction():
        await manager_of(conn, caller, organization_id, lock=True)
        row = await conn.fetchrow(
            """INSERT INTO divisions (organization_id, id, name) VALUES ($1, $2, $3)
               ON CONFLICT (organization_id, id) DO NOTHING RETURNING *""",
            organization_id,
            division_id,
            name,
        )
        if row is not None:
            return division_body(row), True
        existing = await conn.fetchrow(
            "SELECT * FROM divisions WHERE organization_id = $1 AND id = $2", organization_id, division_id
        )
        if existing["name"] != name:
            raise id_taken()
        return division_body(existing), False


async def list_divisions(conn: asyncpg.Connection, caller: Identity, organization_id: str) -> list[dict[str, Any]]:
    """Any member may see the organization's divisions (the demo page's pickers need them)."""
    if not caller.service:
        is_member = await conn.fetchval(
            "SELECT true FROM members WHERE organization_id = $1 AND user_id = $2", organization_id, caller.sub
        )
        if not is_member:
            raise _forbidden("only members of this organization may list its divisions", "not_member")
    elif not await conn.fetchval("SELECT true FROM organizations WHERE id = $1", organization_id):
        raise not_found("organization")
    rows = await conn.fetch("SELECT * FROM divisions WHERE organization_id = $1 ORDER BY id", organization_id)
    return [division_body(row) for row in rows]


async def _check_divisions(conn: asyncpg.Connection, organization_id: str, divisions: list[str]) -> None:
    known = await conn.fetch(
        "SELECT id FROM divisions WHERE organization_id = $1 AND id = any($2::text[])", organization_id, divisions
    )
    missing = sorted(set(divisions) - {row["id"] for row in known})
    if missing:
        raise ApiError("invalid_payload", f"divisions not in this organization: {', '.join(missing)}")


async def _owner_count(conn: asyncpg.Connection, organization_id: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM members WHERE organization_id = $1 AND role = 'owner'", organization_id
    )


async def put_member(
    conn: asyncpg.Connection,
    caller: Identity,
    organization_id: str,
    user_id: str,
    *,
    role: str,
    divisions: list[str] | None,
    email: str | None,
    email_given: bool,
) -> tuple[dict[str, Any], bool, MembershipChange | None]:
    """(member, created?, change or None when nothing changed). ``divisions`` None = every division.

    ``email`` omitted keeps the stored one (a role change by someone who does not know the
    address must not erase it); an explicit null clears it.
    """
    divisions = sorted(set(divisions)) if divisions is not None else None
    async with conn.transaction():
        manager = await manager_of(conn, caller, organization_id, lock=True)
        existing = await conn.fetchrow(
            "SELECT * FROM members WHERE organization_id = $1 AND user_id = $2", organization_id, user_id
        )
        if not manager.is_owner_level:
            if role == "owner":
                raise _forbidden("only an owner can grant the owner role", "owner_required")
            if existing is not None and existing["role"] == "owner":
                raise _forbidden("only an owner can change an owner's membership", "owner_required")
        if existing is not None and existing["role"] == "owner" and role != "owner":
            if await _owner_count(conn, organization_id) <= 1:
                raise ApiError(
                    "conflict", "the last owner cannot be demoted; make someone else owner first", reason="last_owner"
                )
        if divisions is not None and role in MANAGERS:
            raise ApiError(
                "invalid_payload",
                f"{role} is an organization-wide role: omit divisions (limit a member or viewer instead)",
                reason="division_limited_admin",
            )
        if divisions is not None:
            await _check_divisions(conn, organization_id, divisions)
        if not email_given:
            email = existing["email"] if existing is not None else None
        if existing is not None:
            current = list(existing["divisions"]) if existing["divisions"] is not None else None
            if (existing["role"], current, existing["email"]) == (role, divisions, email):
                return member_body(existing), False, None
        row = await conn.fetchrow(
            """INSERT INTO members (organization_id, user_id, role, divisions, email)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (organization_id, user_id) DO UPDATE
                 SET role = EXCLUDED.role, divisions = EXCLUDED.divisions, email = EXCLUDED.email, updated_at = now()
               RETURNING *""",
            organization_id,
            user_id,
            role,
            divisions,
            email,
        )
        version = await bump_version(conn, user_id)
        change = MembershipChange(user_id, organization_id, role, divisions, "upserted", version)
        return member_body(row), existing is None, change


async def remove_member(
    conn: asyncpg.Connection, caller: Identity, organization_id: str, user_id: str
) -> MembershipChange:
    async with conn.transaction():
        manager = await manager_of(conn, caller, organization_id, lock=True)
        existing = await conn.fetchrow(
            "SELECT * FROM members WHERE organization_id = $1 AND user_id = $2", organization_id, user_id
        )
        if existing is None:
            raise not_found("member")
        if existing["role"] == "owner":
            if not manager.is_owner_level:
                raise _forbidden("only an owner can remove an owner", "owner_required")
            if await _owner_count(conn, organization_id) <= 1:
                raise ApiError(
                    "conflict", "the last owner cannot be removed; make someone else owner first", reason="last_owner"
                )
        await conn.execute("DELETE FROM members WHERE organization_id = $1 AND user_id = $2", organization_id, user_id)
        version = await bump_version(conn, user_id)
        return MembershipChange(user_id, organization_id, None, None, "removed", version)


async def list_members(conn: asyncpg.Connection, caller: Identity, organization_id: str) -> list[dict[str, Any]]:
    await manager_of(conn, caller, organization_id)
    rows = await conn.fetch("SELECT * FROM members WHERE organization_id = $1 ORDER BY user_id", organization_id)
    return [member_body(row) for row in rows]


async def memberships_of(conn: asyncpg.Connection, user_id: str) -> tuple[tuple[OrgMembership, ...], int]:
    """What goes into a user's scope token: every organization they belong to (role, divisions)
    and their membership version, read as of one moment."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT organization_id, role, divisions FROM members WHERE user_id = $1 ORDER BY organization_id",
            user_id,
        )
        version = await conn.fetchval("SELECT version FROM member_versions WHERE user_id = $1", user_id)
    memberships = tuple(
        OrgMembership(
            row["organization_id"], row["role"], tuple(row["divisions"]) if row["divisions"] is not None else None
        )
        for row in rows
    )
    return memberships, version or 0
