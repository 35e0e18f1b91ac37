"""Listing an organization's boards: ``GET /v1/boards`` and ``boards.v1.list_boards``."""

from __future__ import annotations

import uuid

import orjson
import pytest

from libs.common.messaging import connect


@pytest.fixture
async def nc(nats_url):
    client = await connect(nats_url, "boards-list-test")
    yield client
    await client.drain()


async def ask(nc, token: str, payload: dict) -> dict:
    reply = await nc.request("boards.v1.list_boards", orjson.dumps({"token": token, "payload": payload}), timeout=5)
    return orjson.loads(reply.data)


def ids(answer: dict) -> list[str]:
    return [board["id"] for board in answer["boards"]]


async def test_rest_lists_readable_boards_newest_first(api, minter, org):
    owner = minter.user({org: "owner"})
    org_wide = (await api.create_board(owner, org, name="Org wide"))["board"]
    div1 = (await api.create_board(owner, org, name="One", division_id="div-1"))["board"]
    div2 = (await api.create_board(owner, org, name="Two", division_id="div-2"))["board"]
    gone = (await api.create_board(owner, org, name="Gone"))["board"]
    assert (await api.call("DELETE", f"/v1/boards/{gone['id']}", owner))[0] == 200

    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}", owner)
    assert status == 200, answer
    assert ids(answer) == [div2["id"], div1["id"], org_wide["id"]]  # newest first, not deleted
    assert answer["boards"][1] == {
        "id": div1["id"],
        "name": "One",
        "organization_id": org,
        "division_id": "div-1",
        "seq": 1,
        "updated_at": div1["updated_at"],
    }

    viewer = minter.user({org: "viewer"})
    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}", viewer)
    assert status == 200 and len(answer["boards"]) == 3

    # A member limited to div-1 sees div-1's boards and the organization-wide one, never div-2's.
    limited = minter.user({org: ("member", ["div-1"])})
    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}", limited)
    assert status == 200 and ids(answer) == [div1["id"], org_wide["id"]]
    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}&division_id=div-1", limited)
    assert status == 200 and ids(answer) == [div1["id"]]
    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}&division_id=div-2", limited)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}&division_id=div-2", owner)
    assert status == 200 and ids(answer) == [div2["id"]]


async def test_rest_refuses_other_organizations_and_bad_input(api, minter, org):
    owner = minter.user({org: "owner"})
    await api.create_board(owner, org)
    outsider = minter.user({"org-" + uuid.uuid4().hex[:10]: "owner"})
    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}", outsider)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    for query in (
        "",
        "?division_id=div-1",
        "?organization_id=",
        "?organization_id=bad%20id",
        f"?organization_id={org}&division_id=a%2Fb",
        "?organization_id=" + "x" * 65,
    ):
        status, answer = await api.call("GET", f"/v1/boards{query}", owner)
        assert status == 400 and answer["error"]["code"] == "invalid_payload", (query, answer)
    status, answer = await api.call("GET", f"/v1/boards?organization_id={org}", None)
    assert status == 401


async def test_openapi_documents_the_board_list(api):
    status, doc = await api.call("GET", "/openapi.json", None)
    assert status == 200
    operation = doc["paths"]["/v1/boards"]["get"]
    assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} == {"organization_id", "division_id"}
    assert "post" in doc["paths"]["/v1/boards"]


async def test_nats_list_boards_answers_like_rest(boards, api, nc, minter, org):
    owner = minter.user({org: "owner"})
    div1 = (await api.create_board(owner, org, division_id="div-1"))["board"]
    div2 = (await api.create_board(owner, org, division_id="div-2"))["board"]
    member = minter.user({org: "member"})
    reply = await ask(nc, member.token, {"organization_id": org})
    assert reply["ok"] is True, reply
    assert ids(reply["data"]) == [div2["id"], div1["id"]]
    _, rest = await api.call("GET", f"/v1/boards?organization_id={org}", member)
    assert reply["data"] == rest

    limited = minter.user({org: ("member", ["div-1"])})
    reply = await ask(nc, limited.token, {"organization_id": org})
    assert reply["ok"] is True and ids(reply["data"]) == [div1["id"]]
    reply = await ask(nc, limited.token, {"organization_id": org, "division_id": "div-2"})
    assert reply == {"ok": False, "error": {"code": "forbidden", "message": reply["error"]["message"]}}

    outsider = minter.user({"org-" + uuid.uuid4().hex[:10]: "owner"})
    reply = await ask(nc, outsider.token, {"organization_id": org})
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden"
    for payload in (
        {},
        {"organization_id": 7},
        {"organization_id": "bad id"},
        {"organization_id": org, "division_id": ""},
    ):
        reply = await ask(nc, member.token, payload)
        assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload", (payload, reply)
