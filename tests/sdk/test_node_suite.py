"""``clients/js/test/*.test.mjs`` (Node's test runner, the built package, the official
socket.io-client) against the real stack, one pytest case per file."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.sdk.conftest import NODE, SDK, control_app, needs_sdk_build

pytestmark = [needs_sdk_build, pytest.mark.slow]

FILES = sorted(path.name for path in (SDK / "test").glob("*.test.mjs"))


@pytest.fixture
async def sdk_stack(make_stack, aiohttp_server, database_url) -> AsyncIterator[dict[str, Any]]:
    """The stack (token warning 3 s, for the refresh test) and the control server's address."""
    stack = await make_stack(token_expiry_warning=3)
    control = await aiohttp_server(control_app(stack, database_url))
    yield {
        "LIVEBOARD_REALTIME_URL": stack.realtime_url,
        "LIVEBOARD_BOARDS_URL": stack.boards_url,
        "LIVEBOARD_CONTROL_URL": str(control.make_url("")).rstrip("/"),
    }


@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", FILES)
async def test_sdk_node_tests(sdk_stack, name):
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        NODE,
        "--test",
        "--test-reporter=spec",
        f"test/{name}",
        cwd=SDK,
        env={**os.environ, **sdk_stack},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(f"node --test {name} did not finish in 120 s:\n{out.decode(errors='replace')[-6000:]}")
    text = out.decode(errors="replace")
    print(f"{name}: {time.monotonic() - started:.1f}s\n{text}")
    assert proc.returncode == 0, f"node --test {name} failed:\n{text[-8000:]}"
