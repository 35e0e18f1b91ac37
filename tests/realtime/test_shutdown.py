"""SIGTERM drains: clients are told ``server_shutdown`` and closed, and the process exits promptly
even while browser-like clients hold their websockets open."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.realtime.test_js_client import NODE_MODULES

pytestmark = pytest.mark.skipif(not (NODE_MODULES / "socket.io-client").exists(), reason="needs npm ci")
SCRIPT = Path(__file__).parent / "js" / "hold_open.cjs"


@pytest.mark.parametrize("fast_path", ["true", "false"], ids=["fast-path", "stock-path"])
async def test_sigterm_tells_clients_and_exits_within_the_drain(service_process, tokens, fast_path):
    auth = service_process("auth")
    realtime = service_process(
        "realtime", AUTH_SERVICE_URL=auth.url, REALTIME_DRAIN_SECONDS="2", REALTIME_FAST_PATH=fast_path
    )
    user = str(uuid.uuid4())
    token = tokens.user(user, "u@example.com")
    clients = [
        await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            env={
                **os.environ,
                "NODE_PATH": str(NODE_MODULES),
                "LIVEBOARD_CLIENT": json.dumps({"url": realtime.url, "token": token, "timeout_ms": 30000}),
            },
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for client in clients:
        line = json.loads(await asyncio.wait_for(client.stdout.readline(), 15))
        assert line["event"] == "connect"
    started = time.monotonic()
    realtime.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(realtime.proc.wait, 15)
    took = time.monotonic() - started
    assert code == 0
    assert took < 6, f"realtime took {took:.1f}s to exit with clients connected"
    for client in clients:
        events = [json.loads(await asyncio.wait_for(client.stdout.readline(), 10))["event"] for _ in range(2)]
        assert events == ["server_shutdown", "disconnect"], events
        client.kill()
        await client.wait()
