"""Bad payloads, operation by operation: ``invalid_payload`` (400) and nothing written."""

from __future__ import annotations

import pytest

LONG_ID = "x" * 65


@pytest.fixture
async def target(api, minter, org):
    member = minter.user({org: "member"})
    snap = await api.create_board(member, org, columns=["A", "B"])
    board = snap["board"]["id"]
    card = await api.add_card(member, board, snap["columns"][0]["id"], "card")
    return {"user": member, "org": org, "board": board, "columns": [c["id"] for c in snap["columns"]], "card": card}


def bad_requests(t: dict) -> list[tuple[str, str, object]]:
    board, card, (col, other) = t["board"], t["card"]["id"], t["columns"]
    boards, cards, columns = "/v1/boards", f"/v1/boards/{board}/cards", f"/v1/boards/{board}/columns"
    return [
        ("POST", boards, {}),
        ("POST", boards, {"organization_id": "bad id!", "name": "x"}),
        ("POST", boards, {"organization_id": t["org"], "name": ""}),
        ("POST", boards, {"organization_id": t["org"], "name": "n" * 201}),
        ("POST", boards, {"organization_id": t["org"], "name": "x", "columns": "A"}),
        ("POST", boards, {"organization_id": t["org"], "name": "x", "columns": ["c"] * 101}),
        ("POST", boards, {"organization_id": 5, "name": "x"}),
        ("POST", boards, {"id": LONG_ID, "organization_id": t["org"], "name": "x"}),
        ("POST", boards, [1, 2]),
        ("POST", boards, b"{not json"),
        ("PATCH", f"/v1/boards/{board}", {}),
        ("PATCH", f"/v1/boards/{board}", {"name": ""}),
        ("PATCH", f"/v1/boards/{board}", {"name": 5}),
        ("POST", columns, {}),
        ("POST", columns, {"name": "x", "position": -1}),
        ("POST", columns, {"name": "x", "wip_limit": "3"}),
        ("POST", columns, {"name": "x", "id": "bad id"}),
        ("PATCH", f"/v1/columns/{col}", {}),
        ("PATCH", f"/v1/columns/{col}", {"wip_limit": -1}),
        ("PATCH", f"/v1/columns/{col}", {"name": None}),
        ("POST", f"{columns}/reorder", {}),
        ("POST", f"{columns}/reorder", {"column_ids": []}),
        ("POST", f"{columns}/reorder", {"column_ids": [col, col]}),
        ("POST", f"{columns}/reorder", {"column_ids": [col, "not-on-board"]}),
        ("POST", cards, {}),
        ("POST", cards, {"column_id": col, "title": ""}),
        ("POST", cards, {"column_id": col, "title": "   "}),
        ("POST", cards, {"column_id": col, "title": "t" * 501}),
        ("POST", cards, {"column_id": col, "title": "x", "description": "d" * 20_001}),
        ("POST", cards, {"column_id": "bad id", "title": "x"}),
        ("POST", cards, {"column_id": col, "title": "x", "position": "1"}),
        ("POST", cards, {"column_id": col, "title": "x", "position": 1.5}),
        ("POST", cards, {"column_id": col, "title": "x", "labels": ["l"] * 21}),
        ("POST", cards, {"column_id": col, "title": "x", "labels": ["l" * 51]}),
        ("POST", cards, {"column_id": col, "title": "x", "assignee_ids": [f"u{i}" for i in range(51)]}),
        ("POST", cards, {"column_id": col, "title": "x", "due_date": "2020-13-01"}),
        ("POST", cards, {"column_id": col, "title": "x", "due_date": "2020-01-01T00:00:00"}),
        ("POST", cards, {"column_id": col, "title": "x", "id": LONG_ID}),
        ("POST", cards, {"column_id": col, "title": "nul\u0000byte"}),
        ("POST", f"/v1/cards/{card}/comments", {"body": "\u0000"}),
        ("PATCH", f"/v1/cards/{card}", {}),
        ("PATCH", f"/v1/cards/{card}", {"title": ""}),
        ("PATCH", f"/v1/cards/{card}", {"labels": "x"}),
        ("PATCH", f"/v1/cards/{card}", {"title": "x", "expected_version": True}),
        ("PATCH", f"/v1/cards/{card}", {"due_date": 20200101}),
        ("PATCH", f"/v1/cards/{card}", {"description": None}),
        ("POST", f"/v1/cards/{card}/move", {}),
        ("POST", f"/v1/cards/{card}/move", {"to_column_id": other}),
        ("POST", f"/v1/cards/{card}/move", {"position": 0}),
        ("POST", f"/v1/cards/{card}/move", {"to_column_id": other, "position": -1}),
        ("POST", f"/v1/cards/{card}/move", {"to_column_id": other, "position": "0"}),
        ("POST", f"/v1/cards/{card}/move", {"to_column_id": other, "position": True}),
        ("POST", f"/v1/cards/{card}/move", {"to_column_id": "bad id", "position": 0}),
        ("POST", f"/v1/cards/{card}/move", {"to_column_id": other, "position": 0, "expected_version": "1"}),
        ("POST", "/v1/cards/bad%20id/move", {"to_column_id": other, "position": 0}),
        ("POST", f"/v1/cards/{card}/comments", {}),
        ("POST", f"/v1/cards/{card}/comments", {"body": ""}),
        ("POST", f"/v1/cards/{card}/comments", {"body": "b" * 10_001}),
        ("POST", f"/v1/cards/{card}/comments", {"body": 5}),
        ("PUT", f"/v1/cards/{card}/assignees", {}),
        ("PUT", f"/v1/cards/{card}/assignees", {"assignee_ids": "u1"}),
        ("PUT", f"/v1/cards/{card}/assignees", {"assignee_ids": [f"u{i}" for i in range(51)]}),
        ("PUT", f"/v1/cards/{card}/assignees", {"assignee_ids": ["bad id"]}),
    ]


async def test_every_bad_payload_is_refused_and_writes_nothing(api, db, target):
    user = target["user"]
    before = await api.snapshot(user, target["board"])
    events = await db.fetchval("SELECT count(*) FROM kanban_board_events WHERE board_id = $1", target["board"])
    boards = await db.fetchval("SELECT count(*) FROM kanban_boards WHERE organization_id = $1", target["org"])
    for method, path, body in bad_requests(target):
        if isinstance(body, bytes):
            response = await api.client.request(method, path, data=body, headers=user.headers)
            status, answer = response.status, await response.json()
        else:
            status, answer = await api.call(method, path, user, body)
        assert status == 400 and answer["error"]["code"] == "invalid_payload", (method, path, body, status, answer)
    assert await api.snapshot(user, target["board"]) == before
    assert await db.fetchval("SELECT count(*) FROM kanban_board_events WHERE board_id = $1", target["board"]) == events
    assert await db.fetchval("SELECT count(*) FROM kanban_boards WHERE organization_id = $1", target["org"]) == boards


async def test_limits_are_inclusive(api, target, directory):
    """The contract's limits are maxima, not off-by-one traps."""
    user, board, col = target["user"], target["board"], target["columns"][0]
    for i in range(50):  # assignees must be members who may read the board
        await directory.add(target["org"], f"u{i}")
    status, made = await api.call(
        "POST",
        f"/v1/boards/{board}/cards",
        user,
        {
            "id": "i" * 64,
            "column_id": col,
            "title": "t" * 500,
            "description": "d" * 20_000,
            "labels": [f"{i:02d}" + "l" * 48 for i in range(20)],
            "assignee_ids": [f"u{i}" for i in range(50)],
        },
    )
    assert status == 201, made
    status, _ = await api.call("POST", f"/v1/cards/{'i' * 64}/comments", user, {"body": "b" * 10_000})
    assert status == 201


async def test_missing_things_are_not_found(api, target):
    user, board = target["user"], target["board"]
    assert (await api.call("GET", "/v1/boards/nope", user))[0] == 404
    assert (await api.call("PATCH", "/v1/cards/nope", user, {"title": "x"}))[0] == 404
    assert (await api.call("PATCH", "/v1/columns/nope", user, {"name": "x"}))[0] == 404
    status, answer = await api.call("POST", f"/v1/boards/{board}/cards", user, {"column_id": "nope", "title": "x"})
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer = await api.call(
        "POST", f"/v1/cards/{target['card']['id']}/move", user, {"to_column_id": "nope", "position": 0}
    )
    assert status == 404
