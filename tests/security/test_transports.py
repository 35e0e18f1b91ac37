"""Unauthenticated Engine.IO transports and the transport-level findings of issue 14, against
``liveboard serve realtime`` on the fast and the stock path, over websocket and polling.

What each test proves (docs/security.md, part 2):

* a transport that never gets a namespace CONNECT admitted is closed at ``WEBSOCKET_AUTH_TIMEOUT``
  (it was held open indefinitely), and one that answers every ping is no exception;
* such transports count: ``/api/v1/websocket/stats`` reports them (``unauthenticated_transports``),
  one address may hold at most ``WEBSOCKET_RATE_LIMIT_CONNECTIONS`` of them (the next handshake is
  refused), and each spends the address's handshake bucket, so a real client behind them gets
  ``rate_limited`` (only namespace CONNECTs were counted);
* before authenticating a transport may send only small messages: a 64 KiB frame or polling body
  closes it at once, without decoding (a 4 MiB one was parsed), while an authenticated socket
  still sends messages that size;
* a 1 or 4 MiB token at the handshake gets ``connect_error`` ``unauthorized`` / ``token_too_large``
  on both transports (the transport was closed with no code);
* a refused CONNECT on polling ends with at most one CLOSE packet, the last (there were two), an aborted
  long-poll does not leave the next one hanging (30 s), and a polling client that goes silent is
  closed at ``ping_interval + ping_timeout`` (python-engineio's sweep took up to ~20 s longer);
* the CONNECT answer is ``40/workspace,{"sid"}`` and the main namespace is not served.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import aiohttp
import pytest
import socketio

from tests.conftest import ServiceProcess, Tokens
from tests.protocol.processes import (
    NS,
    XFF,
    RawPolling,
    RawWebSocket,
    eventually,
    log_problems,
    start_auth,
    start_realtime,
    stats,
)
from tests.realtime.conftest import Client

pytestmark = pytest.mark.slow

AUTH_TIMEOUT = 1.5
PER_ADDRESS = 5
PING_INTERVAL, PING_TIMEOUT = 1.0, 1.0


@pytest.fixture(scope="module")
def auth_process(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = start_auth(base_env, tmp_path_factory.mktemp("transports"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module", params=["fast", "stock"])
def realtime(
    request: pytest.FixtureRequest,
    base_env: dict[str, str],
    auth_process: ServiceProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceProcess]:
    proc = start_realtime(
        base_env,
        auth_process,
        request.param,
        tmp_path_factory.mktemp("transports"),
        WEBSOCKET_AUTH_TIMEOUT=str(AUTH_TIMEOUT),
        WEBSOCKET_RATE_LIMIT_CONNECTIONS=str(PER_ADDRESS),
        WEBSOCKET_PING_INTERVAL=str(PING_INTERVAL),
        WEBSOCKET_PING_TIMEOUT=str(PING_TIMEOUT),
        TRUSTED_PROXIES="127.0.0.1",  # each test is its own client address (X-Forwarded-For)
    )
    yield proc
    assert not log_problems(proc), "\n".join(log_problems(proc)[:20])
    proc.stop()


_next_address = iter(range(1, 250))


def address() -> str:
    """A fresh client address (TEST-NET-3) for one test: its own handshake bucket."""
    return f"203.0.113.{next(_next_address)}"


async def socketio_client(
    url: str, token: str | None, ip: str, transport: str = "websocket"
) -> tuple[Client, BaseException | None]:
    client = Client(socketio.AsyncClient(reconnection=False))
    error: BaseException | None = None
    try:
        await client.connect(url, token, transports=[transport], headers={XFF: ip})
    except socketio.exceptions.ConnectionError as exc:
        error = exc
    return client, error


async def close_client(client: Client) -> None:
    if client.sio.connected:
        await client.sio.disconnect()
    elif client.sio.eio.state == "connected":
        await client.sio.eio.disconnect(abort=True)


# ------------------------------------------------------------------------------------ deadline


async def test_a_transport_that_never_authenticates_is_closed_at_the_deadline(realtime: ServiceProcess):
    async with aiohttp.ClientSession() as http:
        ws = await RawWebSocket.open(http, realtime.url, address())
        polling = await RawPolling.open(http, realtime.url, address())
        started = time.monotonic()
        assert await ws.closed_within(AUTH_TIMEOUT + 2), "an unauthenticated websocket outlived the deadline"
        assert AUTH_TIMEOUT - 0.3 <= time.monotonic() - started
        seen: list[str] = []
        while time.monotonic() - started < AUTH_TIMEOUT + 2:  # a client that polls and answers pings
            status, body = await polling.get()
            if status != 200:
                break
            seen += body.split("\x1e")
            if "2" in body.split("\x1e"):
                await polling.post("3")
        # Gone (a GET pending at the deadline gets CLOSE first; as in Node's engine.io, a session
        # closed between two GETs is simply unknown to the next one).
        assert status == 400 and "1" not in seen[:-1], (status, seen)


async def test_an_authenticated_transport_has_no_deadline_and_leaving_the_namespace_starts_one(
    realtime: ServiceProcess, tokens: Tokens
):
    async with aiohttp.ClientSession() as http:
        ws = await RawWebSocket.open(http, realtime.url, address())
        await ws.send(f"40{NS}," + json.dumps({"token": tokens.user()}))
        answer = await ws.next()
        assert answer.startswith(f"40{NS},") and set(json.loads(answer[len(NS) + 3 :])) == {"sid"}, answer
        assert not await ws.closed_within(AUTH_TIMEOUT + 1)  # authenticated: kept (pings answered)
        await ws.send(f"41{NS},")
        assert await ws.closed_within(AUTH_TIMEOUT + 2)  # no namespace left: a new deadline


async def test_the_main_namespace_is_not_served(realtime: ServiceProcess):
    async with aiohttp.ClientSession() as http:
        ws = await RawWebSocket.open(http, realtime.url, address())
        await ws.send("40")
        assert await ws.next() == '44{"message":"Invalid namespace"}'


# ------------------------------------------------------------------------------------ counting


async def test_unauthenticated_transports_are_counted_per_address_and_in_stats(
    realtime: ServiceProcess, tokens: Tokens
):
    ip = address()
    async with aiohttp.ClientSession() as http:
        transports = [await RawWebSocket.open(http, realtime.url, ip) for _ in range(PER_ADDRESS)]

        async def counted() -> None:
            body = await stats(http, realtime.url, tokens.service_role())
            assert body["server_stats"]["unauthenticated_transports"] >= PER_ADDRESS, body

        await eventually(counted)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await RawWebSocket.open(http, realtime.url, ip)  # over the address's share
        assert refused.value.status == 401
        for transport in transports:
            await transport.close()

        async def released() -> None:
            body = await stats(http, realtime.url, tokens.service_role())
            assert body["server_stats"]["unauthenticated_transports"] == 0, body

        await eventually(released)
        # Each transport spent the address's handshake bucket: a real client is now rate limited.
        client, error = await socketio_client(realtime.url, tokens.user(), ip)
        assert error is not None and client.connect_error["code"] == "rate_limited", client.connect_error
        await close_client(client)
        other, error = await socketio_client(realtime.url, tokens.user(), address())
        assert error is None and other.sio.connected
        await close_client(other)


# ------------------------------------------------------------------------------------ message cap


async def test_large_messages_before_authenticating_close_the_transport(realtime: ServiceProcess, tokens: Tokens):
    big = "4" + json.dumps(["x" * (64 << 10)])
    async with aiohttp.ClientSession() as http:
        ws = await RawWebSocket.open(http, realtime.url, address())
        await ws.send(big)
        assert await ws.closed_within(0.8), "a 64 KiB frame before authenticating did not close the transport"
        polling = await RawPolling.open(http, realtime.url, address())
        status, _ = await polling.post(big)
        assert status == 400
        assert (await polling.get())[0] == 400
        # Once authenticated, a socket may send that much (the handlers answer it).
        client, error = await socketio_client(realtime.url, tokens.user(), address())
        assert error is None
        answer = await client.call("list_boards", {"organization_id": "o", "note": "x" * (60 << 10)})
        assert answer["ok"] is False and client.sio.connected
        await close_client(client)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_a_huge_token_gets_a_connect_error_with_a_code(realtime: ServiceProcess, transport: str):
    for size in (1 << 20, 4 << 20):
        client, error = await socketio_client(realtime.url, "x" * size, address(), transport)
        assert error is not None, "connected with a huge token"
        assert client.connect_error == {
            "code": "unauthorized",
            "message": "tokens over 8192 bytes are refused",
            "reason": "token_too_large",
        }, (size, client.connect_error)
        await close_client(client)


# ------------------------------------------------------------------------------------ polling


async def test_a_refused_connect_on_polling_ends_with_one_close_packet(realtime: ServiceProcess):
    async with aiohttp.ClientSession() as http:
        polling = await RawPolling.open(http, realtime.url, address())
        assert await polling.post(f"40{NS}," + json.dumps({"token": "not-a-token"})) == (200, "OK")
        packets: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < AUTH_TIMEOUT + 4:
            status, body = await polling.get()
            if status != 200:
                break
            packets += body.split("\x1e")
        assert status == 400, packets
        assert packets[0].startswith(f"44{NS},") and json.loads(packets[0][len(NS) + 3 :])["data"]["code"] == (
            "unauthorized"
        ), packets
        closes = [i for i, packet in enumerate(packets) if packet == "1"]
        assert closes in ([], [len(packets) - 1]), packets  # never two CLOSE packets


async def test_an_aborted_long_poll_does_not_leave_the_next_one_hanging(realtime: ServiceProcess, tokens: Tokens):
    async with aiohttp.ClientSession() as http:
        polling = await RawPolling.open(http, realtime.url, address())
        assert await polling.post(f"40{NS}," + json.dumps({"token": tokens.user()})) == (200, "OK")
        status, body = await polling.get()
        assert status == 200 and body.startswith(f"40{NS},"), body
        async with aiohttp.ClientSession() as other:  # a GET whose connection the client drops
            aborted = asyncio.ensure_future(RawPolling(other, realtime.url, polling.sid, None).get(timeout=30))
            await asyncio.sleep(0.3)
        aborted.cancel()
        started = time.monotonic()
        status, _ = await polling.get(timeout=10)
        assert time.monotonic() - started < 3, "the next long-poll hung"
        assert status in (200, 400)


async def test_a_silent_polling_session_is_closed_at_its_ping_deadline(realtime: ServiceProcess, tokens: Tokens):
    user = tokens.user()
    async with aiohttp.ClientSession() as http:
        polling = await RawPolling.open(http, realtime.url, address())
        assert await polling.post(f"40{NS}," + json.dumps({"token": user})) == (200, "OK")
        status, body = await polling.get()
        assert status == 200 and body.startswith(f"40{NS},"), body
        started = time.monotonic()  # from now on the client neither polls nor answers pings
        await asyncio.sleep(PING_INTERVAL + PING_TIMEOUT + 0.5)
        status, body = await polling.get()
        # The session may still hand over what was queued (the ping, then CLOSE) once, then it is gone.
        while status == 200 and time.monotonic() - started < PING_INTERVAL + PING_TIMEOUT + 3:
            assert body.split("\x1e")[-1] in ("1", "2"), body
            if body.split("\x1e")[-1] == "1":
                break
            status, body = await polling.get()
        assert (status == 200 and body.endswith("1")) or status == 400, (status, body)
