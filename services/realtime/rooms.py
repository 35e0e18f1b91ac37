"""Connections and rooms: who is connected, as whom, in which rooms; the seed's statistics.

Room names are the seed's: ``board:{board_id}``, ``org:{org}``, ``org:{org}:div:{div}``,
``user:{user_id}:{sid}``. python-socketio owns the delivery side of rooms; this manager owns the
facts we need to enforce limits and answer ``/stats`` without walking socket.io's internals.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from libs.common.scopes import Scope

from .limits import MessageLimiter


def board_room(board_id: str) -> str:
    return f"board:{board_id}"


def org_room(org_id: str) -> str:
    return f"org:{org_id}"


def division_room(org_id: str, division_id: str) -> str:
    return f"org:{org_id}:div:{division_id}"


def user_room(user_id: str, sid: str) -> str:
    return f"user:{user_id}:{sid}"


def room_kind(room: str) -> str:
    if room.startswith("board:"):
        return "board"
    if room.startswith("user:"):
        return "user"
    if ":div:" in room:
        return "division"
    if room.startswith("org:"):
        return "org"
    return "other"


def room_organization(room: str) -> str | None:
    """The organization a room belongs to, for org admins' filtered views (boards: via the manager)."""
    if room.startswith("org:"):
        return room.split(":")[1]
    return None


@dataclass(slots=True)
class Session:
    """One authenticated socket. The Supabase token is kept (memory only) to renew the scope."""

    sid: str
    user_id: str | None
    email: str | None
    ip: str
    scope: Scope
    scope_token: str
    supabase_token: str | None
    expires_at: float
    limiter: MessageLimiter
    connected_at: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.monotonic)
    boards: dict[str, str] = field(default_factory=dict)  # board_id -> organization_id
    rooms: set[str] = field(default_factory=set)
    timers: list[Any] = field(default_factory=list)
    #: The pending scope renewal (``session_scopes``) and whether the last room check completed.
    renewal: Any = None
    scope_checked: bool = True
    #: Being disconnected for abuse: what it still sends is dropped (never one more log line,
    #: security event or disconnect per message: that would let a flood amplify itself).
    ending: bool = False

    def touch(self) -> None:
        self.last_seen = time.monotonic()


@dataclass
class Stats:
    """Counters for ``/api/v1/websocket/stats`` (the seed's ``server_stats``)."""

    total_connections: int = 0
    active_connections: int = 0
    total_events: int = 0
    total_errors: int = 0
    refused_connections: int = 0


class ConnectionManager:
    """Sessions by sid and board membership, kept in step with socket.io's rooms."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.board_members: dict[str, set[str]] = {}
        self.board_orgs: dict[str, str] = {}
        self.stats = Stats()
        #: Client events and errors by the sender's set of organizations, so an organization
        #: admin's ``/stats`` counts only the activity of connections it can see (one entry per
        #: distinct set of organizations: a handful of integers per membership combination).
        self.activity: Counter[tuple[frozenset[str], bool]] = Counter()

    def add(self, session: Session) -> None:
        self.sessions[session.sid] = session
        self.stats.total_connections += 1
        self.stats.active_connections = len(self.sessions)

    def remove(self, sid: str) -> Session | None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            for board_id in list(session.boards):
                self.leave_board(session, board_id)
        self.stats.active_connections = len(self.sessions)
        return session

    def count_event(self, session: Session | None, *, error: bool = False) -> None:
        """One client event (``error``: one answered with an error) for the seed's totals."""
        if error:
            self.stats.total_errors += 1
        else:
            self.stats.total_events += 1
        if session is not None:
            self.activity[(frozenset(self.organizations_of(session)), error)] += 1

    def activity_of(self, visible_orgs: set[str], *, error: bool) -> int:
        """Events (or errors) of connections that belong to one of ``visible_orgs``."""
        return sum(n for (orgs, is_error), n in self.activity.items() if is_error == error and orgs & visible_orgs)

    def join_board(self, session: Session, board_id: str, organization_id: str) -> None:
        session.boards[board_id] = organization_id
        session.rooms.add(board_room(board_id))
        self.board_members.setdefault(board_id, set()).add(session.sid)
        self.board_orgs[board_id] = organization_id

    def leave_board(self, session: Session, board_id: str) -> bool:
        """Forget the membership; True when the board has no local member left."""
        session.boards.pop(board_id, None)
        session.rooms.discard(board_room(board_id))
        members = self.board_members.get(board_id)
        if members is not None:
            members.discard(session.sid)
            if not members:
                del self.board_members[board_id]
                self.board_orgs.pop(board_id, None)
                return True
        return False

    def members(self, board_id: str) -> int:
        return len(self.board_members.get(board_id, ()))

    def sessions_of_user(self, user_id: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.user_id == user_id]

    def organizations_of(self, session: Session) -> list[str]:
        return [m.id for m in session.scope.organizations]

    def room_counts(self, visible_orgs: set[str] | None = None) -> dict[str, int]:
        """Members per room (all rooms, or only those of ``visible_orgs``)."""
        counts: Counter[str] = Counter()
        for session in self.sessions.values():
            for room in session.rooms:
                org = self.board_orgs.get(room[6:]) if room.startswith("board:") else room_organization(room)
                if visible_orgs is None or org in visible_orgs:
                    counts[room] += 1
        return dict(counts)

    def snapshot(self, visible_orgs: set[str] | None = None) -> dict[str, Any]:
        """The seed's ``server_stats`` and ``manager_stats``, filtered for an org admin."""
        sessions = [
            s for s in self.sessions.values() if visible_orgs is None or visible_orgs & set(self.organizations_of(s))
        ]
        by_org: Counter[str] = Counter()
        for session in sessions:
            for org in self.organizations_of(session):
                if visible_orgs is None or org in visible_orgs:
                    by_org[org] += 1
        rooms = self.room_counts(visible_orgs)
        kinds = Counter(room_kind(room) for room in rooms)
        server = {
            "total_connections": self.stats.total_connections if visible_orgs is None else len(sessions),
            "active_connections": len(sessions),
            "total_rooms": len(rooms),
            "total_events": self.stats.total_events
            if visible_orgs is None
            else self.activity_of(visible_orgs, error=False),
            "total_errors": self.stats.total_errors
            if visible_orgs is None
            else self.activity_of(visible_orgs, error=True),
            "connections_by_org": dict(by_org),
        }
        manager = {
            "total_connections": server["total_connections"],
            "active_connections": len(sessions),
            "total_rooms": len(rooms),
            "board_rooms": kinds["board"],
            "org_rooms": kinds["org"],
            "division_rooms": kinds["division"],
            "user_rooms": kinds["user"],
        }
        return {"server_stats": server, "manager_stats": manager}
