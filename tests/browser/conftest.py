"""Browser end-to-end tests of the demo page: real headless Chromium (Playwright) against the
whole stack run as ``liveboard serve`` subprocesses on the session's NATS and Postgres.

Why subprocesses and not in-process apps: the offline test SIGKILLs realtime and starts it
again on the same port, which is what a crash looks like to a browser; and the page is served by
the very process a user would reach.

Screenshots of every step go to ``test-output/browser/<test>/NN-<step>.png`` (gitignored), and
every page's console errors are collected and checked when the test ends.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libs.common.devstack import free_port
from tests.conftest import ROOT, ServiceProcess, Tokens

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = ROOT / "test-output" / "browser"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@dataclass
class User:
    id: str
    email: str
    token: str


@dataclass
class Stack:
    """auth, boards, audit and realtime as processes, and REST helpers to arrange a test."""

    processes: dict[str, ServiceProcess]
    tokens: Tokens

    @property
    def page_url(self) -> str:
        return self.processes["realtime"].url

    @property
    def boards_url(self) -> str:
        return self.processes["boards"].url

    def user(self, name: str) -> User:
        sub = str(uuid.uuid4())
        email = f"{name}.{sub[:4]}@example.com"
        return User(sub, email, self.tokens.user(sub, email, ttl=3600))

    def call(self, method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def organization(self, *members: tuple[User, str]) -> str:
        """An organization with a division, created by the service_role key (as an operator would)."""
        org = "org-" + uuid.uuid4().hex[:8]
        admin = self.tokens.service_role()
        auth = self.processes["auth"].url
        status, body = self.call("POST", f"{auth}/v1/organizations", admin, {"id": org, "name": f"Org {org}"})
        assert status in (200, 201), body
        for user, role in members:
            status, body = self.call(
                "PUT", f"{auth}/v1/organizations/{org}/members/{user.id}", admin, {"role": role, "email": user.email}
            )
            assert status in (200, 201), body
        return org

    def board(self, org: str, owner: User, columns: dict[str, list[str]]) -> dict[str, Any]:
        """A board with the given columns and card titles, created through boards REST."""
        board_id = "b-" + uuid.uuid4().hex[:10]
        status, snapshot = self.call(
            "POST",
            f"{self.boards_url}/v1/boards",
            owner.token,
            {"id": board_id, "organization_id": org, "name": "Launch plan", "columns": list(columns)},
        )
        assert status in (200, 201), snapshot
        for column, titles in zip(snapshot["columns"], columns.values(), strict=True):
            for title in titles:
                status, body = self.call(
                    "POST",
                    f"{self.boards_url}/v1/boards/{board_id}/cards",
                    owner.token,
                    {"column_id": column["id"], "title": title},
                )
                assert status == 201, body
        return self.snapshot(board_id, owner)

    def snapshot(self, board_id: str, user: User) -> dict[str, Any]:
        status, snapshot = self.call("GET", f"{self.boards_url}/v1/boards/{board_id}", user.token)
        assert status == 200, snapshot
        return snapshot


@pytest.fixture
def stack(service_process: Callable[..., ServiceProcess], tokens: Tokens) -> Stack:
    """The four services, started in parallel; realtime on a port of its own choosing that it
    keeps across restarts."""
    auth_port, boards_port = free_port(), free_port()
    urls = {
        "AUTH_SERVICE_URL": f"http://127.0.0.1:{auth_port}",
        "BOARDS_SERVICE_URL": f"http://127.0.0.1:{boards_port}",
    }
    # Every browser comes from 127.0.0.1: the per-IP handshake limit is not what these tests are about.
    common = {**urls, "WEBSOCKET_RATE_LIMIT_CONNECTIONS": "10000", "LOG_LEVEL": "warning"}
    processes = {
        "auth": service_process("auth", start=False, port=auth_port, **common),
        "boards": service_process("boards", start=False, port=boards_port, **common),
        "audit": service_process("audit", start=False, **common),
        "realtime": service_process("realtime", start=False, port=free_port(), **common),
    }
    for process in processes.values():
        process.start(wait_ready=False)
    for process in processes.values():
        process.wait_ready(30)
    return Stack(processes, tokens)


#: For test modules that drive a browser (checked before any service is started).
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (CI: apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from the system package (Playwright downloads no browser here)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (CI: apt-get install -y chromium); the browser tests need it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is a dev dependency")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


#: Console errors Chromium itself logs for a refused connection while the server is down.
NETWORK_ERRORS = re.compile(r"net::ERR_CONNECTION_(REFUSED|RESET|CLOSED)|WebSocket connection to .* failed")


@dataclass
class BoardPage:
    """One signed-in browser page on a board, with the selectors the tests share."""

    name: str
    page: Any
    shots: Screenshots
    console_errors: list[str] = field(default_factory=list)

    def open(self, base_url: str, user: User, board_id: str) -> BoardPage:
        self.page.goto(f"{base_url}/#token={user.token}&board={board_id}")
        self.page.get_by_test_id("board").wait_for(state="visible", timeout=10_000)
        return self

    def card(self, card_id: str) -> Any:
        return self.page.locator(f'[data-testid="card"][data-card-id="{card_id}"]')

    def column(self, column_id: str) -> Any:
        return self.page.locator(f'[data-testid="column"][data-column-id="{column_id}"]')

    def drag_to_end(self, card_id: str, column_id: str) -> None:
        """Drag a card onto the empty board below a column (it lands at the column's end)."""
        board = self.page.get_by_test_id("board").bounding_box()
        column = self.column(column_id).bounding_box()
        assert board and column
        below = min(column["y"] + column["height"] + 40, board["y"] + board["height"] - 10)
        self.card(card_id).drag_to(
            self.page.get_by_test_id("board"),
            target_position={"x": column["x"] + column["width"] / 2 - board["x"], "y": below - board["y"]},
        )

    def layout(self) -> list[dict[str, Any]]:
        """What the page shows: columns in order, each with its cards (id, title) in order."""
        return self.page.evaluate(
            """() => [...document.querySelectorAll('[data-testid="column"]')].map((column) => ({
                id: column.dataset.columnId,
                name: column.querySelector('[data-testid="column-name"]').textContent,
                cards: [...column.querySelectorAll('[data-testid="card"]')].map((card) => ({
                    id: card.dataset.cardId,
                    title: card.querySelector('[data-testid="card-title"]').textContent,
                })),
            }))"""
        )

    def wait_for_card_at(self, card_id: str, column_id: str, index: int, timeout: float = 5_000) -> None:
        self.page.wait_for_function(
            """([cardId, columnId, index]) => {
                const column = document.querySelector(`[data-testid="column"][data-column-id="${columnId}"]`);
                const cards = column ? [...column.querySelectorAll('[data-testid="card"]')] : [];
                return cards[index]?.dataset.cardId === cardId;
            }""",
            arg=[card_id, column_id, index],
            timeout=timeout,
        )

    def wait_for_layout(self, expected: list[dict[str, Any]], timeout: float = 10_000) -> None:
        """Until the page shows exactly ``expected`` (see ``layout``)."""
        self.page.wait_for_function(
            """(expected) => JSON.stringify([...document.querySelectorAll('[data-testid="column"]')].map((c) => ({
                id: c.dataset.columnId,
                name: c.querySelector('[data-testid="column-name"]').textContent,
                cards: [...c.querySelectorAll('[data-testid="card"]')].map((k) => ({
                    id: k.dataset.cardId, title: k.querySelector('[data-testid="card-title"]').textContent })),
            }))) === JSON.stringify(expected)""",
            arg=expected,
            timeout=timeout,
        )

    def shot(self, step: str) -> Path:
        return self.shots.take(self.page, f"{self.name}-{step}")

    def assert_no_console_errors(self, allow: re.Pattern[str] | None = None) -> None:
        unexpected = [e for e in self.console_errors if allow is None or not allow.search(e)]
        assert not unexpected, f"{self.name}: console errors {unexpected}"


def layout_of(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """``BoardPage.layout`` of a ``GET /v1/boards/{id}`` snapshot: what Postgres says the page must show."""
    columns = sorted(snapshot["columns"], key=lambda c: c["position"])
    return [
        {
            "id": column["id"],
            "name": column["name"],
            "cards": [
                {"id": card["id"], "title": card["title"]}
                for card in sorted(
                    (c for c in snapshot["cards"] if c["column_id"] == column["id"]), key=lambda c: c["position"]
                )
            ],
        }
        for column in columns
    ]


@dataclass
class Screenshots:
    folder: Path
    count: int = 0

    def take(self, page: Any, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '-', step)}.png"
        page.screenshot(path=str(path))
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    folder = OUTPUT / re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Screenshots(folder)


@pytest.fixture
def open_page(browser: Any, shots: Screenshots, stack: Stack) -> Iterator[Callable[..., BoardPage]]:
    """``open_page("alice", viewport=PHONE)``: a fresh browser context (its own storage) and page.

    It depends on ``stack`` so that the pages are closed before the services are stopped: a
    realtime process does not finish a SIGTERM while a browser still holds its WebSocket.
    """
    contexts = []

    def make(name: str, viewport: dict[str, int] = DESKTOP) -> BoardPage:
        context = browser.new_context(viewport=viewport, device_scale_factor=1)
        contexts.append(context)
        page = context.new_page()
        board_page = BoardPage(name, page, shots)
        page.on("console", lambda message: message.type == "error" and board_page.console_errors.append(message.text))
        page.on("pageerror", lambda error: board_page.console_errors.append(f"uncaught: {error}"))
        return board_page

    yield make
    for context in contexts:
        context.close()
