"""Which tokens boards accepts, and how each kind becomes a ``Scope``."""

from __future__ import annotations

import time

import pytest

from libs.common.errors import ApiError
from libs.common.identity import ScopeClient
from libs.common.scopes import Scope, ScopeVerifier
from services.boards.access import ACCESS, Access


class RecordingExchanger:
    """Stands in for auth's exchange (the auth service is tested on its own)."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.calls: list[str] = []

    async def scope_for(self, supabase_token: str) -> tuple[str, Scope]:
        self.calls.append(supabase_token)
        return "exchanged-scope-token", self.scope


async def test_scope_tokens_are_verified_locally_and_supabase_tokens_exchanged(signer, jwks_url, tokens):
    exchanger = RecordingExchanger(Scope(sub="u-from-auth", email="a@example.com"))
    access = Access(ScopeVerifier(jwks_url), exchanger)

    scope = await access.scope(signer.sign(Scope(sub="u-1", email="one@example.com"), int(time.time()) + 60))
    assert scope.sub == "u-1" and exchanger.calls == []

    supabase = tokens.user(sub="u-from-auth")
    assert (await access.scope(supabase)).sub == "u-from-auth"
    assert exchanger.calls == [supabase]

    with pytest.raises(ApiError) as refused:
        await access.scope(tokens.service_role())
    assert refused.value.code == "unauthorized" and exchanger.calls == [supabase]


async def test_without_an_exchanger_only_scope_tokens_work(jwks_url, tokens):
    with pytest.raises(ApiError) as refused:
        await Access(ScopeVerifier(jwks_url)).scope(tokens.user())
    assert refused.value.code == "unauthorized"


async def test_the_app_exchanges_supabase_tokens_through_auth(boards):
    """Wiring: REST callers with a Supabase token are exchanged by libs.common's ScopeClient."""
    assert isinstance(boards.app[ACCESS].exchanger, ScopeClient)
