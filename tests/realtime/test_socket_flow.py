"""The main flows with python-socketio's client: connect, join, move, broadcast, isolation."""

from __future__ import annotations

import asyncio

import pytest

SEED_MOVE_FIELDS = {"task_id", "from_column_id", "to_column_id", "position", "moved_by", "timestamp"}
ENVELOPE_FIELDS = {"event_type", "data", "user_id", "timestamp", "board_id", "event_id", "seq", "correlation_id"}


@pytest.mark.parametrize("transport", [["websocket"], ["polling"], ["polling", "websocket"]])
async def test_move_reaches_every_member_with_the_seed_fields(stack, transport):
    alice, bob, eve = stack.user("alice"), stack.user("bob"), stack.user("eve")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    other_org = await stack.organization(e=(eve, "owner"))
    board = await stack.board(org, alice)
    other_board = await stack.board(org, alice)
    eve_board = await stack.board(other_org, eve)

    a = await stack.client(alice, transports=transport)
    b = await stack.client(bob, transports=transport)
    bystander = await stack.client(bob, transports=transport)
    outsider = await stack.client(eve, transports=transport)
    welcome = (await a.wait_for("connection_established"))[0]
    assert welcome["user_id"] == alice.id and welcome["email"] == alice.email

    joined = await a.call(
        "join_board", {"board_id": board["board"]["id"], "organization_id": org, "division_id": "div"}
    )
    assert joined["ok"], joined
    assert joined["data"]["seq"] == board["seq"]
    snapshot = joined["data"]["snapshot"]
    assert [c["position"] for c in snapshot["cards"] if c["column_id"] == board["columns"][0]["id"]] == [0, 1, 2]
    assert (await b.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    assert (await bystander.call("join_board", {"board_id": other_board["board"]["id"], "organization_id": org}))["ok"]
    assert (await outsider.call("join_board", {"board_id": eve_board["board"]["id"], "organization_id": other_org}))[
        "ok"
    ]

    card = snapshot["cards"][0]
    todo, doing = board["columns"][0]["id"], board["columns"][1]["id"]
    ack = await a.call(
        "task_moved",
        {
            "task_id": card["id"],
            "from_column_id": todo,
            "to_column_id": doing,
            "position": 0,
            "board_id": board["board"]["id"],
            "correlation_id": "corr-move-1",
        },
    )
    assert ack["ok"], ack
    assert ack["data"]["seq"] == board["seq"] + 1 and ack["data"]["event_id"]

    for member in (a, b):  # the sender too: broadcasts come from the committed event
        (message,) = await member.wait_for("task_moved")
        assert set(message) == ENVELOPE_FIELDS
        assert message["seq"] == board["seq"] + 1
        assert message["correlation_id"] == "corr-move-1"
        assert message["board_id"] == board["board"]["id"]
        data = message["data"]
        assert SEED_MOVE_FIELDS <= set(data)
        assert data["from_column_id"] == todo and data["to_column_id"] == doing and data["position"] == 0
        assert data["moved_by"] == {"id": alice.id, "email": alice.email}
        assert data["task"]["id"] == card["id"] and data["task"]["column_id"] == doing
    await asyncio.sleep(0.3)
    assert "task_moved" not in bystander.received  # another board of the same organization
    assert "task_moved" not in outsider.received  # another organization


async def test_viewer_reads_but_every_write_is_forbidden(stack):
    owner, viewer = stack.user("owner"), stack.user("viewer")
    org = await stack.organization(o=(owner, "owner"), v=(viewer, "viewer"))
    board = await stack.board(org, owner)
    board_id = board["board"]["id"]
    card = board["cards"][0]
    column = board["columns"][0]["id"]
    v = await stack.client(viewer)
    joined = await v.call("join_board", {"board_id": board_id, "organization_id": org})
    assert joined["ok"] and joined["data"]["can_write"] is False
    writes = {
        "task_created": {"column_id": column, "title": "nope"},
        "task_moved": {"task_id": card["id"], "from_column_id": column, "to_column_id": column, "position": 0},
        "task_updated": {"task_id": card["id"], "changes": {"title": "x"}},
        "task_deleted": {"task_id": card["id"]},
        "task_assigned": {"task_id": card["id"], "assignee_ids": [viewer.id]},
        "task_commented": {"task_id": card["id"], "body": "hi"},
        "board_updated": {"changes": {"name": "x"}},
        "column_updated": {"column_id": column, "changes": {"name": "x"}},
        "column_reordered": {"column_ids": [c["id"] for c in reversed(board["columns"])]},
    }
    for event, payload in writes.items():
        answer = await v.call(event, {**payload, "board_id": board_id})
        assert answer["ok"] is False and answer["error"]["code"] == "forbidden", (event, answer)
    status, after = await stack.call("GET", f"{stack.boards_url}/v1/boards/{board_id}", owner.token)
    assert after["seq"] == board["seq"]


async def test_join_is_checked_against_the_real_organization(stack):
    alice, mallory = stack.user("alice"), stack.user("mallory")
    org = await stack.organization(a=(alice, "owner"))
    mallory_org = await stack.organization(m=(mallory, "owner"))
    board = await stack.board(org, alice)
    m = await stack.client(mallory)
    missing = await m.call("join_board", {"board_id": "no-such-board", "organization_id": mallory_org})
    for claimed in (mallory_org, org):  # a forged organization_id, then the board's real one
        answer = await m.call("join_board", {"board_id": board["board"]["id"], "organization_id": claimed})
        # Another tenant's board answers exactly like a missing one (no existence oracle).
        assert answer["ok"] is False and answer["error"]["code"] == "not_found", answer
        assert answer == missing
    a = await stack.client(alice)
    forged = await a.call("join_board", {"board_id": board["board"]["id"], "organization_id": mallory_org})
    assert forged["error"]["code"] == "forbidden"
    wrong_division = await a.call(
        "join_board", {"board_id": board["board"]["id"], "organization_id": org, "division_id": "other-div"}
    )
    assert wrong_division["error"]["code"] == "forbidden"
    missing = await a.call("join_board", {"board_id": "no-such-board", "organization_id": org})
    assert missing["error"]["code"] == "not_found"


async def test_a_refused_re_join_keeps_the_socket_on_the_board(stack):
    """A re-join (what a client does after resync_required) that is refused leaves the socket where
    it was: still in the room, still receiving the board's events."""
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice, cards=1)
    board_id = board["board"]["id"]
    watcher, mover = await stack.client(alice), await stack.client(alice)
    for client in (watcher, mover):
        assert (await client.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]
    refused = await watcher.call("join_board", {"board_id": board_id, "organization_id": org, "division_id": "x"})
    assert refused["error"]["code"] == "forbidden", refused
    changed = await mover.call(
        "task_updated", {"board_id": board_id, "task_id": board["cards"][0]["id"], "changes": {"title": "still here"}}
    )
    assert changed["ok"], changed
    await watcher.wait_for("task_updated", where=lambda e: e["data"]["changes"]["title"] == "still here")


@pytest.mark.parametrize("case", ["none", "garbage", "bad_signature", "anon", "service_role", "expired"])
async def test_bad_tokens_get_connect_error_unauthorized(stack, case):
    import socketio

    user = stack.user("x")
    tokens = {
        "none": None,
        "garbage": "not-a-jwt",
        "bad_signature": user.token[:-4] + ("AAAA" if not user.token.endswith("AAAA") else "BBBB"),
        "anon": stack.tokens.user(role="anon"),
        "service_role": stack.tokens.service_role(),
        "expired": stack.tokens.user(ttl=-120),
    }
    client = await stack.client(None, connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(stack.realtime_url, tokens[case])
    assert client.connect_error is not None
    error = client.connect_error
    assert isinstance(error, dict) and error.get("code") == "unauthorized", error
    assert error["message"]


async def test_bearer_header_works_for_server_side_clients(stack):
    alice = stack.user("alice")
    await stack.organization(a=(alice, "owner"))
    client = await stack.client(None, connect=False)
    await client.connect(stack.realtime_url, None, headers={"Authorization": f"Bearer {alice.token}"})
    assert (await client.wait_for("connection_established"))[0]["user_id"] == alice.id


async def test_catch_up_with_since_seq_is_gapless(stack):
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice)
    board_id, column = board["board"]["id"], board["columns"][0]["id"]
    for index in range(5):
        status, _ = await stack.call(
            "POST",
            f"{stack.boards_url}/v1/boards/{board_id}/cards",
            alice.token,
            {"column_id": column, "title": f"later {index}"},
        )
        assert status == 201
    client = await stack.client(alice)
    answer = await client.call("join_board", {"board_id": board_id, "organization_id": org, "since_seq": board["seq"]})
    assert answer["ok"], answer
    events = answer["data"]["events"]
    assert [e["seq"] for e in events] == list(range(board["seq"] + 1, board["seq"] + 6))
    assert answer["data"]["seq"] == board["seq"] + 5
    assert "snapshot" not in answer["data"]


async def test_presence_and_typing_go_to_the_others_only(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    board = await stack.board(org, alice)
    board_id = board["board"]["id"]
    a, b = await stack.client(alice), await stack.client(bob)
    await a.call("join_board", {"board_id": board_id, "organization_id": org})
    joined = await b.call("join_board", {"board_id": board_id, "organization_id": org})
    assert {p["user_id"] for p in joined["data"]["presence"]} == {alice.id, bob.id}
    online = await a.wait_for("user_presence", where=lambda m: m["data"]["user_id"] == bob.id)
    assert online[0]["status"] == "online" and "seq" not in online[0]

    assert (await b.call("user_typing", {"board_id": board_id, "task_id": board["cards"][0]["id"], "is_typing": True}))[
        "ok"
    ]
    typing = await a.wait_for("user_typing")
    assert typing[0]["data"]["is_typing"] is True and typing[0]["data"]["user_id"] == bob.id
    assert "user_typing" not in b.received
    stopped = await a.wait_for("user_typing", count=2, timeout=8)  # expires after 5 s without renewal
    assert stopped[1]["data"]["is_typing"] is False

    for index in range(30):
        await b.emit("user_cursor", {"board_id": board_id, "x": index, "y": index})
    await asyncio.sleep(0.5)
    cursors = a.received["user_cursor"]
    assert 1 <= len(cursors) < 30  # coalesced
    assert cursors[-1]["data"]["x"] == 29  # the latest position wins

    await b.call("leave_board", {"board_id": board_id})
    offline = await a.wait_for("user_presence", where=lambda m: m["data"]["status"] == "offline")
    assert offline[0]["data"]["user_id"] == bob.id


async def test_conflict_is_reported_to_the_mover(stack):
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice)
    board_id = board["board"]["id"]
    todo, doing = board["columns"][0]["id"], board["columns"][1]["id"]
    card = board["cards"][0]
    a = await stack.client(alice)
    await a.call("join_board", {"board_id": board_id, "organization_id": org})
    ack = await a.call(
        "task_moved",
        {"board_id": board_id, "task_id": card["id"], "from_column_id": doing, "to_column_id": todo, "position": 99},
    )
    assert ack["ok"], ack
    conflict = ack["data"]["conflict"]
    assert conflict["reason"] and conflict["requested"] and conflict["resolved"]
    notice = await a.wait_for("task_conflict")
    assert notice[0]["conflict"] == conflict
    (moved,) = await a.wait_for("task_moved")
    assert moved["data"]["from_column_id"] == todo  # where the card really was
    assert moved["data"]["position"] == 2  # clamped to the end of the column


async def test_idempotent_retry_through_the_socket(stack):
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice, cards=0)
    board_id, column = board["board"]["id"], board["columns"][0]["id"]
    a = await stack.client(alice)
    payload = {"board_id": board_id, "column_id": column, "title": "once", "client_op_id": "op-1"}
    first, second = await asyncio.gather(a.call("task_created", payload), a.call("task_created", payload))
    assert first["ok"] and second == first
    status, after = await stack.call("GET", f"{stack.boards_url}/v1/boards/{board_id}", alice.token)
    assert [c["title"] for c in after["cards"]] == ["once"]
    assert after["seq"] == board["seq"] + 1


async def test_join_a_board_too_large_for_one_nats_message(stack):
    """A snapshot over NATS's 1 MB message cap is fetched over boards' REST instead."""
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice, cards=0)
    board_id, column = board["board"]["id"], board["columns"][0]["id"]
    long_text = "lorem ipsum " * 1600  # ~19 KB, under the 20,000-character limit
    results = await asyncio.gather(
        *(
            stack.call(
                "POST",
                f"{stack.boards_url}/v1/boards/{board_id}/cards",
                alice.token,
                {"column_id": column, "title": f"big {index}", "description": long_text},
            )
            for index in range(60)
        )
    )
    assert all(status == 201 for status, _ in results)
    client = await stack.client(alice)
    answer = await client.call("join_board", {"board_id": board_id, "organization_id": org}, timeout=20)
    assert answer["ok"], answer
    cards = answer["data"]["snapshot"]["cards"]
    assert len(cards) == 60 and sorted(c["position"] for c in cards) == list(range(60))
    assert answer["data"]["seq"] == board["seq"] + 60


async def test_since_seq_ahead_of_the_board_gets_a_snapshot_and_no_resync(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    board = await stack.board(org, alice)
    a, b = await stack.client(alice), await stack.client(bob)
    assert (await a.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    ahead = await b.call(
        "join_board", {"board_id": board["board"]["id"], "organization_id": org, "since_seq": board["seq"] + 50}
    )
    assert ahead["ok"] and ahead["data"]["seq"] == board["seq"] and "snapshot" in ahead["data"]
    await asyncio.sleep(0.3)
    assert "resync_required" not in a.received


async def test_concurrent_joins_and_a_failed_join_keep_the_feed(stack):
    alice, bob, mallory = stack.user("alice"), stack.user("bob"), stack.user("mallory")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    await stack.organization(m=(mallory, "owner"))
    board = await stack.board(org, alice, cards=0)
    board_id, column = board["board"]["id"], board["columns"][0]["id"]
    a, b, m = await stack.client(alice), await stack.client(bob), await stack.client(mallory)
    answers = await asyncio.gather(
        a.call("join_board", {"board_id": board_id, "organization_id": org}),
        m.call("join_board", {"board_id": board_id, "organization_id": org}),  # refused
        b.call("join_board", {"board_id": board_id, "organization_id": org}),
    )
    assert [x["ok"] for x in answers] == [True, False, True]
    assert (await a.call("task_created", {"board_id": board_id, "column_id": column, "title": "t"}))["ok"]
    for member in (a, b):
        assert len(await member.wait_for("task_created")) == 1
