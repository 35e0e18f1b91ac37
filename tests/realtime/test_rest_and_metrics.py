"""Realtime REST (health, stats, rooms, broadcast) authorization and shapes, and every service's
``/metrics`` after real traffic."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.realtime.http_api import WS_SERVER


@pytest.fixture
async def populated(stack):
    alice, bob, admin, eve = stack.user("alice"), stack.user("bob"), stack.user("admin"), stack.user("eve")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"), c=(admin, "admin"))
    other = await stack.organization(e=(eve, "admin"))
    board = await stack.board(org, alice)
    eve_board = await stack.board(other, eve)
    a, b = await stack.client(alice), await stack.client(bob)
    e = await stack.client(eve)
    assert (await a.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    assert (await b.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    assert (await e.call("join_board", {"board_id": eve_board["board"]["id"], "organization_id": other}))["ok"]
    return stack, org, other, board, eve_board, (alice, bob, admin, eve), (a, b, e)


async def test_health_is_public(stack):
    status, body = await stack.call("GET", f"{stack.realtime_url}/api/v1/websocket/health")
    assert status == 200 and body["status"] == "healthy" and body["nats_connected"] is True


async def test_stats_shape_and_scoping(populated):
    stack, org, other, board, eve_board, (alice, bob, admin, eve), _ = populated
    url = f"{stack.realtime_url}/api/v1/websocket/stats"
    status, everything = await stack.call("GET", url, stack.tokens.service_role())
    assert status == 200
    assert set(everything) == {"server_stats", "manager_stats", "status"}
    server = everything["server_stats"]
    assert {
        "total_connections",
        "active_connections",
        "total_rooms",
        "total_events",
        "total_errors",
        "connections_by_org",
    } <= set(server)
    assert server["active_connections"] == 3
    assert server["connections_by_org"] == {org: 2, other: 1}
    manager = everything["manager_stats"]
    assert {
        "total_connections",
        "active_connections",
        "total_rooms",
        "board_rooms",
        "org_rooms",
        "division_rooms",
    } <= set(manager)
    assert manager["board_rooms"] == 2 and manager["org_rooms"] == 2

    status, mine = await stack.call("GET", url, admin.token)  # an org admin sees their organization only
    assert status == 200
    assert mine["server_stats"]["connections_by_org"] == {org: 2}
    assert mine["manager_stats"]["board_rooms"] == 1
    for token, code in ((bob.token, 403), ("garbage", 401), (None, 401)):
        status, body = await stack.call("GET", url, token)
        assert status == code, body


async def test_rooms_are_scoped_to_the_admins_organizations(populated):
    stack, org, other, board, eve_board, (alice, bob, admin, eve), _ = populated
    url = f"{stack.realtime_url}/api/v1/websocket/rooms"
    status, body = await stack.call("GET", url, eve.token)
    assert status == 200
    rooms = {r["room"]: r for r in body["rooms"]}
    assert f"board:{eve_board['board']['id']}" in rooms and f"org:{other}" in rooms
    assert f"board:{board['board']['id']}" not in rooms and f"org:{org}" not in rooms
    status, body = await stack.call("GET", url, stack.tokens.service_role())
    rooms = {r["room"]: r for r in body["rooms"]}
    assert rooms[f"board:{board['board']['id']}"] == {
        "room": f"board:{board['board']['id']}",
        "type": "board",
        "members": 2,
    }


async def test_broadcast_reaches_only_the_room_and_only_for_its_admins(populated):
    stack, org, other, board, eve_board, (alice, bob, admin, eve), (a, b, e) = populated
    url = f"{stack.realtime_url}/api/v1/websocket/broadcast"
    room = f"board:{board['board']['id']}"
    status, body = await stack.call(
        "POST", url, admin.token, {"room": room, "event": "announcement", "data": {"text": "deploy at 5"}}
    )
    assert status == 200, body
    for member in (a, b):
        (message,) = await member.wait_for("announcement")
        assert message["data"] == {"text": "deploy at 5"}
    assert "announcement" not in e.received
    status, body = await stack.call("POST", url, eve.token, {"room": room, "event": "announcement", "data": {}})
    missing = await stack.call("POST", url, eve.token, {"room": "board:no-such-board", "event": "announcement"})
    assert (status, body) == missing and status == 404, body  # another organization's admin: like a missing board
    status, body = await stack.call("POST", url, bob.token, {"room": room, "event": "announcement", "data": {}})
    assert status == 403, body  # a member
    status, body = await stack.call("POST", url, admin.token, {"room": room, "event": "task_moved", "data": {}})
    assert status == 400 and body["error"]["code"] == "invalid_payload"  # cannot forge board events
    status, body = await stack.call("POST", url, admin.token, {"room": f"org:{org}", "event": "notice"})
    assert status == 200
    assert (await a.wait_for("notice"))[0]["room"] == f"org:{org}"
    status, body = await stack.call("POST", url, stack.tokens.service_role(), {"room": "nonsense", "event": "x"})
    assert status == 400


async def test_every_service_exposes_the_named_metric_families(populated):
    stack, org, other, board, eve_board, users, (a, b, e) = populated
    column = board["columns"][0]["id"]
    assert (await a.call("task_created", {"board_id": board["board"]["id"], "column_id": column, "title": "m"}))["ok"]
    assert not (await a.call("task_created", {"board_id": board["board"]["id"]}))["ok"]
    await a.wait_for("task_created")
    expected = {
        stack.realtime_url: {
            "liveboard_socket_connections",
            "liveboard_socket_rooms",
            "liveboard_socket_events_in",
            "liveboard_socket_events_out",
            "liveboard_socket_errors",
            "liveboard_socket_handler_seconds",
            "liveboard_dependency_up",
            "http_requests",
        },
        stack.boards_url: {
            "boards_commands",
            "boards_command_seconds",
            "boards_events_published",
            "liveboard_dependency_up",
            "http_requests",
            "http_request_duration_seconds",
        },
        stack.auth_url: {
            "liveboard_refusals",
            "liveboard_audit_feed_events",
            "liveboard_dependency_up",
            "http_requests",
        },
    }
    for base, families in expected.items():
        async with stack.session.get(f"{base}/metrics") as response:
            assert response.status == 200
            parsed = {f.name: f for f in text_string_to_metric_families(await response.text())}
        assert families <= set(parsed), (base, families - set(parsed))
    server = stack.realtime_app[WS_SERVER]
    assert server.metrics.events_in.labels("task_created")._value.get() == 2
    rooms = {
        s.labels["type"]: s.value
        for s in parsed_metric(await metrics_text(stack, stack.realtime_url), "liveboard_socket_rooms")
    }
    assert rooms["board"] == 2 and rooms["user"] == 3


async def metrics_text(stack, base: str) -> str:
    async with stack.session.get(f"{base}/metrics") as response:
        return await response.text()


def parsed_metric(text: str, name: str):
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return family.samples
    raise AssertionError(name)
