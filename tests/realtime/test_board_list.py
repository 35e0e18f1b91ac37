"""``list_boards`` over the socket: boards' answer for the session's user, ids checked by realtime."""

from __future__ import annotations


async def test_list_boards_returns_the_boards_the_user_may_read(stack):
    alice, bob, eve = stack.user("alice"), stack.user("bob"), stack.user("eve")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    other_org = await stack.organization(e=(eve, "owner"))
    in_div = await stack.board(org, alice, cards=0)
    org_wide = await stack.board(org, alice, cards=0, division=None)
    await stack.board(other_org, eve, cards=0)

    b = await stack.client(bob)
    await b.wait_for("connection_established")
    ack = await b.call("list_boards", {"organization_id": org})
    assert ack["ok"], ack
    boards = ack["data"]["boards"]
    assert [board["id"] for board in boards] == [org_wide["board"]["id"], in_div["board"]["id"]]
    assert set(boards[0]) == {"id", "name", "organization_id", "division_id", "seq", "updated_at"}
    assert boards[1]["division_id"] == "div" and boards[1]["organization_id"] == org

    ack = await b.call("list_boards", {"organization_id": org, "division_id": "div"})
    assert ack["ok"] and [board["id"] for board in ack["data"]["boards"]] == [in_div["board"]["id"]]

    # Another organization's boards: boards says forbidden, and realtime passes that on.
    ack = await b.call("list_boards", {"organization_id": other_org})
    assert not ack["ok"] and ack["error"]["code"] == "forbidden"

    # Ids are checked before anything reaches boards.
    for payload in (
        {},
        {"organization_id": 3},
        {"organization_id": "no spaces"},
        {"organization_id": org, "division_id": "a/b"},
        "not an object",
    ):
        ack = await b.call("list_boards", payload)
        assert not ack["ok"] and ack["error"]["code"] == "invalid_payload", (payload, ack)

    # Without an ack the refusal comes as an `error` event naming the event.
    await b.emit("list_boards", {"organization_id": other_org})
    (error,) = await b.wait_for("error")
    assert error["code"] == "forbidden" and error["event"] == "list_boards"


async def test_a_division_limited_member_lists_only_their_division(stack):
    alice, dora = stack.user("alice"), stack.user("dora")
    org = await stack.organization(a=(alice, "owner"))
    admin = stack.tokens.service_role()
    status, body = await stack.call(
        "POST", f"{stack.auth_url}/v1/organizations/{org}/divisions", admin, {"id": "other", "name": "Other"}
    )
    assert status in (200, 201), body
    status, body = await stack.call(
        "PUT",
        f"{stack.auth_url}/v1/organizations/{org}/members/{dora.id}",
        admin,
        {"role": "member", "email": dora.email, "divisions": ["div"]},
    )
    assert status in (200, 201), body
    mine = await stack.board(org, alice, cards=0)
    await stack.board(org, alice, cards=0, division="other")

    d = await stack.client(dora)
    await d.wait_for("connection_established")
    ack = await d.call("list_boards", {"organization_id": org})
    assert ack["ok"] and [board["id"] for board in ack["data"]["boards"]] == [mine["board"]["id"]]
    ack = await d.call("list_boards", {"organization_id": org, "division_id": "other"})
    assert not ack["ok"] and ack["error"]["code"] == "forbidden"
