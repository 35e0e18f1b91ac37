"""TRUSTED_PROXIES: the client address for limits and audit comes from X-Forwarded-For/Forwarded
only through trusted hops (libs/common/forwarded.py), in every service, for sockets and REST.

The unit table pins the walk; the end-to-end tests run the real services (in-process and as
``liveboard serve`` processes) against real NATS and read what the limiter and the audit feed saw.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import nats
import pytest
import socketio
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry import trace

from libs.common.forwarded import MAX_HOPS, client_address, parse_networks, parse_node
from libs.common.settings import CommonSettings, ConfigError, load_settings
from libs.common.web import ServiceInfo, base_app
from services.realtime.http_api import WS_SERVER
from tests.conftest import Tokens
from tests.realtime.conftest import NS, Client

TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1", "fd00::/8"])
CHAIN_31 = "203.0.113.7, " + "10.1.1.1, " * 30 + "10.1.1.2"  # 32 entries: the client is still in reach
CHAIN_40 = "203.0.113.7, " + "10.1.1.1, " * 39 + "10.1.1.2"  # 41 entries: the walk stops after 32


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


XFF, FWD = "X-Forwarded-For", "Forwarded"

CASES = [
    # (what it shows, TCP peer, headers, expected client)
    ("no header: the peer", "10.0.0.5", headers(), "10.0.0.5"),
    (
        "untrusted peer: its spoofed X-Forwarded-For is ignored",
        "198.51.100.9",
        headers((XFF, "10.0.0.1")),
        "198.51.100.9",
    ),
    ("untrusted peer: its Forwarded is ignored", "198.51.100.9", headers((FWD, "for=10.0.0.1")), "198.51.100.9"),
    ("one trusted hop", "10.0.0.5", headers((XFF, "203.0.113.7")), "203.0.113.7"),
    ("loopback proxy", "127.0.0.1", headers((XFF, "203.0.113.7")), "203.0.113.7"),
    (
        "chain: rightmost untrusted, spoofed left part ignored",
        "10.0.0.5",
        headers((XFF, "6.6.6.6, 203.0.113.7, 10.1.1.1")),
        "203.0.113.7",
    ),
    ("every hop trusted: the leftmost", "10.0.0.5", headers((XFF, "10.9.9.9, 10.1.1.1")), "10.9.9.9"),
    ("port on IPv4 stripped", "10.0.0.5", headers((XFF, "203.0.113.7:5555")), "203.0.113.7"),
    ("bracketed IPv6 with port in X-Forwarded-For", "10.0.0.5", headers((XFF, "[2001:db8::1]:80")), "2001:db8::1"),
    (
        "Forwarded: quoted IPv6 with port",
        "10.0.0.5",
        headers((FWD, 'for="[2001:db8:cafe::17]:4711";proto=https')),
        "2001:db8:cafe::17",
    ),
    (
        "Forwarded: chain, case-insensitive name",
        "10.0.0.5",
        headers((FWD, "For=6.6.6.6, for=203.0.113.9;by=10.0.0.5, for=10.1.1.1")),
        "203.0.113.9",
    ),
    (
        "Forwarded: obfuscated entry not needed",
        "10.0.0.5",
        headers((FWD, "for=_hidden, for=203.0.113.9")),
        "203.0.113.9",
    ),
    (
        "Forwarded: obfuscated entry where needed stops at the last good hop",
        "10.0.0.5",
        headers((FWD, "for=203.0.113.9, for=_hidden")),
        "10.0.0.5",
    ),
    ("Forwarded: element without for=", "10.0.0.5", headers((FWD, "proto=https;host=example.com")), "10.0.0.5"),
    ("Forwarded: unbalanced quote is garbage", "10.0.0.5", headers((FWD, 'for="203.0.113.9')), "10.0.0.5"),
    ("unknown", "10.0.0.5", headers((XFF, "unknown")), "10.0.0.5"),
    ("garbage", "10.0.0.5", headers((XFF, "<script>, ;;; ")), "10.0.0.5"),
    ("garbage left of the client does not matter", "10.0.0.5", headers((XFF, "garbage, 203.0.113.7")), "203.0.113.7"),
    ("garbage after a trusted hop stops there", "10.0.0.5", headers((XFF, "203.0.113.7, junk, 10.1.1.1")), "10.1.1.1"),
    ("empty entry stops the walk", "10.0.0.5", headers((XFF, "203.0.113.7,,")), "10.0.0.5"),
    ("host name is not an address", "10.0.0.5", headers((XFF, "evil.example.com")), "10.0.0.5"),
    ("broken bracket", "10.0.0.5", headers((XFF, "[2001:db8::1")), "10.0.0.5"),
    ("text after the bracket", "10.0.0.5", headers((XFF, "[2001:db8::1]x")), "10.0.0.5"),
    (
        "several X-Forwarded-For lines are one list",
        "10.0.0.5",
        headers((XFF, "6.6.6.6, 203.0.113.7"), (XFF, "10.1.1.1")),
        "203.0.113.7",
    ),
    (
        "several Forwarded lines are one list",
        "10.0.0.5",
        headers((FWD, "for=203.0.113.9"), (FWD, "for=10.1.1.1")),
        "203.0.113.9",
    ),
    # ingress-nginx sets X-Forwarded-For and passes a client's Forwarded through untouched.
    (
        "X-Forwarded-For wins over a client-sent Forwarded",
        "10.0.0.5",
        headers((FWD, "for=6.6.6.6"), (XFF, "203.0.113.7")),
        "203.0.113.7",
    ),
    ("IPv6 peer, IPv6 client", "fd00::5", headers((XFF, "2001:db8::42")), "2001:db8::42"),
    ("IPv6 peer, IPv4 client", "fd00::5", headers((XFF, "203.0.113.7")), "203.0.113.7"),
    ("untrusted IPv6 peer", "2001:db8::66", headers((XFF, "203.0.113.7")), "2001:db8::66"),
    ("IPv4-mapped peer counts as IPv4", "::ffff:10.0.0.5", headers((XFF, "203.0.113.7")), "203.0.113.7"),
    ("IPv4-mapped client is reported as IPv4", "10.0.0.5", headers((XFF, "::ffff:203.0.113.7")), "203.0.113.7"),
    ("no peer (unix socket)", None, headers((XFF, "203.0.113.7")), None),
    (f"{MAX_HOPS} entries are examined", "10.0.0.5", headers((XFF, CHAIN_31)), "203.0.113.7"),
    ("past the cap: the walk stops at the last trusted hop examined", "10.0.0.5", headers((XFF, CHAIN_40)), "10.1.1.1"),
    (
        "past the cap across header lines",
        "10.0.0.5",
        headers((XFF, "203.0.113.7"), *[(XFF, "10.1.1.1")] * 40),
        "10.1.1.1",
    ),
]


@pytest.mark.parametrize(("peer", "given", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_the_walk(peer, given, expected):
    assert client_address(peer, given, TRUSTED) == expected


def test_nobody_is_trusted_by_default():
    assert client_address("127.0.0.1", headers((XFF, "203.0.113.7")), ()) == "127.0.0.1"


def test_a_huge_header_costs_nothing():
    huge = "203.0.113.7, " + "10.1.1.1, " * 200_000 + "10.1.1.2"
    started = time.perf_counter()
    for _ in range(10):
        assert client_address("10.0.0.5", headers((XFF, huge)), TRUSTED) == "10.1.1.1"
    assert (time.perf_counter() - started) / 10 < 0.05


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (' "203.0.113.7:80" ', "203.0.113.7"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("unknown", None),
        ("_gazonk", None),
        ("", None),
        ('"', None),
    ],
)
def test_parse_node(text, expected):
    node = parse_node(text)
    assert (str(node) if node else None) == expected


async def test_the_middleware_sets_request_remote_and_never_fails(aiohttp_client):
    """Through ``base_app`` (what every service is built on): ``request.remote`` is the client."""
    app = base_app(ServiceInfo("probe"), trace.get_tracer("test"), trusted_proxies=parse_networks(["127.0.0.1"]))

    async def remote(request: web.Request) -> web.Response:
        return web.json_response({"remote": request.remote})

    app.router.add_get("/remote", remote)
    client = await aiohttp_client(app)
    for sent, seen in [
        ({}, "127.0.0.1"),
        ({XFF: "6.6.6.6, 203.0.113.7"}, "203.0.113.7"),
        ({FWD: 'for="[2001:db8::1]:4711"'}, "2001:db8::1"),
        ({XFF: "unknown"}, "127.0.0.1"),
        ({XFF: "garbage ,,, [::"}, "127.0.0.1"),
        ({XFF: ", ".join(["10.0.0.1"] * 1500)}, "10.0.0.1"),
    ]:
        response = await client.get("/remote", headers=sent)
        assert response.status == 200, await response.text()
        assert (await response.json())["remote"] == seen, sent


async def test_without_trusted_proxies_no_middleware_reads_headers(aiohttp_client):
    app = base_app(ServiceInfo("probe"), trace.get_tracer("test"))

    async def remote(request: web.Request) -> web.Response:
        return web.json_response({"remote": request.remote})

    app.router.add_get("/remote", remote)
    client = await aiohttp_client(app)
    response = await client.get("/remote", headers={XFF: "203.0.113.7", FWD: "for=203.0.113.8"})
    assert (await response.json())["remote"] == "127.0.0.1"


# ------------------------------------------------------------------------------------- settings


@pytest.fixture
def no_proxies_env(monkeypatch):
    monkeypatch.delenv("TRUSTED_PROXIES", raising=False)


@pytest.mark.parametrize(
    ("value", "networks"),
    [
        ("10.0.0.0/8,192.168.1.5", ["10.0.0.0/8", "192.168.1.5/32"]),
        (" 10.0.0.0/8 , fd00::/8 ", ["10.0.0.0/8", "fd00::/8"]),
        ('["10.0.0.0/8", "2001:db8::1"]', ["10.0.0.0/8", "2001:db8::1/128"]),
        ("10.1.2.3/8", ["10.0.0.0/8"]),  # host bits allowed (strict=False)
        ("", []),
    ],
)
def test_trusted_proxies_from_the_environment(monkeypatch, value, networks):
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    settings = load_settings(CommonSettings)
    assert [str(n) for n in settings.trusted_networks] == networks


def test_trusted_proxies_default_is_nobody(no_proxies_env):
    settings = load_settings(CommonSettings)
    assert settings.trusted_proxies == () and settings.trusted_networks == ()


@pytest.mark.parametrize(
    "value", ["10.0.0.0/8,bogus", "10.0.0.0/33", "300.1.1.1", '["10.0.0.0/8", 5]', '["10.0.0.0/8"']
)
def test_a_bad_trusted_proxy_is_one_line_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("TRUSTED_PROXIES", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(CommonSettings)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith(f"configuration error: TRUSTED_PROXIES={value!r} must "), line
    assert caught.value.code == 2


# ---------------------------------------------------------------------------------- end to end


def documentation_v4() -> str:
    return f"203.0.113.{random.randint(1, 254)}"


def documentation_v6() -> str:
    """A random 2001:db8::/32 address in canonical form (what the server reports)."""
    return str(ipaddress.ip_address(f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"))


@asynccontextmanager
async def events(nats_url: str, *subjects: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Every envelope published on ``subjects`` (core NATS sees what JetStream stores) while open."""
    nc = await nats.connect(nats_url)
    seen: list[dict[str, Any]] = []

    async def collect(msg: Any) -> None:
        seen.append({"subject": msg.subject, **json.loads(msg.data)})

    for subject in subjects:
        await nc.subscribe(subject, cb=collect)
    await nc.flush()
    try:
        yield seen
    finally:
        await nc.close()


async def eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def refused(stack, token: str | None, forwarded_for: str) -> dict:
    client = await stack.client(None, connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(stack.realtime_url, token, headers={XFF: forwarded_for})
    return client.connect_error


def session_ips(stack) -> list[str]:
    return sorted(session.ip for session in stack.realtime_app[WS_SERVER].manager.sessions.values())


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_handshake_bucket(make_stack, nats_url):
    stack = await make_stack({"trusted_proxies": ("127.0.0.1",)}, rate_limit_connections=3)
    alice = stack.user("alice")
    a, b = documentation_v4(), documentation_v6()
    async with events(nats_url, "connections.opened", "security.realtime.>") as seen:
        for _ in range(3):
            await stack.client(alice, headers={XFF: f"6.6.6.6, {a}"})  # the spoofed left part is ignored
        assert (await refused(stack, alice.token, a))["code"] == "rate_limited"
        # another client behind the same proxy is not affected; over long-polling too
        await stack.client(alice, headers={XFF: b}, transports=["polling"])
        await stack.client(alice, headers={XFF: b})
        assert session_ips(stack) == sorted([a, a, a, b, b])

        def published() -> None:
            opened = [e["data"]["ip"] for e in seen if e["subject"] == "connections.opened"]
            assert sorted(opened) == sorted([a, a, a, b, b])
            limited = [e["data"] for e in seen if e["subject"] == "security.realtime.rate_limited"]
            assert [d["ip"] for d in limited] == [a]

        await eventually(published)


async def test_without_trusted_proxies_a_spoofed_forwarded_for_is_ignored(make_stack, nats_url):
    stack = await make_stack(rate_limit_connections=3)  # TRUSTED_PROXIES unset: trust nobody
    alice = stack.user("alice")
    async with events(nats_url, "connections.opened") as seen:
        for _ in range(3):
            await stack.client(alice, headers={XFF: documentation_v4()})
        # a fresh "address" each time does not buy a fresh bucket: they all are 127.0.0.1
        assert (await refused(stack, alice.token, documentation_v6()))["code"] == "rate_limited"
        assert session_ips(stack) == ["127.0.0.1"] * 3
        await eventually(lambda: _assert_ips(seen, "connections.opened", ["127.0.0.1"] * 3))


def _assert_ips(seen: list[dict[str, Any]], subject: str, ips: list[str]) -> None:
    assert [e["data"]["ip"] for e in seen if e["subject"] == subject] == ips


async def test_a_handshake_refusal_carries_the_forwarded_address_in_realtime_and_auth(make_stack, nats_url):
    """Realtime's own refusal event, and auth's (the token exchange over NATS) name the client."""
    stack = await make_stack({"trusted_proxies": ("127.0.0.1",)})
    client_ip = documentation_v6()
    forged = Tokens(secret="wrong-secret-" + "z" * 40).user()
    async with events(nats_url, "security.realtime.unauthorized", "security.auth.bad_signature") as seen:
        assert (await refused(stack, forged, client_ip))["code"] == "unauthorized"

        def published() -> None:
            mine = [e for e in seen if e["data"].get("ip") == client_ip]
            assert {e["subject"] for e in mine} == {"security.realtime.unauthorized", "security.auth.bad_signature"}
            auth_event = next(e for e in mine if e["subject"] == "security.auth.bad_signature")
            assert auth_event["data"]["path"] == f"socket.io:{NS} connect"

        await eventually(published)


@pytest.mark.slow
async def test_auth_as_deployed_reports_refusals_with_the_forwarded_client(service_process, nats_url):
    """``liveboard serve auth`` with ``TRUSTED_PROXIES=127.0.0.1/32,10.0.0.0/8`` (the comma form, as
    in the ConfigMap): auth's refusal report (``security.auth.<reason>``) names the forwarded client."""
    proc = service_process("auth", TRUSTED_PROXIES="127.0.0.1/32,10.0.0.0/8")
    forged = Tokens(secret="wrong-secret-" + "z" * 40).user()
    client_ip = documentation_v4()
    cases = [  # (correlation id, extra headers, the address the event must carry)
        (f"tp-forwarded-{uuid.uuid4().hex[:8]}", {XFF: f"6.6.6.6, {client_ip}, 10.2.3.4"}, client_ip),
        (f"tp-direct-{uuid.uuid4().hex[:8]}", {}, "127.0.0.1"),
        (f"tp-garbage-{uuid.uuid4().hex[:8]}", {XFF: "unknown, ;;"}, "127.0.0.1"),
    ]
    async with events(nats_url, "security.auth.bad_signature") as seen, aiohttp.ClientSession() as http:
        for cid, extra, _ in cases:
            sent = {"Authorization": f"Bearer {forged}", "X-Correlation-Id": cid, **extra}
            async with http.post(f"{proc.url}/v1/token/exchange", headers=sent) as response:
                assert response.status == 401, await response.text()

        def published() -> None:
            by_cid = {e["correlation_id"]: e["data"] for e in seen}
            assert {cid: by_cid.get(cid, {}).get("ip") for cid, _, _ in cases} == {cid: ip for cid, _, ip in cases}

        await eventually(published, timeout=10)


@pytest.mark.slow
async def test_realtime_as_deployed_limits_handshakes_per_forwarded_client(service_process):
    """``liveboard serve realtime`` (uvloop, the fast path) with the comma-form TRUSTED_PROXIES:
    refused anonymous handshakes still spend the per-IP bucket — per forwarded client."""
    proc = service_process("realtime", TRUSTED_PROXIES="10.0.0.0/8,127.0.0.1", WEBSOCKET_RATE_LIMIT_CONNECTIONS="2")
    a, b = documentation_v4(), documentation_v6()

    async def handshake(ip: str) -> str:
        client = Client(socketio.AsyncClient(reconnection=False))
        try:
            await client.connect(proc.url, None, headers={XFF: ip})
        except socketio.exceptions.ConnectionError:
            pass
        finally:
            await client.sio.eio.disconnect(abort=True)
        assert client.connect_error is not None
        return client.connect_error["code"]

    assert [await handshake(a) for _ in range(3)] == ["unauthorized", "unauthorized", "rate_limited"]
    assert await handshake(b) == "unauthorized"  # not rate_limited: another client
