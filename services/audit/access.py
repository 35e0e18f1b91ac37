"""Who is asking audit: the shared verifier (``libs.common.access``), and who may read the log.

Accepted: auth's scope tokens, Supabase user tokens (exchanged through auth), and a Supabase
``service_role`` key — the administrator on this whole API (CONTRACT §3).
"""

from __future__ import annotations

from aiohttp import web

from libs.common.access import Access
from libs.common.audit_feed import CALLER_ID
from libs.common.identity import bearer_token
from libs.common.scopes import Scope

ACCESS = web.AppKey("audit_access", Access)


async def caller_scope(request: web.Request) -> Scope:
    """The verified caller of ``request``, or a 401 ``ApiError``."""
    scope = await request.app[ACCESS].scope(bearer_token(request.headers), service_role=True)
    if scope.sub:
        request[CALLER_ID] = scope.sub
    return scope


def require_audit_reader(scope: Scope, organization_id: str) -> None:
    """Admins and owners of the whole organization, or service_role; everyone else gets 403."""
    scope.require_admin(organization_id, "reading the audit log")
