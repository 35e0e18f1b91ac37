"""Long-lived sessions (token expiry, refresh, membership changes), the audit feed, and two
realtime replicas cooperating through NATS."""

from __future__ import annotations

import asyncio
import uuid

import nats
import orjson

from libs.common.subjects import SECURITY_STREAM
from tests.realtime.conftest import Client, Stack


async def test_token_expiring_then_refresh_keeps_the_session(make_stack):
    stack = await make_stack(token_expiry_warning=3600)  # warn right away
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    short = stack.tokens.user(alice.id, alice.email, ttl=5)
    client = await stack.client(None, connect=False)
    await client.connect(stack.realtime_url, short)
    (warning,) = await client.wait_for("token_expiring")
    assert warning["expires_at"] > 0
    fresh = stack.tokens.user(alice.id, alice.email, ttl=3600)
    answer = await client.call("refresh_token", {"token": fresh})
    assert answer["ok"] and answer["data"]["expires_at"] > warning["expires_at"]
    someone_else = stack.tokens.user(str(uuid.uuid4()), "x@example.com")
    refused = await client.call("refresh_token", {"token": someone_else})
    assert refused["error"]["code"] == "forbidden"
    await asyncio.sleep(6)  # past the first token's expiry: still connected thanks to the refresh
    assert client.sio.connected
    board = await stack.board(org, alice, cards=0)
    assert (await client.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]


async def test_session_expires_with_the_token(stack):
    alice = stack.user("alice")
    await stack.organization(a=(alice, "owner"))
    client = await stack.client(None, connect=False)
    await client.connect(stack.realtime_url, stack.tokens.user(alice.id, alice.email, ttl=2))
    (expired,) = await client.wait_for("session_expired", timeout=6)
    assert expired["reason"] == "token_expired"
    await asyncio.sleep(0.3)
    assert not client.sio.connected


async def test_removed_member_is_evicted_from_the_board_within_a_second(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    board = await stack.board(org, alice)
    board_id = board["board"]["id"]
    a, b = await stack.client(alice), await stack.client(bob)
    for client in (a, b):
        assert (await client.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]
    status, body = await stack.call(
        "DELETE", f"{stack.auth_url}/v1/organizations/{org}/members/{bob.id}", stack.tokens.service_role()
    )
    assert status in (200, 204), body
    (revoked,) = await b.wait_for("board_access_revoked", timeout=1.5)
    assert revoked == {"board_id": board_id}
    column = board["columns"][0]["id"]
    assert (await a.call("task_created", {"board_id": board_id, "column_id": column, "title": "after"}))["ok"]
    await a.wait_for("task_created")
    await asyncio.sleep(0.3)
    assert "task_created" not in b.received  # no longer in the room
    again = await b.call("join_board", {"board_id": board_id, "organization_id": org})
    assert again["error"]["code"] == "not_found"  # no longer theirs to see


async def test_connections_joins_and_refusals_are_published_for_audit(stack, nats_url):
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice, cards=0)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        before = (await js.stream_info(SECURITY_STREAM)).state.last_seq
        client = await stack.client(alice)
        await client.call("join_board", {"board_id": board["board"]["id"], "organization_id": org})
        await client.call("leave_board", {"board_id": board["board"]["id"]})
        await client.sio.disconnect()
        refused = await stack.client(None, connect=False)
        try:
            await refused.connect(stack.realtime_url, "not-a-token")
        except Exception:
            pass
        await asyncio.sleep(1.0)
        sub = await js.pull_subscribe(
            "connections.>",
            durable=None,
            stream=SECURITY_STREAM,
            config=nats.js.api.ConsumerConfig(
                deliver_policy=nats.js.api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=before + 1
            ),
        )
        seen = []
        try:
            while True:
                for msg in await sub.fetch(50, timeout=1):
                    seen.append((msg.subject, orjson.loads(msg.data)))
                    await msg.ack()
        except nats.errors.TimeoutError:
            pass
        mine = [(s, e) for s, e in seen if e.get("user_id") == alice.id]
        assert [s for s, _ in mine] == [
            "connections.opened",
            "connections.joined",
            "connections.left",
            "connections.closed",
        ]
        assert all("token" not in orjson.dumps(e).decode().lower().replace("_token", "") for _, e in mine)
        security = await js.pull_subscribe(
            "security.realtime.>",
            durable=None,
            stream=SECURITY_STREAM,
            config=nats.js.api.ConsumerConfig(
                deliver_policy=nats.js.api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=before + 1
            ),
        )
        refusals = [orjson.loads(m.data) for m in await security.fetch(10, timeout=2)]
        assert any(r["data"]["reason"] and r["event_type"].startswith("security.") for r in refusals)
        assert all("not-a-token" not in orjson.dumps(r).decode() for r in refusals)
    finally:
        await nc.close()


async def test_two_replicas_share_board_events_presence_and_typing(make_stack, aiohttp_server, make_app):
    first = await make_stack()
    # A second realtime replica against the same auth, boards and NATS.
    second_app = make_app("realtime", auth_service_url=first.auth_url, boards_service_url=first.boards_url)
    second_server = await aiohttp_server(second_app)
    second = Stack(
        first.auth_url,
        first.boards_url,
        str(second_server.make_url("")).rstrip("/"),
        first.tokens,
        second_app,
        first.session,
        first.clients,
    )
    alice, bob = first.user("alice"), first.user("bob")
    org = await first.organization(a=(alice, "owner"), b=(bob, "member"))
    board = await first.board(org, alice)
    board_id = board["board"]["id"]
    a: Client = await first.client(alice)
    b: Client = await second.client(bob)
    assert (await a.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]
    joined = await b.call("join_board", {"board_id": board_id, "organization_id": org})
    assert {p["user_id"] for p in joined["data"]["presence"]} == {alice.id, bob.id}  # across replicas (KV)
    await a.wait_for("user_presence", where=lambda m: m["data"]["user_id"] == bob.id)

    card = board["cards"][0]
    moved = await a.call(
        "task_moved",
        {
            "board_id": board_id,
            "task_id": card["id"],
            "from_column_id": card["column_id"],
            "to_column_id": board["columns"][1]["id"],
            "position": 0,
        },
    )
    assert moved["ok"]
    for client in (a, b):
        (event,) = await client.wait_for("task_moved")
        assert event["seq"] == moved["data"]["seq"]  # exactly once on each replica's sockets
    assert (await b.call("user_typing", {"board_id": board_id, "is_typing": True}))["ok"]
    (typing,) = await a.wait_for("user_typing")
    assert typing["data"]["user_id"] == bob.id
    await asyncio.sleep(0.3)
    assert len(a.received["task_moved"]) == 1 and len(b.received["task_moved"]) == 1
