"""Floods from one address are refused with their codes, and a neighbour does not feel them.

Realtime, boards and auth run as real processes; the attacker (``tests/security/flooder.py``) is
a process of its own behind the same trusted proxy as the neighbour, with its own forwarded
address. It floods ``list_boards`` from every socket it gets (each is refused ``rate_limited``
past its allowance and then disconnected) and opens handshakes as fast as realtime answers (refused
``rate_limited`` past the per-address limit). The neighbour's broadcast latency — a card update
sent by one socket until another socket of the board receives it — is sampled before, during and
after the flood (pausing the attacker instead would leave its sockets unread, a different test);
the flood's median must stay within 2x of the quiet one's (before and after together).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
import uuid

import aiohttp
import pytest

from tests.conftest import ROOT
from tests.realtime.conftest import NS, Stack

pytestmark = pytest.mark.slow

ROUNDS, SAMPLES = 3, 15
#: How long the flood lasts at least (long enough for sockets to pass their allowance).
FLOOD_SECONDS = 4
PACE = 0.05
HANDSHAKES_PER_MINUTE, MESSAGES_PER_MINUTE = 20, 600


async def test_floods_are_refused_with_their_codes_and_a_neighbour_keeps_its_latency(service_process, tokens):
    auth = service_process("auth")
    boards = service_process("boards", AUTH_SERVICE_URL=auth.url)
    realtime = service_process(
        "realtime",
        AUTH_SERVICE_URL=auth.url,
        BOARDS_SERVICE_URL=boards.url,
        TRUSTED_PROXIES="127.0.0.1",
        WEBSOCKET_RATE_LIMIT_CONNECTIONS=str(HANDSHAKES_PER_MINUTE),
        WEBSOCKET_RATE_LIMIT_MESSAGES=str(MESSAGES_PER_MINUTE),
    )
    stack = Stack(auth.url, boards.url, realtime.url, tokens, None, aiohttp.ClientSession())
    try:
        alice, mallory = stack.user("alice"), stack.user("mallory")
        org = await stack.organization(alice=(alice, "member"))
        evil_org = await stack.organization(mallory=(mallory, "member"))
        board = await stack.board(org, alice, cards=1)
        card = board["cards"][0]["id"]
        neighbour = {"X-Forwarded-For": "203.0.113.10"}
        watcher = await stack.client(alice, headers=neighbour)
        mover = await stack.client(alice, headers=neighbour)
        for client in (watcher, mover):
            joined = await client.call("join_board", {"board_id": board["board"]["id"], "organization_id": org})
            assert joined["ok"], joined
        arrived: dict[str, asyncio.Future] = {}

        async def on_update(data):
            title = data.get("data", {}).get("changes", {}).get("title") or data.get("data", {}).get("task", {}).get(
                "title"
            )
            if title in arrived and not arrived[title].done():
                arrived[title].set_result(time.perf_counter())

        watcher.sio.on("task_updated", on_update, namespace=NS)

        async def latency() -> float:
            title = uuid.uuid4().hex
            arrived[title] = asyncio.get_running_loop().create_future()
            sent = time.perf_counter()
            await mover.emit(
                "task_updated",
                {"board_id": board["board"]["id"], "task_id": card, "changes": {"title": title}},
            )
            return await asyncio.wait_for(arrived[title], 10) - sent

        async def window() -> list[float]:
            samples = []
            for _ in range(SAMPLES):
                samples.append(await latency())
                await asyncio.sleep(PACE)  # the neighbour stays well inside its own allowance
            return samples

        await window()  # warm-up: connections, caches
        quiet = [sample for _ in range(ROUNDS) for sample in await window()]
        flood_started = time.monotonic()
        flooder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.security.flooder",
            json.dumps(
                {
                    "url": realtime.url,
                    "token": mallory.token,
                    "forwarded_for": "198.51.100.66",
                    "organization_id": evil_org,
                    "seconds": 50,
                }
            ),
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=asyncio.subprocess.PIPE,
        )
        flooded: list[float] = []
        try:
            await asyncio.sleep(0.5)  # the flood is under way
            until = time.monotonic() + FLOOD_SECONDS
            while len(flooded) < ROUNDS * SAMPLES or time.monotonic() < until:
                flooded += await window()
        finally:
            flooder.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(flooder.communicate(), 30)
        quiet += [sample for _ in range(ROUNDS) for sample in await window()]
        report = json.loads(out.decode().strip().splitlines()[-1])
        # a token bucket: the burst, plus what refilled while the flood ran
        allowance = HANDSHAKES_PER_MINUTE + int((time.monotonic() - flood_started) * HANDSHAKES_PER_MINUTE / 60) + 1

        assert report.get("refused:rate_limited", 0) > 0, f"the handshake flood was never refused: {report}"
        assert report.get("error:rate_limited", 0) > 0, f"the message flood was never refused: {report}"
        assert report.get("accepted", 0) <= allowance, report
        assert report.get("disconnected", 0) >= 1, f"no flooding socket was disconnected: {report}"
        assert set(report) <= {
            "accepted",
            "sent",
            "ok",
            "error:rate_limited",
            "disconnected",
            "refused:rate_limited",
        }, f"answers other than the limits' codes: {report}"
        assert watcher.sio.connected and mover.sio.connected, "the neighbour was disconnected"
        quiet_ms, flooded_ms = statistics.median(quiet) * 1000, statistics.median(flooded) * 1000
        print(f"\nbroadcast latency: quiet median {quiet_ms:.1f} ms, under flood {flooded_ms:.1f} ms; flood {report}")
        assert flooded_ms <= 2 * quiet_ms, f"under flood {flooded_ms:.1f} ms vs quiet {quiet_ms:.1f} ms ({report})"
    finally:
        for sio in stack.clients:
            if sio.connected:
                await sio.disconnect()
        await stack.session.close()
