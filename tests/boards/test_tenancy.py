"""Nobody reaches another organization's board, viewers never write, divisions fence members.

Every operation is tried. Someone who may not read the board gets exactly the answer a missing
board, column or card gives (``not_found``: no existence oracle); creating a board in an
organization or division one may not write is ``forbidden``. Every refusal leaves the board, its
events and its comments exactly as they were. (The full role x route x event matrix across
services is tests/security/test_tenancy_matrix.py.)
"""

from __future__ import annotations

import pytest

from .conftest import ROLES


@pytest.fixture
async def target(api, minter, org):
    """A board of organization ``org`` (division ``div-b``) with two columns and a card."""
    owner = minter.user({org: "owner"})
    snap = await api.create_board(owner, org, columns=["A", "B"], division_id="div-b")
    board = snap["board"]["id"]
    card = await api.add_card(owner, board, snap["columns"][0]["id"], "secret")
    return {"owner": owner, "org": org, "board": board, "columns": [c["id"] for c in snap["columns"]], "card": card}


MISSING = {"board": "no-such-board", "card": {"id": "no-such-card"}, "columns": ["no-such-a", "no-such-b"]}


def operations(t: dict) -> list[tuple[str, str, dict | None]]:
    """Every REST operation, aimed at the target board."""
    board, card, (col_a, col_b) = t["board"], t["card"]["id"], t["columns"]
    return [
        ("POST", "/v1/boards", {"organization_id": t["org"], "division_id": "div-b", "name": "intruder"}),
        ("GET", f"/v1/boards/{board}", None),
        ("GET", f"/v1/boards/{board}/events?since_seq=0", None),
        ("PATCH", f"/v1/boards/{board}", {"name": "pwned"}),
        ("DELETE", f"/v1/boards/{board}", None),
        ("POST", f"/v1/boards/{board}/columns", {"name": "x"}),
        ("PATCH", f"/v1/columns/{col_a}", {"name": "x"}),
        ("POST", f"/v1/boards/{board}/columns/reorder", {"column_ids": [col_b, col_a]}),
        ("POST", f"/v1/boards/{board}/cards", {"column_id": col_a, "title": "x"}),
        ("PATCH", f"/v1/cards/{card}", {"title": "x"}),
        ("POST", f"/v1/cards/{card}/move", {"to_column_id": col_b, "position": 0}),
        ("DELETE", f"/v1/cards/{card}", None),
        ("POST", f"/v1/cards/{card}/comments", {"body": "x"}),
        ("PUT", f"/v1/cards/{card}/assignees", {"assignee_ids": ["x"]}),
    ]


async def _state(api, db, t) -> tuple:
    snap = await api.snapshot(t["owner"], t["board"])
    events = await db.fetchval("SELECT count(*) FROM kanban_board_events WHERE board_id = $1", t["board"])
    comments = await db.fetchval("SELECT count(*) FROM kanban_comments WHERE board_id = $1", t["board"])
    boards = await db.fetchval("SELECT count(*) FROM kanban_boards WHERE organization_id = $1", t["org"])
    return snap, events, comments, boards


async def _refused_like_missing(api, caller, target) -> None:
    missing = {**target, **MISSING}
    for (method, path, body), (_, missing_path, missing_body) in zip(
        operations(target), operations(missing), strict=True
    ):
        status, answer = await api.call(method, path, caller, body)
        if method == "POST" and path == "/v1/boards":
            assert status == 403 and answer["error"]["code"] == "forbidden", (method, path, status, answer)
            continue
        assert status == 404 and answer["error"]["code"] == "not_found", (method, path, status, answer)
        assert (status, answer) == await api.call(method, missing_path, caller, missing_body), (method, path)


@pytest.mark.parametrize("role", ROLES)
async def test_other_organization_gets_what_a_missing_board_gives(api, minter, db, target, role):
    stranger = minter.user({"org-elsewhere-" + role: role})
    before = await _state(api, db, target)
    await _refused_like_missing(api, stranger, target)
    assert await _state(api, db, target) == before


async def test_viewer_reads_but_never_writes(api, minter, db, target):
    viewer = minter.user({target["org"]: "viewer"})
    before = await _state(api, db, target)
    for method, path, body in operations(target):
        status, answer = await api.call(method, path, viewer, body)
        if method == "GET":
            assert status == 200, (path, answer)
        else:
            assert status == 403 and answer["error"]["code"] == "forbidden", (method, path, answer)
            assert "read-only" in answer["error"]["message"]
    assert await _state(api, db, target) == before


async def test_division_limited_member_only_reaches_its_divisions(api, minter, db, target):
    fenced = minter.user({target["org"]: ("member", ["div-a"])})
    before = await _state(api, db, target)
    await _refused_like_missing(api, fenced, target)
    assert await _state(api, db, target) == before

    inside = minter.user({target["org"]: ("member", ["div-b"])})
    status, _ = await api.call("PATCH", f"/v1/boards/{target['board']}", inside, {"name": "allowed"})
    assert status == 200
