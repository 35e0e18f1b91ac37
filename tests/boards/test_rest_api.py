"""The REST API of CONTRACT §5 through the real app, Postgres and NATS."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from libs.common.scopes import Scope
from services.boards import event_schemas
from services.boards.actions import EVENT_TYPES
from services.boards.app import OUTBOX

from .conftest import Api
from .replay import assert_replays, stored_events


async def test_every_operation_round_trips_and_every_event_type_is_checked(
    make_app, aiohttp_client, boards_settings, minter, org, db, directory
):
    """A tour of every command; the events replay to the snapshot and every event type of
    ``EVENT_TYPES`` occurs and matches its schema (a new type without schema or test fails here)."""
    # A tiny rank bound so the tour also produces rebalances.
    api = Api(await aiohttp_client(make_app("boards", **boards_settings, rank_max_length=4)), minter, directory)
    alice = minter.user({org: "member"})
    for assignee in ("u1", "u2"):
        await directory.add(org, assignee)
    snap = await api.create_board(alice, org, columns=["To do", "Done"])
    board = snap["board"]["id"]
    todo, done = (c["id"] for c in snap["columns"])

    status, column = await api.call("POST", f"/v1/boards/{board}/columns", alice, {"name": "Review", "position": 1})
    assert status == 201 and column["column"]["position"] == 1
    review = column["column"]["id"]
    status, renamed = await api.call("PATCH", f"/v1/columns/{review}", alice, {"name": "QA", "wip_limit": 3})
    assert status == 200 and renamed["column"]["name"] == "QA" and renamed["column"]["wip_limit"] == 3
    status, _ = await api.call(
        "POST", f"/v1/boards/{board}/columns/reorder", alice, {"column_ids": [done, review, todo]}
    )
    assert status == 200
    for _ in range(6):  # squeezing columns into one gap grows their keys past the bound
        status, _ = await api.call("POST", f"/v1/boards/{board}/columns", alice, {"name": "x", "position": 1})
        assert status == 201

    cards = [await api.add_card(alice, board, todo, f"card {i}") for i in range(3)]
    for i in range(14):  # the same for cards: a rebalance of the column
        await api.add_card(alice, board, todo, f"squeezed {i}", position=1)
    status, moved = await api.call(
        "POST", f"/v1/cards/{cards[0]['id']}/move", alice, {"to_column_id": done, "position": 0}
    )
    assert status == 200 and moved["task"]["column_id"] == done and "conflict" not in moved
    status, updated = await api.call(
        "PATCH",
        f"/v1/cards/{cards[1]['id']}",
        alice,
        {"title": "New", "description": "d", "due_date": "2030-01-31", "labels": ["a", "b"], "expected_version": 1},
    )
    assert status == 200 and updated["task"]["due_date"] == "2030-01-31" and updated["task"]["version"] == 2
    assert updated["changes"] == {"title": "New", "description": "d", "due_date": "2030-01-31", "labels": ["a", "b"]}
    status, assigned = await api.call(
        "PUT", f"/v1/cards/{cards[1]['id']}/assignees", alice, {"assignee_ids": ["u1", "u2"]}
    )
    assert status == 200 and assigned["task"]["assignee_ids"] == ["u1", "u2"]
    status, comment = await api.call("POST", f"/v1/cards/{cards[1]['id']}/comments", alice, {"body": "looks good"})
    assert status == 201 and comment["comment"]["body"] == "looks good"
    status, deleted = await api.call("DELETE", f"/v1/cards/{cards[2]['id']}", alice)
    assert status == 200 and deleted["task_id"] == cards[2]["id"]
    status, renamed_board = await api.call("PATCH", f"/v1/boards/{board}", alice, {"name": "Renamed"})
    assert status == 200 and renamed_board["board"]["name"] == "Renamed"

    final = await api.snapshot(alice, board)
    assert final["seq"] == renamed_board["seq"]
    await assert_replays(db, board, final)

    status, refused = await api.call("DELETE", f"/v1/boards/{board}", alice)
    assert status == 403 and refused["error"]["code"] == "forbidden"  # deleting takes an org admin
    admin = minter.user({org: "admin"})
    status, removed = await api.call("DELETE", f"/v1/boards/{board}", admin)
    assert status == 200 and removed["board_id"] == board
    assert (await api.call("GET", f"/v1/boards/{board}", alice))[0] == 404
    events = await stored_events(db, board)
    assert {e["event_type"] for e in events} == set(EVENT_TYPES) == set(event_schemas.SCHEMAS)
    for event in events:
        event_schemas.check(event["event_type"], event["data"])


async def test_snapshot_shape_and_events_paging(api, minter, org):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board = snap["board"]["id"]
    assert snap["seq"] == 1 and snap["cards"] == [] and [c["position"] for c in snap["columns"]] == [0, 1, 2]
    column = snap["columns"][0]["id"]
    for i in range(5):
        await api.add_card(alice, board, column, f"c{i}")
    got = await api.snapshot(alice, board)
    assert got["seq"] == 6
    assert [c["position"] for c in got["cards"]] == [0, 1, 2, 3, 4]
    assert set(got["cards"][0]) >= {
        "id",
        "column_id",
        "position",
        "rank",
        "title",
        "description",
        "assignee_ids",
        "labels",
        "due_date",
        "version",
    }
    assert set(got["columns"][0]) >= {"id", "name", "position", "wip_limit", "version"}

    status, page = await api.call("GET", f"/v1/boards/{board}/events?since_seq=2&limit=2", alice)
    assert status == 200 and page["seq"] == 6
    assert [e["seq"] for e in page["events"]] == [3, 4]
    envelope = page["events"][0]
    assert set(envelope) == {
        "event_type",
        "data",
        "user_id",
        "timestamp",
        "board_id",
        "event_id",
        "seq",
        "correlation_id",
    }
    assert envelope["board_id"] == board and envelope["user_id"] == alice.id
    status, rest = await api.call("GET", f"/v1/boards/{board}/events?since_seq=4", alice)
    assert [e["seq"] for e in rest["events"]] == [5, 6]
    status, everything = await api.call("GET", f"/v1/boards/{board}/events?since_seq=0&limit=5000", alice)
    assert status == 200 and [e["seq"] for e in everything["events"]] == [1, 2, 3, 4, 5, 6]
    for bad in ("since_seq=-1", "since_seq=abc", "limit=0"):
        status, body = await api.call("GET", f"/v1/boards/{board}/events?{bad}", alice)
        assert status == 400 and body["error"]["code"] == "invalid_payload", bad


async def test_events_older_than_retention_answer_410(api, minter, org, db):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board = snap["board"]["id"]
    await api.add_card(alice, board, snap["columns"][0]["id"])
    # What the retention pruning does to old events (see Outbox.housekeeping).
    await db.execute("DELETE FROM kanban_board_events WHERE board_id = $1 AND seq = 1", board)
    status, body = await api.call("GET", f"/v1/boards/{board}/events?since_seq=0", alice)
    assert status == 410 and body["error"]["code"] == "resync_required"
    status, body = await api.call("GET", f"/v1/boards/{board}/events?since_seq=1", alice)
    assert status == 200 and [e["seq"] for e in body["events"]] == [2]


async def test_retention_housekeeping_prunes_only_old_published_events(
    make_app, aiohttp_client, boards_settings, minter, org, db
):
    app = make_app("boards", **boards_settings, event_retention_days=1)
    api = Api(await aiohttp_client(app))
    alice = minter.user({org: "member"})
    board = (await api.create_board(alice, org))["board"]["id"]
    await db.execute(
        """UPDATE kanban_board_events SET created_at = now() - interval '2 days', published_at = now()
           WHERE board_id = $1""",
        board,
    )
    await app[OUTBOX].housekeeping()
    assert await db.fetchval("SELECT count(*) FROM kanban_board_events WHERE board_id = $1", board) == 0
    status, body = await api.call("GET", f"/v1/boards/{board}/events?since_seq=0", alice)
    assert status == 410


async def test_create_with_explicit_id_is_idempotent_by_content(api, minter, org):
    alice = minter.user({org: "member"})
    board_id = "b-" + uuid.uuid4().hex[:8]
    body = {"id": board_id, "organization_id": org, "name": "Launch", "columns": ["A", "B"]}
    first = await api.call("POST", "/v1/boards", alice, body)
    again = await api.call("POST", "/v1/boards", alice, body)
    other = await api.call("POST", "/v1/boards", alice, {**body, "name": "Other"})
    assert first[0] == 201 and again[0] == 200
    assert again[1]["board"] == first[1]["board"] and again[1]["seq"] == 1
    assert other[0] == 409 and other[1]["error"]["code"] == "conflict"

    column = first[1]["columns"][0]["id"]
    card = {"id": "card-" + uuid.uuid4().hex[:8], "column_id": column, "title": "T"}
    made = await api.call("POST", f"/v1/boards/{board_id}/cards", alice, card)
    same = await api.call("POST", f"/v1/boards/{board_id}/cards", alice, card)
    clash = await api.call("POST", f"/v1/boards/{board_id}/cards", alice, {**card, "title": "U"})
    assert made[0] == 201 and same[0] == 200 and same[1]["task"]["id"] == card["id"]
    assert clash[0] == 409 and clash[1]["error"]["code"] == "conflict"
    assert (await api.snapshot(alice, board_id))["seq"] == 2


async def test_move_conflicts_are_resolved_and_reported(api, minter, org, db):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board = snap["board"]["id"]
    todo, doing, done = (c["id"] for c in snap["columns"])
    card = await api.add_card(alice, board, todo, "moving")
    await api.add_card(alice, board, doing, "resident")

    status, moved = await api.call(
        "POST", f"/v1/cards/{card['id']}/move", alice, {"to_column_id": doing, "position": 99}
    )
    assert status == 200 and moved["position"] == 1 and moved["task"]["position"] == 1
    assert moved["conflict"]["reason"] == "position_clamped"
    assert moved["conflict"]["requested"]["position"] == 99 and moved["conflict"]["resolved"]["position"] == 1

    status, stale = await api.call(
        "POST",
        f"/v1/cards/{card['id']}/move",
        alice,
        {"to_column_id": done, "position": 0, "from_column_id": todo, "expected_version": 1},
    )
    assert status == 200 and stale["from_column_id"] == doing and stale["to_column_id"] == done
    assert stale["conflict"]["reasons"] == ["stale_version", "stale_from_column"]
    assert stale["moved_by"] == {"id": alice.id, "email": alice.email}

    before = await api.snapshot(alice, board)
    status, again = await api.call("POST", f"/v1/cards/{card['id']}/move", alice, {"to_column_id": done, "position": 0})
    assert status == 200 and "conflict" not in again and again["seq"] == before["seq"] + 1
    assert again["task"]["rank"] == stale["task"]["rank"]  # nothing to re-key, yet one event
    await assert_replays(db, board, await api.snapshot(alice, board))


async def test_stale_expected_version_on_update_is_refused_with_current_card(api, minter, org):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    card = await api.add_card(alice, snap["board"]["id"], snap["columns"][0]["id"], "v1")
    status, ok = await api.call("PATCH", f"/v1/cards/{card['id']}", alice, {"title": "v2", "expected_version": 1})
    assert status == 200 and ok["task"]["version"] == 2
    status, refused = await api.call("PATCH", f"/v1/cards/{card['id']}", alice, {"title": "v3", "expected_version": 1})
    assert status == 409 and refused["error"]["code"] == "version_conflict"
    assert refused["error"]["current"]["title"] == "v2" and refused["error"]["current"]["version"] == 2
    assert (await api.snapshot(alice, snap["board"]["id"]))["seq"] == ok["seq"]


async def test_correlation_id_is_kept_in_the_event(api, minter, org):
    alice = minter.user({org: "member"})
    snap = await api.create_board(alice, org)
    board = snap["board"]["id"]
    status, made = await api.call(
        "POST",
        f"/v1/boards/{board}/cards",
        alice,
        {"column_id": snap["columns"][0]["id"], "title": "x"},
        headers={"X-Correlation-Id": "corr-42.a:b"},
    )
    assert status == 201
    status, page = await api.call("GET", f"/v1/boards/{board}/events?since_seq=1", alice)
    assert page["events"][0]["correlation_id"] == "corr-42.a:b"


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "service_role", "expired", "foreign_key"],
)
async def test_unauthenticated_callers_get_401(api, tokens, signer, token):
    from libs.common.scopes import ScopeSigner

    value = {
        "": None,
        "not-a-jwt": "abc.def",
        "service_role": tokens.service_role(),
        "expired": signer.sign(Scope(sub="u-1"), int(time.time()) - 3600),
        "foreign_key": ScopeSigner.generate().sign(Scope(sub="u-1"), int(time.time()) + 3600),
    }[token]
    headers = {"Authorization": f"Bearer {value}"} if value else {}
    status, body = await api.call("GET", "/v1/boards/whatever", None, headers=headers)
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_service_role_scope_token_is_not_a_user(api, signer, org):
    token = signer.sign(Scope(sub=None, role="service_role", service=True), int(time.time()) + 600)
    status, body = await api.call(
        "POST", "/v1/boards", None, {"organization_id": org, "name": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 401


async def test_openapi_lists_the_contract_paths(api):
    status, doc = await api.call("GET", "/openapi.json", None)
    assert status == 200
    for path in (
        "/v1/boards",
        "/v1/boards/{board_id}",
        "/v1/boards/{board_id}/events",
        "/v1/cards/{card_id}/move",
        "/v1/cards/{card_id}/assignees",
        "/v1/columns/{column_id}",
        "/v1/boards/{board_id}/columns/reorder",
    ):
        assert path in doc["paths"], path
    assert "requestBody" in doc["paths"]["/v1/cards/{card_id}/move"]["post"]


async def test_concurrent_board_creation_with_one_id_creates_once(api, minter, org, db):
    alice = minter.user({org: "member"})
    body = {"id": "b-" + uuid.uuid4().hex[:8], "organization_id": org, "name": "Same"}
    answers = await asyncio.gather(*(api.call("POST", "/v1/boards", alice, body) for _ in range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert await db.fetchval("SELECT count(*) FROM kanban_board_events WHERE board_id = $1", body["id"]) == 1
