"""Every NATS subject and JetStream stream name the services share (one owner per name)."""

from __future__ import annotations

#: Board events, published by boards after commit: ``kanban.events.<org>.<board>.<event_type>``.
BOARD_EVENTS_STREAM = "KANBAN_EVENTS"
BOARD_EVENTS_WILDCARD = "kanban.events.>"

#: Security refusals (``security.<source>.<reason>``) and socket lifecycle (``connections.<event>``).
SECURITY_STREAM = "SECURITY_EVENTS"
SECURITY_WILDCARDS = ("security.>", "connections.>")

#: Every JetStream stream the services share and the subjects it captures: declared from here
#: only (``messaging.declare_stream``), so no service's declaration can overwrite another's.
STREAMS: dict[str, tuple[str, ...]] = {
    BOARD_EVENTS_STREAM: (BOARD_EVENTS_WILDCARD,),
    SECURITY_STREAM: SECURITY_WILDCARDS,
}

#: Request/reply: Supabase token -> scope token (same body as ``POST /v1/token/exchange``).
AUTH_EXCHANGE = "auth.v1.exchange"
#: Request/reply, boards -> auth: does a division belong to an organization, which users may read
#: it (``services/auth/directory.py``). Only boards may ask (NATS permissions).
AUTH_DIRECTORY = "auth.v1.directory"
#: Published by auth whenever a user's memberships change.
MEMBERSHIP_CHANGED_WILDCARD = "auth.membership.changed.*"

#: Request/reply commands and queries served by boards (queue group ``boards``).
BOARDS_QUEUE = "boards"


def board_events(organization_id: str, board_id: str, event_type: str) -> str:
    return f"kanban.events.{organization_id}.{board_id}.{event_type}"


def board_events_of(board_id: str) -> str:
    """Every event of one board, whatever its organization (realtime's interest subscription)."""
    return f"kanban.events.*.{board_id}.>"


def membership_changed(user_id: str) -> str:
    return f"auth.membership.changed.{user_id}"


def security_event(source: str, reason: str) -> str:
    return f"security.{source}.{reason}"


def connection_event(event: str) -> str:
    return f"connections.{event}"


def boards_command(command: str) -> str:
    return f"boards.v1.{command}"
