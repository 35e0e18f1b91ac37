"""The faults ``liveboard bench soak`` injects into a stack it started, shared with the chaos suite
(``tests/chaos/faults.py`` adds the harsher ones it needs a TCP proxy or test hooks for).

Each fault fires while operations are in flight (the caller waits for that first) and returns
once the faulty part is back (restarted); readiness of the whole stack is then measured by the
caller. A fault works against any stack with ``kill``, ``launch``, ``restart_nats``,
``restart_postgres`` and ``url`` (``SoakStack``, the chaos suite's ``ChaosStack``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .workload import Workload


class Breakable(Protocol):
    def kill(self, name: str) -> None: ...

    async def launch(self, name: str, timeout: float = 60.0) -> float: ...

    async def restart_nats(self, *, kill: bool = False) -> None: ...

    async def restart_postgres(self) -> None: ...

    def url(self, name: str) -> str: ...


Fault = Callable[[Any, Workload], Awaitable[str]]


async def kill_boards(stack: Breakable, workload: Workload) -> str:
    stack.kill("boards")
    await stack.launch("boards")
    return "kill -9 boards, restarted"


async def restart_nats(stack: Breakable, workload: Workload) -> str:
    await stack.restart_nats()
    return "nats-server stopped and started on the same data directory"


async def restart_postgres(stack: Breakable, workload: Workload) -> str:
    await stack.restart_postgres()
    return "Postgres fast shutdown, started again"


async def kill_audit(stack: Breakable, workload: Workload) -> str:
    stack.kill("audit")
    await stack.launch("audit")
    return "kill -9 audit, restarted"


async def kill_realtime(stack: Breakable, workload: Workload, replica: str = "realtime-1") -> str:
    """Its clients reconnect to the other replica and re-join with ``since_seq``."""
    moved = [c for c in workload.clients if c.replica == stack.url(replica)]
    stack.kill(replica)
    await stack.launch(replica)
    return f"kill -9 {replica} ({len(moved)} clients moved), restarted"


async def kill_other_realtime(stack: Breakable, workload: Workload) -> str:
    return await kill_realtime(stack, workload, "realtime-2")
