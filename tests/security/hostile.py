"""Tools for the hostile-input tests: raw Socket.IO events, and a watch on every error-level log.

Raw events are needed because a well-behaved client library cannot send what an attacker sends
(an event name that is not a string, a body that is not JSON); the ack still arrives through the
client's own callback table, so the test reads the server's answer exactly as a client would.
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from libs.common.devstack import free_port
from libs.common.errors import STATUS_BY_CODE
from tests.conftest import ServiceProcess
from tests.realtime.conftest import NS, Client

#: What a refused event may answer: a contract code, never ``internal``.
CLIENT_CODES = frozenset(STATUS_BY_CODE) - {"internal"}


async def raw_call(client: Client, body: str, timeout: float = 10.0) -> Any:
    """Send ``body`` as the JSON part of an EVENT packet with an ack id; the ack's first argument."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Any] = loop.create_future()

    def callback(*args: Any) -> None:
        if not answer.done():
            answer.set_result(args[0] if args else None)

    ack_id = client.sio._generate_ack_id(NS, callback)
    await client.sio.eio.send(f"2{NS},{ack_id}{body}")
    return await asyncio.wait_for(answer, timeout)


def raw_json(value: Any) -> str:
    return orjson.dumps(value).decode()


class ErrorRecords(logging.Handler):
    """Every record at ERROR or above, and every record carrying a traceback, of any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info or record.stack_info:
            self.records.append(record)

    def describe(self) -> str:
        lines = []
        for record in self.records[:10]:
            lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")
            if record.exc_info:
                lines.append("".join(traceback.format_exception(*record.exc_info))[-2000:])
        return "\n".join(lines)


@contextmanager
def error_records() -> Iterator[ErrorRecords]:
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# --- the services as processes ------------------------------------------------------------------


def start_services(service_process: Callable[..., ServiceProcess], **env: str) -> dict[str, ServiceProcess]:
    """auth, boards, audit and realtime as ``liveboard serve`` processes, started in parallel."""
    auth_port, boards_port = free_port(), free_port()
    common = {
        "AUTH_SERVICE_URL": f"http://127.0.0.1:{auth_port}",
        "BOARDS_SERVICE_URL": f"http://127.0.0.1:{boards_port}",
        "LOG_LEVEL": "info",
        **env,
    }
    processes = {
        "auth": service_process("auth", start=False, port=auth_port, **common),
        "boards": service_process("boards", start=False, port=boards_port, **common),
        "audit": service_process("audit", start=False, **common),
        "realtime": service_process("realtime", start=False, **common),
    }
    for process in processes.values():
        process.start(wait_ready=False)
    for process in processes.values():
        process.wait_ready(60)
    return processes


#: A log line that is a failure of ours: error level or worse, or a traceback anywhere in it.
_BAD_LINE = re.compile(r'"level":\s*"(error|critical)"|Traceback \(most recent call last\)|"exception":')


def log_problems(processes: dict[str, ServiceProcess]) -> list[str]:
    """Every error-level or traceback line in the processes' logs, prefixed with the service."""
    problems = []
    for name, process in processes.items():
        if process.log_path.exists():
            for line in process.log_path.read_text(errors="replace").splitlines():
                if _BAD_LINE.search(line):
                    problems.append(f"{name}: {line[:1500]}")
    return problems
