"""A TCP proxy of the test's own, between one service and NATS, that the test can cut or slow down.

A partition (the process lives, its NATS connection does not) cannot be made by killing anything;
a slow JetStream cannot be made by configuring nats-server. Both are made here, on the wire, so
the service under test runs unmodified: ``cut()`` closes every proxied connection and refuses new
ones until ``restore()``; ``latency`` delays every chunk the server sends to the client (the
service then sees each reply — a JetStream publish ack, a request's answer — that much later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from libs.common.devstack import free_port

log = logging.getLogger(__name__)


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, latency: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        #: Seconds added to every chunk from the server to the client (order is kept).
        self.latency = latency
        self._server: asyncio.Server | None = None
        self._cut = False
        self._links: set[asyncio.Task[None]] = set()
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def cut(self) -> None:
        """Drop every connection now and refuse new ones (accept, then close) until ``restore``."""
        self._cut = True
        links = list(self._links)
        for link in links:
            link.cancel()
        for link in links:
            with contextlib.suppress(asyncio.CancelledError):
                await link

    def restore(self) -> None:
        self._cut = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        # The link is a task of its own so that ``cut`` cancels it, not asyncio's accept callback.
        link = asyncio.create_task(self._link(reader, writer))
        self._links.add(link)
        link.add_done_callback(self._links.discard)
        await asyncio.wait([link])

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, 0.0)),
            asyncio.create_task(self._pump(up_reader, writer, None)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                w.transport.abort()  # a cut is abrupt: no FIN handshake to wait for

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float | None) -> None:
        """Copy one direction; ``latency`` None means "this proxy's current latency"."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
                queue.task_done()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                delay = self.latency if latency is None else latency
                queue.put_nowait((time.monotonic() + delay, chunk))
                if sender.done():
                    break
            flushed = asyncio.ensure_future(queue.join())  # the rest, then the end
            await asyncio.wait([flushed, sender], return_when=asyncio.FIRST_COMPLETED)
            flushed.cancel()
        except (ConnectionError, OSError) as exc:
            log.debug("proxy link closed: %s", exc)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await sender
