"""Malformed payloads for every event get a clear code, and the server keeps serving everyone."""

from __future__ import annotations

import pytest

EVENTS = [
    "join_board",
    "leave_board",
    "task_created",
    "task_moved",
    "task_updated",
    "task_deleted",
    "task_assigned",
    "task_commented",
    "board_updated",
    "column_updated",
    "column_reordered",
    "user_presence",
    "user_typing",
    "user_cursor",
    "refresh_token",
]
NOT_OBJECTS = ["a string", ["a", "list"], 42, None, True]


@pytest.fixture
async def setup(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    board = await stack.board(org, alice)
    attacker = await stack.client(alice)
    witness = await stack.client(bob)
    assert (await attacker.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    assert (await witness.call("join_board", {"board_id": board["board"]["id"], "organization_id": org}))["ok"]
    return stack, org, board, attacker, witness


def bad_payloads(board: dict) -> dict[str, list[dict]]:
    """Missing fields and wrong types, per event."""
    board_id = board["board"]["id"]
    card = board["cards"][0]["id"]
    column = board["columns"][0]["id"]
    return {
        "join_board": [
            {},
            {"board_id": board_id},
            {"board_id": 7, "organization_id": "o"},
            {"board_id": board_id, "organization_id": "o", "since_seq": "3"},
            {"board_id": "bad id!", "organization_id": "o"},
        ],
        "leave_board": [{}, {"board_id": ["x"]}],
        "task_created": [
            {"board_id": board_id},
            {"board_id": board_id, "column_id": column, "title": 5},
            {"board_id": board_id, "column_id": column, "title": "t", "position": "first"},
        ],
        "task_moved": [
            {"board_id": board_id, "task_id": card},
            {"board_id": board_id, "task_id": card, "to_column_id": column, "position": "0", "from_column_id": column},
        ],
        "task_updated": [
            {"board_id": board_id, "task_id": card},
            {"board_id": board_id, "task_id": card, "changes": "title"},
        ],
        "task_deleted": [{"board_id": board_id}, {"board_id": board_id, "task_id": 1}],
        "task_assigned": [
            {"board_id": board_id, "task_id": card},
            {"board_id": board_id, "task_id": card, "assignee_ids": "u1"},
        ],
        "task_commented": [
            {"board_id": board_id, "task_id": card},
            {"board_id": board_id, "task_id": card, "body": {"x": 1}},
        ],
        "board_updated": [{"board_id": board_id}, {"board_id": board_id, "changes": []}],
        "column_updated": [{"board_id": board_id}, {"board_id": board_id, "column_id": column, "changes": 1}],
        "column_reordered": [{"board_id": board_id}, {"board_id": board_id, "column_ids": "a,b"}],
        "user_presence": [{"board_id": board_id}, {"board_id": board_id, "status": "asleep"}],
        "user_typing": [{"board_id": board_id}, {"board_id": board_id, "is_typing": "yes"}],
        "user_cursor": [{"board_id": board_id, "x": 1}, {"board_id": board_id, "x": "1", "y": 2}],
        "refresh_token": [{}, {"token": 12}],
    }


async def test_every_event_refuses_malformed_payloads(setup):
    stack, org, board, attacker, witness = setup
    before = board["seq"]
    for event in EVENTS:
        for payload in NOT_OBJECTS:
            answer = await attacker.call(event, payload)
            assert answer["error"]["code"] == "invalid_payload", (event, payload, answer)
        for payload in bad_payloads(board)[event]:
            answer = await attacker.call(event, payload)
            assert answer["ok"] is False, (event, payload, answer)
            assert answer["error"]["code"] == "invalid_payload", (event, payload, answer)
    status, after = await stack.call(
        "GET", f"{stack.boards_url}/v1/boards/{board['board']['id']}", attacker.sio.connection_auth["token"]
    )
    assert status == 200 and after["seq"] == before  # nothing was written
    assert (await witness.call("user_presence", {"board_id": board["board"]["id"], "status": "away"}))["ok"]


async def test_huge_strings_binary_unknown_events_and_unknown_boards(setup):
    stack, org, board, attacker, witness = setup
    board_id = board["board"]["id"]
    huge = await attacker.call(
        "task_created",
        {"board_id": board_id, "column_id": board["columns"][0]["id"], "title": "x" * (10 * 1024 * 1024)},
        timeout=30,
    )
    assert huge["error"]["code"] == "payload_too_large"
    binary = await attacker.call(
        "task_commented", {"board_id": board_id, "task_id": board["cards"][0]["id"], "body": b"\x00\x01binary"}
    )
    assert binary["error"]["code"] == "invalid_payload"
    unknown = await attacker.call("drop_tables", {"board_id": board_id})
    assert unknown["error"]["code"] == "invalid_payload"
    for event, payload in [
        ("join_board", {"board_id": "no-such-board", "organization_id": org}),
        ("task_created", {"board_id": "no-such-board", "column_id": "c", "title": "t"}),
        ("task_deleted", {"board_id": board_id, "task_id": "no-such-card"}),
    ]:
        answer = await attacker.call(event, payload)
        assert answer["error"]["code"] in ("not_found", "forbidden"), (event, answer)
    assert (await witness.call("leave_board", {"board_id": board_id}))["ok"]
    assert (await attacker.call("leave_board", {"board_id": board_id}))["ok"]


async def test_errors_without_ack_arrive_as_error_events(setup):
    stack, org, board, attacker, witness = setup
    await attacker.emit("task_deleted", {"board_id": board["board"]["id"]})
    (error,) = await attacker.wait_for("error")
    assert error["code"] == "invalid_payload" and error["event"] == "task_deleted"


async def test_a_malformed_correlation_id_is_refused_on_any_event(setup):
    stack, org, board, attacker, witness = setup
    for event, payload in [
        ("join_board", {"board_id": board["board"]["id"], "organization_id": org}),
        ("user_presence", {"board_id": board["board"]["id"], "status": "away"}),
        ("task_deleted", {"board_id": board["board"]["id"], "task_id": board["cards"][0]["id"]}),
    ]:
        answer = await attacker.call(event, {**payload, "correlation_id": "has spaces and / slashes"})
        assert answer["error"]["code"] == "invalid_payload", (event, answer)
        answer = await attacker.call(event, {**payload, "correlation_id": "x" * 129})
        assert answer["error"]["code"] == "invalid_payload", (event, answer)
