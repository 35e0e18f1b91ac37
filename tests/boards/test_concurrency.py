"""Many callers at once on one board: every request lands or reports a conflict, nothing deadlocks,
retries apply once, and the board's invariants hold afterwards."""

from __future__ import annotations

import asyncio
import random

from .replay import assert_replays


async def _board_with_cards(api, user, org, count: int, columns=("A", "B")):
    snap = await api.create_board(user, org, columns=list(columns))
    board = snap["board"]["id"]
    column_ids = [c["id"] for c in snap["columns"]]
    cards = [await api.add_card(user, board, column_ids[0], f"card {i}") for i in range(count)]
    return board, column_ids, cards


async def test_fifty_concurrent_moves_into_one_column(api, minter, org, db):
    users = [minter.user({org: "member"}) for _ in range(5)]
    board, (source, target), cards = await _board_with_cards(api, users[0], org, 50)
    rng = random.Random(7)

    async def move(i: int, card: dict) -> tuple[int, dict]:
        body = {"to_column_id": target, "position": rng.choice([0, 1, 1, 2, 5, 60]), "expected_version": 1}
        return await api.call("POST", f"/v1/cards/{card['id']}/move", users[i % 5], body)

    answers = await asyncio.gather(*(move(i, card) for i, card in enumerate(cards)))
    assert [status for status, _ in answers] == [200] * 50, [a for a in answers if a[0] != 200][:2]
    for _, moved in answers:
        assert moved["to_column_id"] == target and moved["from_column_id"] == source
        assert set(moved.get("conflict", {}).get("reasons", [])) <= {"position_clamped"}
    snap = await api.snapshot(users[0], board)
    assert [c["column_id"] for c in snap["cards"]] == [target] * 50
    assert sorted(moved["seq"] for _, moved in answers) == list(range(52, 102))
    await assert_replays(db, board, snap)


async def test_opposite_cross_column_moves_do_not_deadlock(api, minter, org, db):
    alice, bob = minter.user({org: "member"}), minter.user({org: "member"})
    snap = await api.create_board(alice, org, columns=["Left", "Right"])
    board = snap["board"]["id"]
    left, right = (c["id"] for c in snap["columns"])
    lefts = [await api.add_card(alice, board, left, f"L{i}") for i in range(25)]
    rights = [await api.add_card(alice, board, right, f"R{i}") for i in range(25)]

    async def move(user, card, to, position):
        return await api.call("POST", f"/v1/cards/{card['id']}/move", user, {"to_column_id": to, "position": position})

    calls = []
    for i in range(25):
        calls.append(move(alice, lefts[i], right, i % 3))
        calls.append(move(bob, rights[i], left, 0))
        calls.append(move(bob, lefts[(i + 1) % 25], left, 99))  # some cards move twice, stale views
    answers = await asyncio.gather(*calls)
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:2]
    final = await api.snapshot(alice, board)
    assert len(final["cards"]) == 50
    await assert_replays(db, board, final)


async def test_a_retry_with_the_same_client_op_id_writes_once(api, minter, org, db):
    alice = minter.user({org: "member"})
    board, columns, _ = await _board_with_cards(api, alice, org, 0)
    headers = {"Idempotency-Key": "op-1"}
    body = {"column_id": columns[0], "title": "once"}
    first = await api.call("POST", f"/v1/boards/{board}/cards", alice, body, headers=headers)
    second = await api.call("POST", f"/v1/boards/{board}/cards", alice, body, headers=headers)
    assert first[0] == second[0] == 201
    assert first[1] == second[1]
    snap = await api.snapshot(alice, board)
    assert len(snap["cards"]) == 1 and snap["seq"] == 2

    # The same key for another request is refused rather than answered with the old result.
    status, reused = await api.call(
        "POST", f"/v1/boards/{board}/cards", alice, {**body, "title": "other"}, headers=headers
    )
    assert status == 409 and reused["error"]["code"] == "conflict"
    # Keys are per user: bob's op-1 is his own.
    bob = minter.user({org: "member"})
    status, _ = await api.call("POST", f"/v1/boards/{board}/cards", bob, body, headers=headers)
    assert status == 201
    await assert_replays(db, board, await api.snapshot(alice, board))


async def test_identical_concurrent_requests_write_once(api, minter, org, db):
    alice = minter.user({org: "member"})
    board, columns, cards = await _board_with_cards(api, alice, org, 3)
    move = {"to_column_id": columns[1], "position": 0}
    answers = await asyncio.gather(
        *(
            api.call("POST", f"/v1/cards/{cards[0]['id']}/move", alice, move, headers={"Idempotency-Key": "same-move"})
            for _ in range(10)
        )
    )
    assert {status for status, _ in answers} == {200}
    assert len({moved["event_id"] for _, moved in answers}) == 1
    snap = await api.snapshot(alice, board)
    assert snap["seq"] == 5  # board + 3 cards + one move
    await assert_replays(db, board, snap)
