"""The SDK in headless Chromium: its default storage there is IndexedDB, so edits made while the
connection is cut survive a page reload and reach Postgres exactly once when it comes back.

The page is a bare one (an import map onto ``clients/js/dist`` and socket.io-client's ESM build);
the connection is cut for real by a TCP proxy between the browser and realtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.sdk.conftest import SDK, needs_sdk_build

CHROMIUM = Path("/usr/bin/chromium")
SOCKET_IO = SDK / "node_modules" / "socket.io-client" / "dist" / "socket.io.esm.min.js"

pytestmark = [
    needs_sdk_build,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists() or shutil.which("node") is None, reason="needs Debian's chromium"),
]

PAGE = """<!doctype html><meta charset="utf-8"><title>sdk</title>
<script type="importmap">{"imports": {"@liveboard/client": "/sdk/index.js",
  "socket.io-client": "/sio/socket.io.esm.min.js"}}</script>
<script type="module">import * as lb from '@liveboard/client'; window.lb = lb; window.lbReady = true;</script>
"""

OPEN = """async ([url, token, world]) => {
  const client = lb.createClient({ url, getToken: () => token, transports: ['websocket'],
    reconnectionDelay: 100, reconnectionDelayMax: 400 });
  window.client = client;
  window.board = await client.openBoard({ boardId: world.board_id, organizationId: world.organization_id,
    divisionId: world.division_id });
  return { status: board.status, storage: client.storage.constructor.name, pending: board.pending.length };
}"""

EDITS = """() => {
  const [todo, doing, done] = board.state.columns;
  const [a, b, c] = board.state.cards;
  for (const p of [
    board.moveCard(a.id, done.id, 0),
    board.updateCard(b.id, { title: 'edited offline in Chromium' }),
    board.createCard(doing.id, 'created offline in Chromium', { position: 0 }),
    board.moveCard(c.id, doing.id, 1),
    board.assign(b.id, []),
  ]) p.catch(() => {});
  return board.pending.map((op) => op.clientOpId);
}"""


class TcpProxy:
    """Between the browser and realtime; ``cut()`` aborts every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.difference_update((writer, up_writer))

    def cut(self) -> None:
        self.refusing = True
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    def restore(self) -> None:
        self.refusing = False

    async def stop(self) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()


async def wait_until(page: Any, script: str, timeout: float = 10_000) -> None:
    await page.wait_for_function(script, timeout=timeout)


async def test_offline_edits_survive_a_reload_in_indexeddb_and_apply_once(stack, aiohttp_server):
    from playwright.async_api import async_playwright

    alice, bob = stack.user("alice"), stack.user("bob")
    org = await stack.organization(a=(alice, "owner"), b=(bob, "member"))
    snapshot = await stack.board(org, alice)
    world = {"board_id": snapshot["board"]["id"], "organization_id": org, "division_id": "div"}
    observer = await stack.client(bob)
    assert (await observer.call("join_board", {"board_id": world["board_id"], "organization_id": org}))["ok"]

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def socket_io(_: web.Request) -> web.FileResponse:
        return web.FileResponse(SOCKET_IO, headers={"Content-Type": "text/javascript"})

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/sio/socket.io.esm.min.js", socket_io)
    app.router.add_static("/sdk", SDK / "dist")
    site = await aiohttp_server(app)
    proxy = await TcpProxy(int(stack.realtime_url.rsplit(":", 1)[1])).start()
    realtime_via_proxy = f"http://127.0.0.1:{proxy.port}"
    errors: list[str] = []
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"], headless=True
            )
            context = await browser.new_context()
            tab = await context.new_page()
            tab.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
            page_url = str(site.make_url("/"))
            await tab.goto(page_url)
            await wait_until(tab, "window.lbReady === true")
            opened = await tab.evaluate(OPEN, [realtime_via_proxy, alice.token, world])
            assert opened == {"status": "live", "storage": "IndexedDBStorage", "pending": 0}

            proxy.cut()
            await wait_until(tab, "board.status === 'offline'")
            op_ids = await tab.evaluate(EDITS)
            assert len(op_ids) == 5
            await asyncio.sleep(0.3)  # (written to IndexedDB before anything is sent)

            await tab.reload()  # still cut: the board opens from IndexedDB
            await wait_until(tab, "window.lbReady === true")
            reopened = await tab.evaluate(OPEN, [realtime_via_proxy, alice.token, world])
            assert reopened == {"status": "offline", "storage": "IndexedDBStorage", "pending": 5}
            titles = await tab.evaluate("board.state.cards.map((c) => c.title)")
            assert "created offline in Chromium" in titles

            proxy.restore()
            await wait_until(tab, "board.status === 'live' && board.pending.length === 0", timeout=15_000)
            await browser.close()

        status, body = await stack.call(
            "GET", f"{stack.boards_url}/v1/boards/{world['board_id']}/events?since_seq=0", alice.token
        )
        assert status == 200
        by_op = [e["correlation_id"] for e in body["events"]]
        for op_id in op_ids:
            assert by_op.count(op_id) == 1, op_id
        seen = await observer.wait_for("task_moved", count=2, timeout=5)
        assert {e["correlation_id"] for e in seen} <= set(op_ids)
        await observer.wait_for("task_created", where=lambda e: e["correlation_id"] in op_ids)
    finally:
        await proxy.stop()
    assert errors == []
