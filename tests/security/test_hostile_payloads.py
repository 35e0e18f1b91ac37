"""What hostile payloads can do: nothing. Each finding of issue 14 as a regression test, then
hypothesis-generated payloads for every socket event (``test_fuzzed_payloads_for_every_event``).

The regression tests run the real services in-process on real ports (auth, boards, realtime,
audit; real NATS and Postgres); the fuzz test runs them as ``liveboard serve`` processes, so
realtime's memory and each service's log are its own. Clients are real python-socketio clients.
A refusal is always an ack with a contract code, never ``internal``, never silence, and never an
error line in any log.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import aiohttp
import psutil
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from services.realtime.namespace import CLIENT_EVENTS
from tests.conftest import Tokens
from tests.realtime.conftest import Client, Stack
from tests.security import payload_strategies
from tests.security.hostile import CLIENT_CODES, error_records, log_problems, raw_call, start_services


@pytest.fixture
async def stack(make_stack) -> Stack:
    return await make_stack()


@pytest.fixture
async def audit_url(stack: Stack, make_app, aiohttp_server) -> str:
    server = await aiohttp_server(make_app("audit", auth_service_url=stack.auth_url))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def board_setup(stack: Stack):
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice, cards=1)
    client = await stack.client(alice)
    return stack, org, board, client


def refused(answer: object, code: str = "invalid_payload") -> bool:
    return isinstance(answer, dict) and answer.get("ok") is False and answer["error"]["code"] == code


# --- socket events ----------------------------------------------------------------------------


async def test_since_seq_beyond_bigint_is_invalid_payload(board_setup):
    stack, org, board, client = board_setup
    with error_records() as errors:
        for since in (2**63, 2**64 - 1, 2**63 - 1 + 1):
            answer = await client.call(
                "join_board", {"board_id": board["board"]["id"], "organization_id": org, "since_seq": since}
            )
            assert refused(answer), (since, answer)
        answer = await client.call(
            "join_board", {"board_id": board["board"]["id"], "organization_id": org, "since_seq": 2**63 - 1}
        )
        assert answer["ok"] and "snapshot" in answer["data"], answer  # the largest bigint is a valid (future) seq
    assert not errors.records, errors.describe()


@pytest.mark.parametrize(
    "body",
    [
        '["list_boards",{"organization_id":"ORG","x":NaN}]',
        '["list_boards",{"organization_id":"ORG","x":Infinity}]',
        '["list_boards",{"organization_id":"ORG","x":-Infinity}]',
        '["list_boards",{"organization_id":"ORG","title":"cut \\ud83d"}]',
        '["list_boards",{"organization_id":"ORG","\\udc00key":1}]',
        '["list_boards",{"organization_id":"ORG","x":' + "[" * 100 + "]" * 100 + "}]",
    ],
    ids=["nan", "infinity", "minus-infinity", "lone-surrogate", "surrogate-key", "deep"],
)
async def test_json_only_a_lenient_parser_reads_gets_an_invalid_payload_ack(board_setup, body):
    stack, org, board, client = board_setup
    with error_records() as errors:
        answer = await raw_call(client, body.replace("ORG", org))
        assert refused(answer), answer
        assert (await client.call("list_boards", {"organization_id": org}))["ok"]  # the socket still works
    assert not errors.records, errors.describe()


@pytest.mark.parametrize(
    "body", ['["list_boards",{"organization_id":"x"', '["list_boards",' + "[" * 5000 + "]" * 5000 + "]", "[1,]"]
)
async def test_json_nobody_reads_closes_the_transport_quietly(board_setup, body):
    """As Node's socket.io-parser does; the protocol layer's rule (server.py), checked here for
    what matters to payloads: no ``internal``, no error in the log, other sockets unaffected."""
    stack, org, board, client = board_setup
    witness = await stack.client(stack.user("witness"))
    with error_records() as errors:
        await client.sio.eio.send(f"2/workspace,9{body}")
        for _ in range(50):
            if not client.sio.connected:
                break
            await asyncio.sleep(0.1)
        assert not client.sio.connected
        assert witness.sio.connected
    assert not errors.records, errors.describe()


async def test_the_stock_path_refuses_the_same_json(make_stack):
    """``REALTIME_FAST_PATH=false`` decodes with the stdlib, which accepts all of it: the same
    answers come from the namespace's own check."""
    stack = await make_stack(fast_path=False)
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    client = await stack.client(alice)
    with error_records() as errors:
        for value in ("NaN", "-Infinity", '"\\ud83d"', "1" + "0" * 30, "[" * 100 + "]" * 100):
            answer = await raw_call(client, f'["list_boards",{{"organization_id":"{org}","x":{value}}}]')
            assert refused(answer), (value, answer)
        assert (await client.call("list_boards", {"organization_id": org}))["ok"]
    assert not errors.records, errors.describe()


async def test_lone_surrogates_and_non_finite_numbers_say_where(board_setup):
    """A JS client that cuts a title in the middle of an emoji sends a lone surrogate: it is
    refused (never stored half), with a message naming the field."""
    stack, org, board, client = board_setup
    column = board["columns"][0]["id"]
    answer = await raw_call(
        client,
        f'["task_created",{{"board_id":"{board["board"]["id"]}","column_id":"{column}","title":"ok \\ud83d"}}]',
    )
    assert refused(answer) and "title" in answer["error"]["message"] and "surrogate" in answer["error"]["message"]
    # python-socketio's own encoder writes NaN as a bare literal: a client library can send it
    answer = await client.call("user_cursor", {"board_id": board["board"]["id"], "x": math.nan, "y": 1})
    assert refused(answer), answer
    answer = await client.call(
        "task_created", {"board_id": board["board"]["id"], "column_id": column, "title": "t", "position": math.inf}
    )
    assert refused(answer) and "position" in answer["error"]["message"], answer


@pytest.mark.parametrize("body", ["[1,2]", "[null]", "[[1],2]", '[{"a":1}]', "[true,{}]"])
async def test_an_event_name_that_is_not_a_string_never_answers_internal(board_setup, body):
    """socket.io-parser refuses such a packet and Node closes the connection; so does realtime's
    protocol layer. What may never happen is an ``internal`` answer or an error in the log."""
    stack, org, board, client = board_setup
    with error_records() as errors:
        call = asyncio.ensure_future(raw_call(client, body, timeout=5))
        for _ in range(50):  # an ack, or the transport closed
            if call.done() or not client.sio.connected:
                break
            await asyncio.sleep(0.1)
        if call.done():
            assert refused(call.result()), call.result()
        else:
            call.cancel()
            assert not client.sio.connected
    assert not errors.records, errors.describe()


async def test_an_unknown_or_empty_event_name_is_invalid_payload(board_setup):
    stack, org, board, client = board_setup
    for body in ('["",{}]', '["handle_join_board",{}]', '["__init__",{}]', '["x"]'):
        assert refused(await raw_call(client, body)), body


async def test_a_message_larger_than_nats_max_payload_is_payload_too_large(make_stack):
    """Realtime may be configured to accept messages larger than NATS carries (1 MiB)."""
    stack = await make_stack(max_message_bytes=4 << 20)
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    board = await stack.board(org, alice, cards=1)
    client = await stack.client(alice)
    with error_records() as errors:
        answer = await client.call(
            "task_commented",
            {"board_id": board["board"]["id"], "task_id": board["cards"][0]["id"], "body": "x" * (2 << 20)},
            timeout=30,
        )
        assert refused(answer, "payload_too_large"), answer
        assert (await client.call("list_boards", {"organization_id": org}))["ok"]
    assert not errors.records, errors.describe()


async def test_huge_integers_nul_and_binary_say_what_is_wrong(board_setup):
    stack, org, board, client = board_setup
    board_id = board["board"]["id"]
    with error_records() as errors:
        answer = await client.call("join_board", {"board_id": board_id, "organization_id": org, "since_seq": 10**40})
        assert refused(answer) and "since_seq" in answer["error"]["message"], answer
        answer = await raw_call(client, f'["task_deleted",{{"board_id":"{board_id}","task_id":"t","n":{10**400}}}]')
        assert refused(answer) and "binary" not in answer["error"]["message"], answer
        answer = await client.call(
            "task_commented", {"board_id": board_id, "task_id": board["cards"][0]["id"], "body": "a\x00b"}
        )
        assert refused(answer) and "NUL" in answer["error"]["message"], answer
        answer = await client.call(
            "task_commented", {"board_id": board_id, "task_id": board["cards"][0]["id"], "body": b"\x00"}
        )
        assert refused(answer) and "binary" in answer["error"]["message"], answer
    assert not errors.records, errors.describe()


# --- REST ------------------------------------------------------------------------------------


async def test_audit_query_bounds_are_invalid_payload(stack, audit_url):
    alice = stack.user("alice")
    org = await stack.organization(a=(alice, "owner"))
    admin = stack.tokens.service_role()
    with error_records() as errors:
        for query in (
            f"cursor={2**63}",
            f"cursor={2**64 - 1}",
            "cursor=1" + "0" * 40,
            "since=0001-01-01T00:00:00%2B14:00",
            "since=9999-12-31T23:59:59-14:00",
            "since=-99999-01-01T00:00:00Z",
            "since=nan",
            "user_id=%00",
        ):
            status, body = await stack.call("GET", f"{audit_url}/v1/audit/events?organization_id={org}&{query}", admin)
            assert status == 400 and body["error"]["code"] == "invalid_payload", (query, status, body)
        status, body = await stack.call(
            "GET", f"{audit_url}/v1/audit/events?organization_id={org}&cursor={2**63 - 1}", admin
        )
        assert status == 200, body
    assert not errors.records, errors.describe()


async def test_nul_characters_in_auth_bodies_are_invalid_payload(stack):
    admin = stack.tokens.service_role()
    org = "org-" + uuid.uuid4().hex[:10]
    with error_records() as errors:
        status, body = await stack.call(
            "POST", f"{stack.auth_url}/v1/organizations", admin, {"id": org, "name": "a\x00b"}
        )
        assert status == 400 and body["error"]["code"] == "invalid_payload", body
        status, body = await stack.call("POST", f"{stack.auth_url}/v1/organizations", admin, {"id": org, "name": org})
        assert status in (200, 201), body
        status, body = await stack.call(
            "POST", f"{stack.auth_url}/v1/organizations/{org}/divisions", admin, {"name": "d\x00"}
        )
        assert status == 400 and body["error"]["code"] == "invalid_payload", body
        status, body = await stack.call(
            "PUT",
            f"{stack.auth_url}/v1/organizations/{org}/members/{uuid.uuid4()}",
            admin,
            {"role": "member", "email": "a\x00@example.com"},
        )
        assert status == 400 and body["error"]["code"] == "invalid_payload", body
    assert not errors.records, errors.describe()


async def test_boards_bounds_over_nats_and_rest(board_setup):
    """The same classes on boards: ``since_seq`` past bigint over REST, NUL in every text field."""
    stack, org, board, client = board_setup
    token = client.sio.connection_auth["token"]
    board_id = board["board"]["id"]
    with error_records() as errors:
        for query in (f"since_seq={2**63}", "since_seq=" + "9" * 19, "limit=" + "9" * 30):
            status, body = await stack.call("GET", f"{stack.boards_url}/v1/boards/{board_id}/events?{query}", token)
            assert status == 400 and body["error"]["code"] == "invalid_payload", (query, body)
        status, body = await stack.call(
            "POST", f"{stack.boards_url}/v1/boards", token, {"organization_id": org, "name": "n\x00"}
        )
        assert status == 400, body
    assert not errors.records, errors.describe()


# --- generated payloads -----------------------------------------------------------------------

#: Cases in all (over every event of ``CLIENT_EVENTS``; ``LIVEBOARD_FUZZ_CASES`` for a longer run);
#: a witness check every ``WITNESS_EVERY``.
FUZZ_CASES = int(os.environ.get("LIVEBOARD_FUZZ_CASES", "10000"))
WITNESS_EVERY = 500
#: A witness's own broadcast must arrive within this, however busy the fuzzer keeps realtime.
WITNESS_LATENCY = 2.0
#: Growth of realtime's RSS from the first witness check to the end.
RSS_GROWTH = 64 << 20


class LoopThread:
    """An event loop in a thread for the socket clients, so hypothesis (synchronous) drives them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-clients", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def fuzz_services(service_process):
    return start_services(service_process, WEBSOCKET_RATE_LIMIT_MESSAGES="100000000")


@pytest.mark.slow
def test_fuzzed_payloads_for_every_event(fuzz_services, tokens):
    """Every call gets an ack (``ok`` or a contract code, never ``internal``); no error line in any
    service's log; a well-behaved member of the same board stays connected and gets its broadcasts
    within ``WITNESS_LATENCY``; realtime's RSS stays bounded."""
    services = fuzz_services
    loop = LoopThread()
    try:
        world = loop.run(_fuzz_world(services, tokens))
        fuzzer, witness, ids = world["fuzzer"], world["witness"], world["ids"]
        realtime = psutil.Process(services["realtime"].pid)
        outcomes: Counter[str] = Counter()
        samples: defaultdict[str, list[str]] = defaultdict(list)
        latencies: list[float] = []
        rss: list[int] = []
        started = time.monotonic()

        @settings(
            max_examples=FUZZ_CASES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=payload_strategies.cases(sorted(CLIENT_EVENTS), ids))
        def fuzz(case: tuple[str, Any]) -> None:
            event, payload = case
            try:
                answer = loop.run(fuzzer.call(event, payload, timeout=15), 20)
            except TimeoutError:
                raise AssertionError(f"no ack for {event} {payload!r:.500}") from None
            assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), (event, payload, answer)
            code = "ok" if answer["ok"] else answer["error"]["code"]
            assert code == "ok" or code in CLIENT_CODES, (event, repr(payload)[:500], answer)
            outcomes[f"{event}:{code}"] += 1
            if code != "ok" and len(samples[f"{event}:{code}"]) < 3:
                samples[f"{event}:{code}"].append(answer["error"]["message"][:120])
            if sum(outcomes.values()) % WITNESS_EVERY == 0:
                latencies.append(loop.run(_witness_check(witness, ids, len(latencies))))
                rss.append(realtime.memory_info().rss)

        fuzz()
        took = time.monotonic() - started
        total = sum(outcomes.values())
        print(f"fuzzed {total} socket events in {took:.1f}s; witness latencies max {max(latencies):.3f}s")
        print(dict(sorted(outcomes.items())))
        print(dict(samples))
        assert total >= FUZZ_CASES * 0.95, total
        assert {key.split(":")[0] for key in outcomes} == set(CLIENT_EVENTS)
        assert fuzzer.sio.connected and witness.sio.connected
        assert rss[-1] - rss[0] < RSS_GROWTH, [r >> 20 for r in rss]
        loop.run(_close_clients(world))
    finally:
        loop.close()
    problems = log_problems(services)
    assert not problems, "\n".join(problems[:20])


async def _fuzz_world(services: dict, tokens: Tokens) -> dict[str, Any]:
    session = aiohttp.ClientSession()
    stack = Stack(services["auth"].url, services["boards"].url, services["realtime"].url, tokens, None, session)
    owner, member = stack.user("fuzzer"), stack.user("witness")
    org = await stack.organization(o=(owner, "owner"), m=(member, "member"))
    board = await stack.board(org, owner, cards=20)
    fuzzer, witness = await stack.client(owner), await stack.client(member)
    board_id = board["board"]["id"]
    for client in (fuzzer, witness):
        assert (await client.call("join_board", {"board_id": board_id, "organization_id": org}))["ok"]
    columns = [column["id"] for column in board["columns"]]
    cards = [card["id"] for card in board["cards"]]
    ids = {
        "board_id": [board_id],
        "organization_id": [org],
        "division_id": ["div", None],
        "column_id": columns,
        "from_column_id": columns,
        "to_column_id": columns,
        "task_id": cards,
        "column_ids": columns,
        "assignee_ids": [owner.id, member.id],
        "base": {"board_id": board_id, "organization_id": org},
    }
    return {"stack": stack, "session": session, "fuzzer": fuzzer, "witness": witness, "ids": ids}


async def _witness_check(witness: Client, ids: dict[str, Any], index: int) -> float:
    started = time.monotonic()
    answer = await witness.call(
        "task_created", {"board_id": ids["board_id"][0], "column_id": ids["column_id"][0], "title": f"witness {index}"}
    )
    assert answer["ok"], answer
    task_id = answer["data"]["task"]["id"]
    await witness.wait_for(
        "task_created", timeout=WITNESS_LATENCY, where=lambda envelope: envelope["data"]["task"]["id"] == task_id
    )
    return time.monotonic() - started


async def _close_clients(world: dict[str, Any]) -> None:
    for client in (world["fuzzer"], world["witness"]):
        await client.sio.disconnect()
    await world["session"].close()


async def test_a_nul_in_a_refused_request_path_still_reaches_the_audit_chain(stack, audit_url):
    """jsonb cannot hold U+0000: the security event of ``GET /v1/boards/%00`` without a token was
    refused by Postgres and dead-lettered, so a prober left no trace in the chain."""
    marker = uuid.uuid4().hex[:12]
    async with stack.session.get(f"{stack.boards_url}/v1/boards/{marker}%00x") as response:
        assert response.status == 401
    admin = stack.tokens.service_role()
    path = f"/v1/boards/{marker}\ufffdx"
    deadline = time.monotonic() + 10
    while True:
        status, body = await stack.call(
            "GET", f"{audit_url}/v1/audit/events?organization_id=%3Aglobal&limit=1000", admin
        )
        assert status == 200, body
        if any(event["details"].get("path") == path for event in body["events"]):
            break
        assert time.monotonic() < deadline, "the refusal never reached the audit chain"
        await asyncio.sleep(0.2)
