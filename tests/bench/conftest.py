"""The four services as ``liveboard serve`` processes, once for the module's bench runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.common.devstack import free_port
from tests.conftest import ServiceProcess, service_nats_env

#: What the bench needs from the realtime under test: no per-IP / per-socket limits in the way.
REALTIME_ENV = {
    "WEBSOCKET_RATE_LIMIT_CONNECTIONS": "100000",
    "WEBSOCKET_RATE_LIMIT_MESSAGES": "100000",
    "REALTIME_DRAIN_SECONDS": "1",
    "LOG_LEVEL": "warning",
}


@dataclass
class BenchStack:
    realtime: ServiceProcess
    auth: ServiceProcess
    boards: ServiceProcess
    audit: ServiceProcess | None = None

    def args(self) -> list[str]:
        """``liveboard bench`` flags that point at this stack."""
        return [
            "--realtime-url",
            self.realtime.url,
            "--auth-url",
            self.auth.url,
            "--boards-url",
            self.boards.url,
            "--pid",
            str(self.realtime.pid),
        ]


@pytest.fixture(scope="module")
def bench_stack(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[BenchStack]:
    logs: Path = tmp_path_factory.mktemp("bench-stack")
    ports = {name: free_port() for name in ("auth", "boards", "audit", "realtime")}
    env = {
        **base_env,
        "AUTH_SERVICE_URL": f"http://127.0.0.1:{ports['auth']}",
        "BOARDS_SERVICE_URL": f"http://127.0.0.1:{ports['boards']}",
        "LOG_LEVEL": "warning",
    }
    procs = {
        name: ServiceProcess(
            name,
            ports[name],
            {**env, **service_nats_env(name), **(REALTIME_ENV if name == "realtime" else {})},
            logs / f"{name}.log",
        )
        for name in ports
    }
    try:
        for proc in procs.values():
            proc.start(wait_ready=False)
        for proc in procs.values():
            proc.wait_ready(60)
        yield BenchStack(procs["realtime"], procs["auth"], procs["boards"], procs["audit"])
    finally:
        for proc in procs.values():
            proc.stop()
