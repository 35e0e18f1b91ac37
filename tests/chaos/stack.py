"""The whole stack as real processes, owned by one test: what the chaos suite kills and restarts.

nats-server (JetStream on a data directory of this test, the project's per-service users) and a
Postgres of its own, then ``liveboard serve`` for auth, boards, audit and two realtime replicas.
The second replica reaches NATS through a ``TcpProxy`` so its connection can be cut while the
process lives. Everything is started on free 127.0.0.1 ports and stopped by ``close()``, which the
fixture calls whatever happened.

The restart helpers are async (blocking waits run in threads) because the workload's clients
must keep running on the event loop while a fault is injected.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from libs.common.devstack import NatsServer, PostgresServer, free_port, nats_service_env
from tests.conftest import ISSUER, JWT_SECRET, NATS_PASSWORDS, SCOPE_SIGNING_KEY, ServiceProcess

from .proxy import TcpProxy

#: The services whose ``/readyz`` must come back after every fault.
SERVICES = ("auth", "boards", "audit", "realtime-1", "realtime-2")


@dataclass
class ChaosStack:
    root: Path
    nats: NatsServer
    postgres: PostgresServer
    proxy: TcpProxy
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    #: ``[(fault, {service: seconds until /readyz was 200 again})]``, in the order they happened.
    recoveries: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    _pg_dir: Path | None = None

    @classmethod
    async def start(cls, root: Path, *, env: dict[str, str] | None = None) -> ChaosStack:
        pg_dir = Path(tempfile.mkdtemp(prefix="liveboard-chaos-pg-"))  # see tests/conftest._postgres_dir
        nats = NatsServer(data_dir=root / "nats", port=free_port(), passwords=NATS_PASSWORDS)
        postgres = PostgresServer(data_dir=pg_dir, port=free_port())
        stack = cls(root, nats, postgres, TcpProxy(nats.host, nats.port), _pg_dir=pg_dir)
        try:
            started = await asyncio.gather(
                asyncio.to_thread(nats.start), asyncio.to_thread(postgres.start), return_exceptions=True
            )
            for outcome in started:
                if isinstance(outcome, BaseException):
                    raise outcome
            await stack.proxy.start()
            await stack._start_services(env or {})
        except BaseException:
            await stack.close()
            raise
        return stack

    def _env(self, service: str, extra: dict[str, str]) -> dict[str, str]:
        return {
            "NATS_URL": self.nats.url,
            "DATABASE_URL": self.postgres.url,
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "SUPABASE_JWT_ISSUER": ISSUER,
            "AUTH_SCOPE_SIGNING_KEY": SCOPE_SIGNING_KEY,
            "LOG_LEVEL": "info",
            "LIVEBOARD_EVENT_LOOP": "asyncio",
            **nats_service_env(service, NATS_PASSWORDS),
            **extra,
        }

    async def _start_services(self, extra: dict[str, str]) -> None:
        ports = {name: free_port() for name in SERVICES}
        auth_url, boards_url = f"http://127.0.0.1:{ports['auth']}", f"http://127.0.0.1:{ports['boards']}"
        common = {"AUTH_SERVICE_URL": auth_url, **extra}
        realtime = {
            **common,
            "BOARDS_SERVICE_URL": boards_url,
            # Every client of the test comes from 127.0.0.1 and reconnects after each fault.
            "WEBSOCKET_RATE_LIMIT_CONNECTIONS": "100000",
        }
        specs = {
            "auth": ("auth", common),
            "boards": ("boards", {**common, "BOARDS_RELAY_INTERVAL": "1"}),
            # A short ack wait: a message a killed audit had fetched comes back in seconds, not 30.
            "audit": ("audit", {**common, "AUDIT_ACK_WAIT": "2", "AUDIT_LAG_INTERVAL": "1"}),
            "realtime-1": ("realtime", realtime),
            "realtime-2": ("realtime", {**realtime, "NATS_URL": self.proxy.url}),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        for name, (service, env) in specs.items():
            self.services[name] = ServiceProcess(
                service, ports[name], self._env(service, env), self.root / f"{name}.log"
            )
        # auth first: the others exchange tokens with it at start-up.
        await self.launch("auth")
        await asyncio.gather(*(self.launch(name) for name in SERVICES if name != "auth"))

    # --- processes ------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return self.services[name].url

    async def launch(self, name: str, timeout: float = 60.0, *, wait: bool = True, **env: str) -> float:
        """Start ``name`` (with ``env`` on top of its own for this run); seconds until ready
        (``wait=False``: return at once, for a process that is meant to die soon)."""
        proc = self.services[name]
        saved = dict(proc.env)
        proc.env.update(env)
        started = time.monotonic()
        try:
            proc.start(wait_ready=False)
        finally:
            proc.env = saved
        if wait:
            await self.wait_ready(name, timeout)
        return time.monotonic() - started

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight is lost on this side."""
        proc = self.services[name].proc
        assert proc is not None and proc.poll() is None, f"{name} is not running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def pause(self, name: str) -> None:
        self.services[name].proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]

    def resume(self, name: str) -> None:
        self.services[name].proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]

    async def ready(self, name: str) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"{self.url(name)}/readyz") as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def wait_ready(self, name: str, timeout: float = 60.0) -> float:
        """Seconds until ``/readyz`` of ``name`` answers 200; fails after ``timeout``."""
        started = time.monotonic()
        proc = self.services[name]
        while not await self.ready(name):
            if proc.proc is not None and proc.proc.poll() is not None:
                raise AssertionError(
                    f"{name} exited {proc.proc.returncode}:\n{proc.log_path.read_text(errors='replace')[-3000:]}"
                )
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{name} not ready {timeout}s after the fault")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def recovered(self, fault: str, since: float, timeout: float) -> dict[str, float]:
        """Wait until every service is ready; record and return seconds from ``since`` for each."""

        async def one(name: str) -> float:
            await self.wait_ready(name, timeout)
            return round(time.monotonic() - since, 2)

        times = dict(zip(SERVICES, await asyncio.gather(*(one(name) for name in SERVICES)), strict=True))
        self.recoveries.append((fault, times))
        return times

    # --- servers --------------------------------------------------------------------------

    async def restart_nats(self, *, kill: bool = False) -> None:
        await asyncio.to_thread(self.nats.restart, kill=kill)

    async def restart_postgres(self) -> None:
        await asyncio.to_thread(self.postgres.restart)

    async def close(self) -> None:
        for proc in self.services.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in self.services.values()))
        await self.proxy.stop()
        await asyncio.to_thread(self.nats.stop)
        await asyncio.to_thread(self.postgres.stop)
        if self._pg_dir is not None:
            shutil.rmtree(self._pg_dir, ignore_errors=True)
