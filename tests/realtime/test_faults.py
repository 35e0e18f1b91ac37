"""Faults between boards and the sockets lose nothing: what was committed reaches every member,
in order, once."""

from __future__ import annotations

import asyncio

from services.realtime.http_api import WS_SERVER


async def test_events_committed_while_nats_was_down_reach_the_room_in_order(private_nats, make_stack):
    # private_nats first: it must outlive the services' shutdown (fixtures tear down in reverse).
    stack = await make_stack(common={"nats_url": private_nats.url})
    alice, bob = stack.user("alice"), stack.user("bob")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    board = await stack.board(org, alice, cards=1)
    board_id, column = board["board"]["id"], board["columns"][0]["id"]
    watcher = await stack.client(bob)
    assert (await watcher.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]

    private_nats.stop()
    await asyncio.sleep(0.5)
    for index in range(3):  # boards commits to Postgres; its relay publishes once NATS is back
        status, body = await stack.call(
            "POST",
            f"{stack.boards_url}/v1/boards/{board_id}/cards",
            alice.token,
            {"column_id": column, "title": f"while down {index}"},
        )
        assert status == 201, body
    private_nats.start()
    created = await watcher.wait_for("task_created", count=3, timeout=30)
    assert [e["seq"] for e in created] == [board["seq"] + 1, board["seq"] + 2, board["seq"] + 3]
    status, body = await stack.call(
        "POST", f"{stack.boards_url}/v1/boards/{board_id}/cards", alice.token, {"column_id": column, "title": "after"}
    )
    assert status == 201
    after = await watcher.wait_for("task_created", count=4, timeout=10)
    assert [e["seq"] for e in after] == list(range(board["seq"] + 1, board["seq"] + 5))  # gapless, no repeats


async def test_a_dropped_message_is_filled_from_boards(stack):
    """Core NATS may drop a message: the feed sees the gap and reads the missing event from boards."""
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice, cards=0)
    board_id, column = board["board"]["id"], board["columns"][0]["id"]
    client = await stack.client(alice)
    assert (await client.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]
    feeds = stack.realtime_app[WS_SERVER].feeds
    feed = feeds.feeds[board_id]
    subscription = feed.subscription
    await subscription.unsubscribe()  # deaf: the next event is "dropped"
    first = await client.call("task_created", {"board_id": board_id, "column_id": column, "title": "lost"})
    assert first["ok"]
    await asyncio.sleep(0.3)
    assert "task_created" not in client.received

    # Hear again, then a later event arrives: the hole before it is filled from boards, in order.
    async def on_message(msg):
        await feeds._on_message(feed, msg)

    feed.subscription = await stack.realtime_app[WS_SERVER].nats.subscribe(
        f"kanban.events.*.{board_id}.>", cb=on_message
    )
    second = await client.call("task_created", {"board_id": board_id, "column_id": column, "title": "heard"})
    events = await client.wait_for("task_created", count=2)
    assert [e["seq"] for e in events] == [first["data"]["seq"], second["data"]["seq"]]
    assert [e["data"]["task"]["title"] for e in events] == ["lost", "heard"]
    assert feed.gaps_filled >= 1
