"""What the auth handlers share, under one typed app key (built by ``create_app``)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from libs.common.identity import Identity, SupabaseVerifier
from libs.common.scopes import ScopeSigner

from .config import Settings


@dataclass
class AuthState:
    settings: Settings
    verifier: SupabaseVerifier
    signer: ScopeSigner


AUTH = web.AppKey("auth_state", AuthState)
#: The verified caller of the current request (for refusal reports that happen after verification).
IDENTITY = web.RequestKey("identity", Identity)
