"""The official JavaScript ``socket.io-client`` (npm, under Node) running the seed's snippet."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "seed_client.cjs"
NODE_MODULES = ROOT / "services" / "realtime" / "web" / "node_modules"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_MODULES / "socket.io-client").exists(),
    reason="needs node and `npm ci` in services/realtime/web (make test does both)",
)


async def run_node(config: dict) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        env={**os.environ, "LIVEBOARD_CLIENT": json.dumps(config), "NODE_PATH": str(NODE_MODULES)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("transports", [None, ["websocket"]], ids=["default-transports", "websocket-only"])
async def test_seed_snippet_moves_a_card_and_every_member_sees_it(stack, transports):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    board = await stack.board(org, alice)
    board_id = board["board"]["id"]
    b = await stack.client(bob)
    assert (await b.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]
    card = board["cards"][1]
    config = {
        "url": stack.realtime_url,
        "token": alice.token,
        "transports": transports,
        "timeout_ms": 2500,
        "board": {"board_id": board_id, "organization_id": org, "division_id": "div"},
        "move": {
            "task_id": card["id"],
            "from_column_id": card["column_id"],
            "to_column_id": board["columns"][2]["id"],
            "position": 0,
        },
    }
    lines = await run_node(config)
    events = [line["event"] for line in lines]
    assert "connect" in events and "connection_established" in events, lines
    assert next(line for line in lines if line["event"] == "join_ack")["data"]["ok"] is True
    moved = [line["data"] for line in lines if line["event"] == "task_moved"]
    assert len(moved) == 1, lines  # the mover gets the committed broadcast too
    assert moved[0]["data"]["task_id"] == card["id"]
    assert moved[0]["data"]["moved_by"]["id"] == alice.id
    if transports is None:  # the default: starts with polling and upgrades
        assert next(line for line in lines if line["event"] == "done")["data"]["transport"] == "websocket"
    (seen,) = await b.wait_for("task_moved")
    assert seen["seq"] == moved[0]["seq"] and seen["event_id"] == moved[0]["event_id"]


async def test_js_client_sees_the_refusal_code(stack):
    lines = await run_node({"url": stack.realtime_url, "token": "not-a-token", "timeout_ms": 3000})
    (refusal,) = [line["data"] for line in lines if line["event"] == "connect_error"]
    assert refusal["data"]["code"] == "unauthorized"
    assert refusal["message"] == refusal["data"]["message"]
