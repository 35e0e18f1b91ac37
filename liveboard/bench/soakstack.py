"""``liveboard bench soak --start-stack``: the stack as processes the bench may kill and restart.

Embedded nats-server (JetStream on a data directory) and Postgres, then ``liveboard serve`` for
auth, boards, audit and **two realtime replicas**, all on free 127.0.0.1 ports in a temporary
state directory (``BenchStack``'s, so limits that would refuse a load test from one address are
raised the same way). Every process is a child of the bench, so the faults are real: ``kill -9``,
a nats-server stop and start on the same data directory, a Postgres fast shutdown and start.

The methods are async (blocking waits run in threads) so the workload's clients keep running on
the event loop while a fault is injected; they are the interface ``faults.py`` works against.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from libs.common.devstack import free_port
from liveboard.dev import DevSecrets

from .stack import BenchStack, StackOptions, _log_tails, stop_stack
from .target import Target

#: The services whose ``/readyz`` must come back after every fault.
SERVICES = ("auth", "boards", "audit", "realtime-1", "realtime-2")


class SoakStack(BenchStack):
    #: ``[(fault, {service: seconds until /readyz was 200 again})]``, in the order they happened.
    recoveries: list[tuple[str, dict[str, float]]]

    def env_of(self, name: str) -> dict[str, str]:
        service = name.split("-")[0]
        if service == "realtime":
            return self.realtime_env()
        env = {**self.service_env(service), **self.quiet_env()}
        if service == "boards":
            env["BOARDS_RELAY_INTERVAL"] = "1"
        if service == "audit":
            # A message a killed audit had fetched comes back after 5 s, not 30.
            env.update(AUDIT_ACK_WAIT="5", AUDIT_LAG_INTERVAL="1")
        return env

    def start_services(self) -> None:
        for name in SERVICES:
            self.spawn(name)

    def spawn(self, name: str) -> None:
        service = name.split("-")[0]
        with open(self.state / f"{name}.log", "ab") as log:
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "liveboard", "serve", service, "--port", str(self.ports[name])],
                env=self.env_of(name),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # --- what the faults use ----------------------------------------------------------------

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight is lost on this side."""
        child = self.children[name]
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait(10)

    async def launch(self, name: str, timeout: float = 60.0) -> float:
        """Start ``name`` again; seconds until it is ready."""
        started = time.monotonic()
        self.spawn(name)
        await self.wait_ready_one(name, timeout)
        return time.monotonic() - started

    async def restart_nats(self, *, kill: bool = False) -> None:
        assert self.nats is not None
        await asyncio.to_thread(self.nats.restart, kill=kill)

    async def restart_postgres(self) -> None:
        assert self.postgres is not None
        await asyncio.to_thread(self.postgres.restart)

    async def ready(self, name: str) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"{self.url(name)}/readyz") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_ready_one(self, name: str, timeout: float = 60.0) -> float:
        """Seconds until ``/readyz`` of ``name`` answers 200; ``TimeoutError`` after ``timeout``."""
        started = time.monotonic()
        while not await self.ready(name):
            child = self.children[name]
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited {child.returncode}; see {self.state / (name + '.log')}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{name} not ready {timeout:g}s after the fault")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def recovered(self, fault: str, since: float, timeout: float) -> dict[str, float]:
        """Wait until every service is ready; seconds from ``since`` for each."""

        async def one(name: str) -> float:
            await self.wait_ready_one(name, timeout)
            return round(time.monotonic() - since, 2)

        times = dict(zip(SERVICES, await asyncio.gather(*(one(name) for name in SERVICES)), strict=True))
        self.recoveries.append((fault, times))
        return times

    def log_tails(self, lines: int = 30) -> str:
        return _log_tails(self.state, lines)


def start_soak_stack(options: StackOptions) -> tuple[SoakStack, Target]:
    """Start everything; the caller must ``stop_stack`` it (also on errors)."""
    state = Path(tempfile.mkdtemp(prefix="liveboard-soak-"))
    ports = {name: free_port() for name in SERVICES}
    stack = SoakStack(state=state, ports=ports, nats_port=free_port(), postgres_port=free_port())
    stack.options = options
    stack.recoveries = []
    secrets = DevSecrets.load_or_create(state)
    try:
        stack.start_servers(secrets)
        stack.migrate()
        stack.start_services()
        stack.wait_ready(120)
    except Exception as exc:
        logs = _log_tails(state)
        stop_stack(stack)
        raise RuntimeError(f"{exc}\n{logs}") from exc
    except BaseException:
        stop_stack(stack)
        raise
    target = Target(
        realtime_url=stack.url("realtime-1"),
        auth_url=stack.url("auth"),
        boards_url=stack.url("boards"),
        jwt_secret=stack.env["SUPABASE_JWT_SECRET"],
        issuer=stack.env["SUPABASE_JWT_ISSUER"],
    )
    return stack, target
