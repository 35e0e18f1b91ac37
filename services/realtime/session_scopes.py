"""A socket's scope over its whole life: renewed before it expires and whenever auth announces a
membership change, with every room the socket is in re-checked against the renewed scope.

``join_board`` admits a socket to a board's room only after boards confirms access; this module
keeps that true afterwards. A renewal that changes the user's organizations re-enters the
organization/division rooms and asks boards again about every joined board: boards the user may no
longer read are left with ``board_access_revoked``. Because every scope is renewed before its
expiry (``AUTH_SCOPE_TOKEN_TTL``, at most 5 minutes), a lost ``auth.membership.changed`` message
delays a removal by at most one scope lifetime instead of lasting for the whole session.

Failures: auth refusing the session's token (``unauthorized``/``forbidden``) ends the session
(``session_expired {reason: "access_revoked"}``). Auth unreachable is retried every few seconds;
a socket whose scope expires before a renewal succeeds is ended (``session_expired {reason:
"scope_expired"}``) — rooms are never kept on an expired scope. Its client reconnects and is
admitted (or refused) afresh.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from libs.common.access import STALE
from libs.common.errors import ApiError

from .rooms import Session, division_room, org_room

if TYPE_CHECKING:
    from .server import WebSocketServer

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Seconds between renewal attempts while auth is unreachable.
RETRY_SECONDS = 3.0
#: Renew this long before the scope expires (at most a third of what is left).
RENEW_AHEAD = 10.0
NAMESPACE = "/workspace"


class SessionScopes:
    """Renewal and re-checking of every session's scope (see the module docstring)."""

    def __init__(self, server: WebSocketServer) -> None:
        self.ws = server
        self._renewing: dict[str, asyncio.Task[bool]] = {}
        self.renewals = 0
        self.rechecks = 0

    # -- timers ----------------------------------------------------------------------------------

    def schedule(self, session: Session, delay: float | None = None) -> None:
        """(Re)arm the session's renewal timer: shortly before its scope expires, or in ``delay``."""
        if session.renewal is not None:
            session.renewal.cancel()
            session.renewal = None
        if session.supabase_token is None:
            return
        if delay is None:
            remaining = session.scope.expires_at - time.time()
            delay = max(1.0, remaining - min(RENEW_AHEAD, remaining / 3))
        loop = asyncio.get_running_loop()
        # A fresh context: the timer must not keep the connect handler's span alive for minutes.
        session.renewal = loop.call_later(delay, self._spawn_renewal, session, context=contextvars.Context())

    def cancel(self, session: Session) -> None:
        if session.renewal is not None:
            session.renewal.cancel()
            session.renewal = None
        task = self._renewing.pop(session.sid, None)
        if task is not None:
            task.cancel()

    def _spawn_renewal(self, session: Session) -> None:
        session.renewal = None
        if self.ws.manager.sessions.get(session.sid) is session:
            self.ws.spawn(self.renew(session), name="realtime-scope-renewal")

    # -- renewal ---------------------------------------------------------------------------------

    async def renew(self, session: Session) -> bool:
        """Exchange the session's token again (one exchange per session at a time); True when the
        session holds a current scope afterwards."""
        task = self._renewing.get(session.sid)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._renew(session))
            self._renewing[session.sid] = task
            task.add_done_callback(lambda _: self._renewing.pop(session.sid, None))
        return await asyncio.shield(task)

    async def _renew(self, session: Session) -> bool:
        ws = self.ws
        if session.supabase_token is None:
            return True
        self.renewals += 1
        try:
            scope_token, scope = await ws.scopes.scope_for(session.supabase_token)
        except ApiError as exc:
            if exc.code in ("unauthorized", "forbidden"):
                log.info("ending a session whose token auth refuses", extra={"sid": session.sid, "code": exc.code})
                await ws.end_session(session, "access_revoked")
                return False
            if session.scope.expires_at <= time.time():
                log.warning("ending a session whose scope could not be renewed", extra={"sid": session.sid})
                await ws.end_session(session, "scope_expired")
                return False
            log.info("scope renewal failed; retrying", extra={"sid": session.sid, "code": exc.code})
            self.schedule(session, RETRY_SECONDS * random.uniform(0.8, 1.2))
            return True
        if self.ws.manager.sessions.get(session.sid) is not session:
            return False
        changed = scope.organizations != session.scope.organizations
        session.scope_token, session.scope = scope_token, scope
        if ws.access.revocations.is_stale(scope):  # an exchange that began before the change
            self.schedule(session, 0.2)
        else:
            self.schedule(session)
        if changed or not session.scope_checked:
            await self.recheck_rooms(session)
        return True

    async def token(self, session: Session) -> str:
        """The session's scope token, renewed first when it is about to expire or stale."""
        if session.supabase_token is None:
            raise ApiError("unauthorized", "this connection has no user token")
        now = time.time()
        if session.scope.expires_at - now < RENEW_AHEAD or self.ws.access.revocations.is_stale(session.scope):
            if session.expires_at <= now:
                raise ApiError("unauthorized", "token expired; send refresh_token", reason="expired")
            if not await self.renew(session):
                raise ApiError("unauthorized", "this connection's access has ended")
        return session.scope_token

    async def call(self, session: Session, request: Callable[[str], Awaitable[T]]) -> T:
        """``request(scope_token)``, renewed and retried once when boards finds the scope stale
        (boards heard of a membership change a moment before this replica did)."""
        token = await self.token(session)
        try:
            return await request(token)
        except ApiError as exc:
            if exc.details.get("reason") != STALE:
                raise
        self.ws.scopes.invalidate_user(session.user_id or "")
        if not await self.renew(session):
            raise ApiError("unauthorized", "this connection's access has ended")
        return await request(session.scope_token)

    # -- membership changes and room checks ------------------------------------------------------

    async def membership_changed(self, user_id: str, version: int) -> None:
        """Auth announced a change: forget cached scopes, renew every socket of the user now."""
        self.ws.access.membership_changed(user_id, version)
        sessions = self.ws.manager.sessions_of_user(user_id)
        await asyncio.gather(*(self.renew(session) for session in sessions))

    async def enter_org_rooms(self, session: Session) -> None:
        """The organization and division rooms the session's scope entitles it to, exactly."""
        wanted = set()
        for membership in session.scope.organizations:
            wanted.add(org_room(membership.id))
            for division in membership.divisions or ():
                wanted.add(division_room(membership.id, division))
        current = {r for r in session.rooms if r.startswith("org:")}
        for room in current - wanted:
            await self.ws.sio.leave_room(session.sid, room, namespace=NAMESPACE)
            session.rooms.discard(room)
        for room in wanted - current:
            await self.ws.sio.enter_room(session.sid, room, namespace=NAMESPACE)
            session.rooms.add(room)

    async def recheck_rooms(self, session: Session) -> None:
        """Re-enter org rooms and ask boards about every joined board under the current scope."""
        self.rechecks += 1
        await self.enter_org_rooms(session)
        unsure = False
        for board_id in list(session.boards):
            try:
                await self.ws.boards.access(session.scope_token, board_id)
            except ApiError as exc:
                if exc.code not in ("forbidden", "not_found", "unauthorized"):
                    unsure = True  # boards unreachable: ask again soon
                    continue
                await self.ws.revoke_board(session, board_id)
        session.scope_checked = not unsure
        if unsure:
            self.schedule(session, RETRY_SECONDS)
