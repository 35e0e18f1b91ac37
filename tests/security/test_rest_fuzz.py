"""What hostile HTTP can do: nothing. schemathesis against each service's ``/openapi.json`` (real
``liveboard serve`` processes, real auth headers), and oversized headers and malformed requests
against a real process: no 5xx, no traceback and no error line in any log.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from tests.conftest import Tokens
from tests.security.hostile import log_problems, start_services

pytestmark = pytest.mark.slow
#: Examples per operation, generation mode and token (see ``test_schemathesis_finds_no_server_error``).
EXAMPLES = 12


def _call(method: str, url: str, token: str, body: Any = None) -> Any:
    response = requests.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code in (200, 201), (url, response.status_code, response.text[:500])
    return response.json()


@pytest.fixture
def services(service_process):
    return start_services(service_process)


def _world(services: dict, tokens: Tokens) -> dict[str, str]:
    """An organization with a division, a member, a board with a card: real ids for path parameters."""
    owner_id, member_id = str(uuid.uuid4()), str(uuid.uuid4())
    owner = tokens.user(owner_id, f"owner-{owner_id[:6]}@example.com")
    admin = tokens.service_role()
    auth, boards = services["auth"].url, services["boards"].url
    org = "org-" + uuid.uuid4().hex[:10]
    _call("POST", f"{auth}/v1/organizations", owner, {"id": org, "name": org})
    _call("POST", f"{auth}/v1/organizations/{org}/divisions", admin, {"id": "div", "name": "Division"})
    _call("PUT", f"{auth}/v1/organizations/{org}/members/{member_id}", admin, {"role": "member"})
    snapshot = _call("POST", f"{boards}/v1/boards", owner, {"organization_id": org, "name": "b", "columns": ["a", "b"]})
    board = snapshot["board"]["id"]
    column = snapshot["columns"][0]["id"]
    card = _call("POST", f"{boards}/v1/boards/{board}/cards", owner, {"column_id": column, "title": "t"})["task"]["id"]
    return {
        "owner": owner,
        "org": org,
        "division": "div",
        "user_id": member_id,
        "board_id": board,
        "column_id": column,
        "card_id": card,
    }


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_schemathesis_finds_no_server_error(services, tokens):
    """Positive and negative examples of every operation, with generated and with real path
    parameters, as the owner of an organization and as ``service_role``."""
    world = _world(services, tokens)
    credentials = {"user": world["owner"], "service_role": tokens.service_role()}
    real_path = {name: world[name] for name in ("board_id", "column_id", "card_id", "org", "user_id")}
    failures: list[str] = []
    counts: dict[str, int] = {}
    started = time.monotonic()
    for name, process in services.items():
        for operation in _operations(process.url):
            names = {p.name for p in operation.path_parameters}
            fixed = {key: value for key, value in real_path.items() if key in names}
            strategies = [operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
            if fixed:
                strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))
                strategies.append(operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed))

            counts[name] = counts.get(name, 0) + _fuzz(
                process.url, f"{name} {operation.label}", strategies, credentials, failures
            )
    took = time.monotonic() - started
    print(f"schemathesis: {counts} requests in {took:.1f}s")
    assert not failures, "\n".join(failures[:20])
    problems = log_problems(services)
    assert not problems, "\n".join(problems[:20])


def _fuzz(base_url: str, label: str, strategies: list[Any], credentials: dict[str, str], failures: list[str]) -> int:
    """Run one operation's examples; returns how many requests were sent."""
    sent = 0

    @settings(
        max_examples=EXAMPLES * len(strategies),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies), who=st.sampled_from(sorted(credentials)))
    def run(case: Any, who: str) -> None:
        nonlocal sent
        sent += 1
        try:
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {credentials[who]}"}, timeout=15)
        except requests.RequestException as exc:
            failures.append(f"{label} as {who}: {type(exc).__name__}: {exc}")
            return
        if response.status_code >= 500:
            failures.append(
                f"{label} as {who} -> {response.status_code} {response.text[:300]}\n    {case.as_curl_command()[:1500]}"
            )

    run()
    return sent


# --- malformed HTTP ----------------------------------------------------------------------------


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` as it is and read whatever comes back until the server closes (or 3 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
        try:
            conn.sendall(data)
        except OSError:
            return b""
        chunks = []
        try:
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


MALFORMED = {
    "oversized header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
    "oversized authorization": b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
    + b"a" * 30_000
    + b"\r\n\r\n",
    "too many headers": b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(300))
    + b"\r\n",
    "oversized request line": b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
    "bad method": b"G(E)T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad version": b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    "header without colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n",
    "bad content-length": b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "bad chunked body": b"POST /v1/boards HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "nul in header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
}


def test_malformed_http_is_one_warning_never_a_traceback(services, tokens):
    """aiohttp logs oversized headers and malformed request lines with a traceback at error level;
    bad client input is the client's error: at most a rate-limited warning line."""
    admin = tokens.service_role().encode()
    authorized = {  # reach the handlers, which then read a body that breaks off
        "bad chunk in a read body": b"POST /api/v1/websocket/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + admin
        + b'\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\nzz\r\n\r\n',
        "bad gzip body": b"POST /v1/organizations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + admin
        + b"\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnotgz",
    }
    for _ in range(3):  # repeated: the warning is rate-limited, never one line per request
        for name, process in services.items():
            for kind, data in {**MALFORMED, **authorized}.items():
                answer = _raw(process.port, data)
                assert not answer or answer.startswith(b"HTTP/1."), (name, kind, answer[:200])
                assert b" 500 " not in answer.split(b"\r\n", 1)[0], (name, kind, answer[:200])
    for process in services.values():  # the services still answer
        assert requests.get(f"{process.url}/healthz", timeout=5).status_code == 200
    time.sleep(0.5)
    problems = log_problems(services)
    assert not problems, "\n".join(problems[:10])
    for name, process in services.items():
        lines = [line for line in process.log_path.read_text(errors="replace").splitlines() if "bad HTTP" in line]
        assert 1 <= len(lines) <= len(MALFORMED), (name, len(lines))  # not one per request (3 rounds)
