"""Who is calling boards: the shared verifier (``libs.common.access``), user tokens only.

Boards decides with auth's scope tokens (verified locally) or Supabase user tokens (exchanged
through auth). A Supabase ``service_role`` key is an administrator, not a user: it is refused
here, because every board change must name the user who made it.
"""

from __future__ import annotations

from aiohttp import web

from libs.common.access import Access
from libs.common.audit_feed import CALLER_ID
from libs.common.identity import bearer_token
from libs.common.scopes import Scope

__all__ = ["ACCESS", "Access", "caller_scope"]

ACCESS = web.AppKey("boards_access", Access)


async def caller_scope(request: web.Request) -> Scope:
    """The verified scope of a REST request's ``Authorization: Bearer`` token (401 otherwise)."""
    scope = await request.app[ACCESS].scope(bearer_token(request.headers))
    if scope.sub:
        request[CALLER_ID] = scope.sub
    return scope
