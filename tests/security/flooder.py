"""An attacker in a process of its own (so its CPU is not the measuring test's): one address
behind a trusted proxy that floods realtime with messages from each socket it gets and with
handshakes, speaking raw Engine.IO over aiohttp websockets, and reports what it was answered.

``python -m tests.security.flooder '{"url", "token", "forwarded_for", "organization_id",
"seconds"}'`` floods until ``seconds`` pass or SIGTERM, then prints one JSON line: counts of
handshakes accepted and refused by code, messages sent, errors answered by code, disconnects.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

NS = "/workspace"
#: Unanswered messages one flooding socket keeps outstanding.
IN_FLIGHT = 200


async def _handshake(http: aiohttp.ClientSession, spec: dict[str, Any]) -> aiohttp.ClientWebSocketResponse | str:
    """A websocket past the namespace CONNECT, or the refusal's code."""
    url = spec["url"].replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    ws = await http.ws_connect(url, headers={"X-Forwarded-For": spec["forwarded_for"]}, max_msg_size=0)
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0"), opened
    await ws.send_str(f"40{NS}," + json.dumps({"token": spec["token"]}))
    while True:
        reply = await ws.receive(timeout=5)
        if reply.type != aiohttp.WSMsgType.TEXT:
            return "closed"
        if reply.data == "2":
            await ws.send_str("3")
            continue
        if reply.data.startswith(f"40{NS},"):
            return ws
        if reply.data.startswith(f"44{NS},"):
            await ws.close()
            return json.loads(reply.data.split(",", 1)[1]).get("data", {}).get("code", "?")
        # anything else before the CONNECT answer (a welcome event after it) is ignored


async def _flood_socket(ws: aiohttp.ClientWebSocketResponse, spec: dict[str, Any], report: Counter) -> None:
    """Messages as fast as the server answers them (``IN_FLIGHT`` unanswered at any time, so the
    server always has a backlog while this process spends its CPU on nothing else), acks
    requested, until the server closes the socket."""
    payload = json.dumps({"organization_id": spec["organization_id"]})
    room = asyncio.Semaphore(IN_FLIGHT)

    async def reader() -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if msg.data == "2":
                await ws.send_str("3")
            elif msg.data.startswith(f"43{NS},"):
                body = json.loads(msg.data[msg.data.index("[") :])[0]
                report["ok" if body.get("ok") else "error:" + body["error"]["code"]] += 1
                room.release()
            elif msg.data.startswith(f"41{NS}") or msg.data.startswith("1"):
                break

    reading = asyncio.create_task(reader())
    n = 0
    try:
        while not reading.done() and not ws.closed:
            waiting = asyncio.create_task(room.acquire())
            await asyncio.wait({waiting, reading}, return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                waiting.cancel()
                break
            n += 1
            await ws.send_str(f'42{NS},{n}["list_boards",{payload}]')
            report["sent"] += 1
    except (ConnectionResetError, aiohttp.ClientError, RuntimeError):
        pass
    await asyncio.wait_for(reading, 10)
    report["disconnected"] += 1


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    """Two floods at once: sockets that flood messages one after another, and bare handshakes."""
    report: Counter = Counter()
    deadline = time.monotonic() + spec["seconds"]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def attempts(http: aiohttp.ClientSession, flood: bool) -> None:
        while time.monotonic() < deadline and not stop.is_set():
            try:
                got = await _handshake(http, spec)
            except (TimeoutError, aiohttp.ClientError, AssertionError) as exc:
                report[f"handshake_failed:{type(exc).__name__}"] += 1
                continue
            if isinstance(got, str):
                report[f"refused:{got}"] += 1
                continue
            report["accepted"] += 1
            if not flood:
                await got.close()
                continue
            flooding = asyncio.create_task(_flood_socket(got, spec, report))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({flooding, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not flooding.done():
                await got.close()
                await flooding

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(attempts(http, flood=True), attempts(http, flood=False))
    return dict(report)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
