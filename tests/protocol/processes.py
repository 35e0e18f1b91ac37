"""Real ``liveboard serve`` processes for the protocol and transport tests, and raw Engine.IO clients.

Module-scoped fixtures start one auth process and one realtime process per path (fast, stock),
so a module's tests share them; the raw clients speak Engine.IO/Socket.IO by hand (aiohttp), the
way an attacker or a broken client would, without python-socketio's client in between.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from libs.common.devstack import free_port
from tests.conftest import ServiceProcess, service_nats_env

NS = "/workspace"
XFF = "X-Forwarded-For"


def start_auth(base_env: dict[str, str], log_dir: Path) -> ServiceProcess:
    return ServiceProcess("auth", free_port(), {**base_env, **service_nats_env("auth")}, log_dir / "auth.log").start()


def start_realtime(
    base_env: dict[str, str], auth: ServiceProcess, path: str, log_dir: Path, **env: str
) -> ServiceProcess:
    """``liveboard serve realtime`` on the fast (``path="fast"``) or the stock path."""
    return ServiceProcess(
        "realtime",
        free_port(),
        {
            **base_env,
            **service_nats_env("realtime"),
            "AUTH_SERVICE_URL": auth.url,
            "REALTIME_FAST_PATH": "true" if path == "fast" else "false",
            **env,
        },
        log_dir / f"realtime-{path}.log",
    ).start()


def log_problems(proc: ServiceProcess) -> list[str]:
    """Tracebacks and error-level lines in a process log (JSON lines, one per record)."""
    problems = []
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if "Traceback" in line:
            problems.append(line)
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            problems.append(line)
    return problems


class RawWebSocket:
    """An Engine.IO websocket transport driven by hand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[Any] = []

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, ip: str | None = None) -> RawWebSocket:
        headers = {XFF: ip} if ip else {}
        ws = await http.ws_connect(
            url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket",
            headers=headers,
            max_msg_size=0,
            autoping=True,
        )
        raw = cls(ws)
        opening = await raw.next(5)
        assert isinstance(opening, str) and opening.startswith("0{"), opening
        return raw

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def next(self, timeout: float = 5.0, pong: bool = True) -> Any:
        """The next Engine.IO packet within ``timeout`` seconds in all (pings are answered and
        skipped); None once closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError
            message = await self.ws.receive(left)
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                return None
            if pong and message.data == "2":
                await self.ws.send_str("3")
                continue
            self.received.append(message.data)
            return message.data

    async def closed_within(self, timeout: float) -> bool:
        """True once the server closes the transport within ``timeout`` seconds (pings answered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                if await self.next(left) is None:
                    return True
            except TimeoutError:
                return False
        return False

    async def close(self) -> None:
        await self.ws.close()


class RawPolling:
    """An Engine.IO long-polling session driven by hand."""

    def __init__(self, http: aiohttp.ClientSession, url: str, sid: str, ip: str | None) -> None:
        self.http, self.sid, self.headers = http, sid, ({XFF: ip} if ip else {})
        self.endpoint = f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}"

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, ip: str | None = None) -> RawPolling:
        headers = {XFF: ip} if ip else {}
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling", headers=headers) as response:
            body = await response.text()
            assert response.status == 200 and body.startswith("0{"), (response.status, body)
        return cls(http, url, json.loads(body[1:])["sid"], ip)

    async def get(self, timeout: float = 5.0) -> tuple[int, str]:
        async with self.http.get(
            self.endpoint, headers=self.headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, await response.text()

    async def post(self, body: str | bytes, timeout: float = 10.0) -> tuple[int, str]:
        async with self.http.post(
            self.endpoint, data=body, headers=self.headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, await response.text()


async def stats(http: aiohttp.ClientSession, url: str, service_role: str) -> dict[str, Any]:
    async with http.get(f"{url}/api/v1/websocket/stats", headers={"Authorization": f"Bearer {service_role}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def eventually(check: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(interval)
