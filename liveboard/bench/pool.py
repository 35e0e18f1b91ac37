"""Load-generator processes: each runs one asyncio loop holding a share of the clients.

Python spends several microseconds per received message; spread over processes the generator
keeps up with the server it measures, and each process reports its own CPU so the report shows
what the generator cost. The parent drives its agents by remote calls over a pipe: ``await
pool.call("connect", ...)`` runs ``Agent.connect`` in every process and gathers the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import multiprocessing
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from .procstat import own_cpu_seconds


class AgentError(RuntimeError):
    """An agent method raised; the message carries the child's traceback."""


class Agent:
    """Base of what runs inside a generator process; public async methods are callable remotely."""

    def __init__(self, index: int, **_: Any) -> None:
        self.index = index

    async def cpu(self) -> float:
        return own_cpu_seconds()

    async def close(self) -> None:
        """Release the agent's connections (called before the process exits)."""


def _child(conn: Connection, agent_path: str, index: int, options: dict[str, Any]) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(_serve(conn, agent_path, index, options))


async def _serve(conn: Connection, agent_path: str, index: int, options: dict[str, Any]) -> None:
    module, _, name = agent_path.partition(":")
    agent: Agent = getattr(importlib.import_module(module), name)(index, **options)
    loop = asyncio.get_running_loop()
    try:
        while True:
            # A thread reads the pipe: an event-loop reader would make its fd non-blocking, and
            # then sending a large result could fail half-way.
            try:
                method, kwargs = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):  # the parent went away: stop
                return
            try:
                conn.send(("ok", await getattr(agent, method)(**kwargs)))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        with contextlib.suppress(Exception):
            await agent.close()


class AgentPool:
    """``processes`` children, each with one ``agent_path`` (``"module:Class"``) instance."""

    def __init__(self, agent_path: str, processes: int, **options: Any) -> None:
        self.agent_path = agent_path
        self.size = max(1, processes)
        self.options = options
        self._procs: list[multiprocessing.Process] = []
        self._conns: list[Connection] = []
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> AgentPool:
        context = multiprocessing.get_context("spawn")  # no inherited event loop or sockets
        for index in range(self.size):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_child,
                args=(child, self.agent_path, index, self.options),
                name=f"liveboard-bench-{index}",
                daemon=True,
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        loop = asyncio.get_running_loop()
        for proc in self._procs:
            await loop.run_in_executor(None, proc.join, 10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    async def call(self, method: str, per_agent: Sequence[dict[str, Any]] | None = None, **kwargs: Any) -> list[Any]:
        """Run ``method`` in every agent (``per_agent[i]`` adds agent i's own arguments)."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            for index, conn in enumerate(self._conns):
                own = dict(kwargs, **(per_agent[index] if per_agent else {}))
                conn.send((method, own))
            answers = await asyncio.gather(*(loop.run_in_executor(None, conn.recv) for conn in self._conns))
        failures = [payload for status, payload in answers if status != "ok"]
        if failures:
            raise AgentError(f"agent {method} failed:\n{failures[0]}")
        return [payload for _, payload in answers]

    async def cpu(self) -> float:
        return sum(await self.call("cpu"))


def split(total: int, parts: int) -> list[int]:
    """``total`` spread as evenly as possible over ``parts``."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
