"""Auth as ``liveboard serve auth`` in its own process: scope tokens verified by another process
from the published JWKS (retired keys included), 16 KiB tokens answered with JSON, and a
missing signing key refusing start-up with one line."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap

import aiohttp
import pytest

from libs.common.scopes import OrgMembership, Scope, ScopeSigner
from tests.conftest import ROOT, SCOPE_SIGNING_KEY

from .helpers import bearer, hs256, user_claims

pytestmark = pytest.mark.slow

#: Runs in a fresh interpreter: verifies each token on stdin against auth's JWKS URL.
VERIFY = textwrap.dedent(
    """
    import asyncio, json, sys
    from libs.common.errors import ApiError
    from libs.common.scopes import ScopeVerifier

    async def main():
        verifier = ScopeVerifier(sys.argv[1])
        results = []
        for token in json.load(sys.stdin):
            try:
                results.append({"ok": (await verifier.verify(token)).to_claims()})
            except ApiError as exc:
                results.append({"error": exc.code})
        print(json.dumps({"results": results, "fetches": verifier.fetches}))

    asyncio.run(main())
    """
)


async def verify_elsewhere(jwks_url: str, tokens: list[str]) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        VERIFY,
        jwks_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(tokens).encode()), 30)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def test_scope_token_round_trip_through_published_jwks(service_process, tokens):
    current = ScopeSigner.generate()
    proc = service_process(
        "auth", AUTH_SCOPE_SIGNING_KEY=current.private_pem(), AUTH_SCOPE_RETIRED_KEYS=SCOPE_SIGNING_KEY
    )
    async with aiohttp.ClientSession() as http:
        service = bearer(tokens.service_role())
        await http.post(f"{proc.url}/v1/organizations", headers=service, json={"id": "rt-org", "name": "Round trip"})
        await http.put(f"{proc.url}/v1/organizations/rt-org/members/rt-user", headers=service, json={"role": "admin"})
        async with http.post(f"{proc.url}/v1/token/exchange", headers=bearer(tokens.user("rt-user"))) as response:
            assert response.status == 200
            body = await response.json()
        async with http.get(f"{proc.url}/.well-known/jwks.json") as response:
            jwks = await response.json()
    assert [key["kid"] for key in jwks["keys"]] == [current.kid, ScopeSigner.from_pem(SCOPE_SIGNING_KEY).kid]
    assert all("d" not in key for key in jwks["keys"])  # public halves only

    retired = ScopeSigner.from_pem(SCOPE_SIGNING_KEY)  # what the previous key signed still verifies
    old = retired.sign(Scope("old-user", organizations=(OrgMembership("o", "viewer"),)), body["expires_at"])
    forged = ScopeSigner.generate().sign(Scope("rt-user"), body["expires_at"])
    head, payload, signature = body["scope_token"].split(".")
    tampered = f"{head}.{payload[:-4]}AAAA.{signature}"

    answer = await verify_elsewhere(f"{proc.url}/.well-known/jwks.json", [body["scope_token"], old, forged, tampered])
    ok, old_ok, forged_result, tampered_result = answer["results"]
    assert ok["ok"] == body["claims"]
    assert ok["ok"]["organizations"] == [{"id": "rt-org", "role": "admin", "divisions": None}]
    assert old_ok["ok"]["sub"] == "old-user"
    assert forged_result == {"error": "unauthorized"}
    assert tampered_result == {"error": "unauthorized"}


async def test_16_KiB_tokens_reach_the_application_and_get_json_401(service_process, tokens):
    proc = service_process("auth")
    async with aiohttp.ClientSession() as http:
        for size in (8 * 1024 + 1, 12 * 1024, 16 * 1024):
            token = hs256(user_claims(padding="p" * size))[:size]
            assert len(token) == size
            async with http.post(f"{proc.url}/v1/token/exchange", headers=bearer(token)) as response:
                assert response.status == 401, size
                assert response.headers["Content-Type"].startswith("application/json")
                body = await response.json()
                assert body["error"] == {
                    "code": "unauthorized",
                    "message": body["error"]["message"],
                    "reason": "token_too_large",
                }
        # Only far larger headers are cut by the HTTP layer.
        async with http.post(f"{proc.url}/v1/token/exchange", headers=bearer("x" * 64 * 1024)) as response:
            assert response.status in (400, 431)
        async with http.post(f"{proc.url}/v1/token/exchange", headers=bearer(tokens.user())) as response:
            assert response.status == 200


@pytest.mark.parametrize("key", ["", "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"])
def test_serve_auth_refuses_to_start_without_a_usable_signing_key(key, service_process):
    proc = service_process("auth", start=False, AUTH_SCOPE_SIGNING_KEY=key)
    proc.start(wait_ready=False)
    assert proc.proc.wait(30) == 2
    lines = [line for line in proc.log_path.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "AUTH_SCOPE_SIGNING_KEY" in lines[0]
    assert "not a key" not in lines[0]
