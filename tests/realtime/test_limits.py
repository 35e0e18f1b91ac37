"""Every WEBSOCKET_* limit, each hit and giving its code, with other users unaffected."""

from __future__ import annotations

import asyncio

import pytest
import socketio


async def refused(stack, user, **kwargs) -> dict:
    client = await stack.client(None, connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(stack.realtime_url, user.token if user else None, **kwargs)
    return client.connect_error


async def setup_board(stack, *roles):
    users = [stack.user(f"u{index}") for index in range(len(roles))]
    org = await stack.organization(**{f"m{i}": (u, r) for i, (u, r) in enumerate(zip(users, roles, strict=True))})
    board = await stack.board(org, users[0])
    return users, org, board


async def test_max_connections_gives_server_full(make_stack):
    stack = await make_stack(max_concurrent_connections=2)
    (alice,), org, board = await setup_board(stack, "owner")
    first, second = await stack.client(alice), await stack.client(alice)
    assert (await refused(stack, alice))["code"] == "server_full"
    assert (await first.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    await second.sio.disconnect()
    await asyncio.sleep(0.2)
    await stack.client(alice)  # room again once one left


async def test_connections_per_ip_per_minute_give_rate_limited(make_stack):
    stack = await make_stack(rate_limit_connections=3)
    (alice,), _, _ = await setup_board(stack, "owner")
    for _ in range(3):
        await stack.client(alice)
    assert (await refused(stack, alice))["code"] == "rate_limited"


async def test_messages_per_minute_give_rate_limited_then_disconnect_on_abuse(make_stack):
    stack = await make_stack(rate_limit_messages=20)
    (alice, bob), org, board = await setup_board(stack, "owner", "member")
    board_id = board["board"]["id"]
    noisy, calm = await stack.client(alice), await stack.client(bob)
    answers = [await noisy.call("leave_board", {"board_id": board_id}) for _ in range(21)]
    assert all(a["ok"] for a in answers[:20])
    assert answers[20]["error"]["code"] == "rate_limited"
    assert (await calm.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]
    for _ in range(15):  # keep hammering: sustained abuse closes the connection
        if not noisy.sio.connected:
            break
        await noisy.emit("leave_board", {"board_id": board_id})
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    assert not noisy.sio.connected
    assert (await calm.call("leave_board", {"board_id": board_id}))["ok"]


async def test_rooms_per_connection_give_too_many_rooms(make_stack):
    stack = await make_stack(max_rooms_per_connection=2)
    (alice,), org, first = await setup_board(stack, "owner")
    boards = [first, await stack.board(org, alice, cards=0), await stack.board(org, alice, cards=0)]
    client = await stack.client(alice)
    answers = [await client.call("join_board", {"board_id": b["board"]["id"], "organization_id": org}) for b in boards]
    assert [a["ok"] for a in answers] == [True, True, False]
    assert answers[2]["error"]["code"] == "too_many_rooms"
    assert (await client.call("leave_board", {"board_id": boards[0]["board"]["id"]}))["ok"]
    assert (await client.call("join_board", {"board_id": boards[2]["board"]["id"], "organization_id": org}))["ok"]


async def test_connections_per_room_give_room_full(make_stack):
    stack = await make_stack(max_connections_per_room=2)
    (alice, bob, carol), org, board = await setup_board(stack, "owner", "member", "member")
    join = {"board_id": board["board"]["id"], "organization_id": org}
    a, b, c = await stack.client(alice), await stack.client(bob), await stack.client(carol)
    assert (await a.call("join_board", join))["ok"] and (await b.call("join_board", join))["ok"]
    full = await c.call("join_board", join)
    assert full["error"]["code"] == "room_full"
    other = await stack.board(org, alice, cards=0)
    assert (await c.call("join_board", {"board_id": other["board"]["id"], "organization_id": org}))["ok"]


async def test_message_size_gives_payload_too_large(make_stack):
    stack = await make_stack(max_message_bytes=1024)
    (alice,), org, board = await setup_board(stack, "owner")
    client = await stack.client(alice)
    column = board["columns"][0]["id"]
    big = await client.call(
        "task_created", {"board_id": board["board"]["id"], "column_id": column, "title": "x" * 2000}
    )
    assert big["error"]["code"] == "payload_too_large"
    small = await client.call("task_created", {"board_id": board["board"]["id"], "column_id": column, "title": "fits"})
    assert small["ok"], small


async def test_idle_connections_are_closed(make_stack):
    stack = await make_stack(connection_timeout=1, cleanup_interval=0.25)
    (alice, bob), _, _ = await setup_board(stack, "owner", "member")
    idle, busy = await stack.client(alice), await stack.client(bob)
    for _ in range(8):
        await busy.emit("user_presence", {"board_id": "nope", "status": "online"})  # any message counts
        await asyncio.sleep(0.25)
    assert not idle.sio.connected
    assert idle.received["session_expired"][0]["reason"] == "idle"
    assert busy.sio.connected


async def test_foreign_origin_is_refused_at_the_handshake(make_stack):
    stack = await make_stack(allowed_origins="https://board.example.com")
    (alice,), _, _ = await setup_board(stack, "owner")
    refusal = await refused(stack, alice, headers={"Origin": "https://evil.example.com"})
    assert refusal["code"] == "forbidden"
    good = await stack.client(None, connect=False)
    await good.connect(stack.realtime_url, alice.token, headers={"Origin": "https://board.example.com"})
    server_side = await stack.client(alice)  # no Origin header: not refused for that reason
    assert good.sio.connected and server_side.sio.connected


async def test_cleanup_forgets_stale_rate_limit_state(stack):
    server = stack.realtime_app[__import__("services.realtime.http_api", fromlist=["WS_SERVER"]).WS_SERVER]
    limiter = server.connect_limiter
    limiter.allow("203.0.113.9")
    assert len(limiter) >= 1
    for bucket in limiter._buckets.values():
        bucket.updated -= 120  # as if a long while passed without attempts
    await server.sweep()
    assert len(limiter) == 0
