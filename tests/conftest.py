"""One shared test setup: a real nats-server (JetStream) and a real PostgreSQL, started once per
session from the project's own PyPI wheels, and factories for service apps and processes.

Set ``LIVEBOARD_TEST_NATS_URL`` / ``LIVEBOARD_TEST_DATABASE_URL`` to use servers you run yourself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libs.common.devstack import NatsServer, PostgresServer, free_port, nats_passwords, nats_service_env
from libs.common.nats_permissions import inbox_prefix
from libs.common.runner import SERVICES, load_app_factory
from libs.common.scopes import ScopeSigner
from liveboard.devtokens import service_role_key, user_token

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "test-secret-" + "x" * 40
ISSUER = "http://127.0.0.1:54321/auth/v1"
#: Auth's scope-token signing key for the whole session (as a Kubernetes Secret would provide it).
SCOPE_SIGNING_KEY = ScopeSigner.generate().private_pem()
#: The session's NATS users: authentication and per-service subject permissions are on in every
#: test NATS, so a service using a subject it has no grant for fails its tests.
NATS_PASSWORDS = nats_passwords()
#: Every ``ServiceProcess`` log of the session, scanned for tokens at its end (tests/security/leaks.py).
SERVICE_LOGS: list[Path] = []

pytest_plugins = ["tests.security.leaks"]


@dataclass
class ExternalServer:
    url: str
    pid: int | None = None


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer | ExternalServer]:
    url = os.environ.get("LIVEBOARD_TEST_NATS_URL")
    if url:
        yield ExternalServer(url)
        return
    server = NatsServer(data_dir=tmp_path_factory.mktemp("nats"), port=free_port(), passwords=NATS_PASSWORDS).start()
    yield server
    server.stop()
    refused = nats_refusals(server)
    assert not refused, "the session's NATS refused a service's subjects (a grant missing in " + (
        "libs/common/nats_permissions.py?):\n" + "\n".join(refused[:20])
    )


def nats_refusals(server: NatsServer) -> list[str]:
    """Permission and authorization violations in a server's log (tests that provoke them on
    purpose use a ``private_nats``)."""
    if server.log_path is None or not server.log_path.exists():
        return []
    return [line for line in server.log_path.read_text(errors="replace").splitlines() if "Violation" in line]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer | ExternalServer]:
    url = os.environ.get("LIVEBOARD_TEST_DATABASE_URL")
    if url:
        yield ExternalServer(url)
        return
    data_dir = _postgres_dir()
    server = PostgresServer(data_dir=data_dir, port=free_port()).start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer | ExternalServer) -> str:
    """For the tests' own connections: the admin user (services connect as themselves)."""
    return nats_server.admin_url if isinstance(nats_server, NatsServer) else nats_server.url


def service_nats_env(service: str) -> dict[str, str]:
    """``NATS_USER``/``NATS_PASSWORD`` of ``service`` (nothing for an external server of yours)."""
    if os.environ.get("LIVEBOARD_TEST_NATS_URL"):
        return {}
    return nats_service_env(service, NATS_PASSWORDS)


def service_connect_options(service: str) -> dict[str, Any]:
    """nats-py options that make a test's own connection act as ``service`` (its user, its inbox)."""
    env = service_nats_env(service)
    if not env:
        return {}
    return {"user": env["NATS_USER"], "password": env["NATS_PASSWORD"], "inbox_prefix": inbox_prefix(service)}


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresServer | ExternalServer) -> str:
    return postgres_server.url


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """A new, empty database for one test (for tests that own a schema's whole history)."""
    import asyncio

    import asyncpg

    name = "t_" + uuid.uuid4().hex[:12]
    base, _, _ = database_url.rpartition("/")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, for tests that stop or kill it (same users as the session's;
    connect to it yourself with ``.admin_url``)."""
    server = NatsServer(data_dir=tmp_path / "nats", port=free_port(), passwords=NATS_PASSWORDS).start()
    yield server
    server.stop()


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A Postgres of this test's own, for tests that stop or kill it."""
    data_dir = _postgres_dir()
    server = PostgresServer(data_dir=data_dir, port=free_port()).start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def _postgres_dir() -> Path:
    """Outside pytest's temp root: as root, Postgres runs as another user that must traverse the
    path, and every new pytest session resets that root to mode 0700."""
    return Path(tempfile.mkdtemp(prefix="liveboard-pg-"))


@dataclass
class Tokens:
    """Supabase-format tokens signed with the test secret."""

    secret: str = JWT_SECRET
    issuer: str = ISSUER

    def user(self, sub: str | None = None, email: str | None = None, **kwargs: Any) -> str:
        sub = sub or str(uuid.uuid4())
        return user_token(self.secret, sub, email or f"{sub[:8]}@example.com", issuer=self.issuer, **kwargs)

    def service_role(self) -> str:
        return service_role_key(self.secret)


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture(scope="session")
def base_env(nats_server: NatsServer | ExternalServer, database_url: str) -> dict[str, str]:
    """The environment every service gets in tests (plus its own NATS user: ``service_nats_env``)."""
    return {
        "NATS_URL": nats_server.url,
        "DATABASE_URL": database_url,
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "SUPABASE_JWT_ISSUER": ISSUER,
        "AUTH_SCOPE_SIGNING_KEY": SCOPE_SIGNING_KEY,
        "LOG_LEVEL": "info",
    }


@pytest.fixture
def service_settings(base_env: dict[str, str]) -> Callable[..., Any]:
    """``service_settings("boards", FIELD=value)``: that service's Settings for the test servers."""

    def build(service: str, **overrides: Any) -> Any:
        _, settings_cls = load_app_factory(SERVICES[service])
        values: dict[str, Any] = {k.lower(): v for k, v in {**base_env, **service_nats_env(service)}.items()}
        values["service_name"] = service
        values.update(overrides)
        return settings_cls(**values)

    return build


@pytest.fixture
def make_app(service_settings: Callable[..., Any]) -> Callable[..., Any]:
    """``make_app("auth", **settings)``: the service's real app from its factory (not started)."""

    def build(service: str, **overrides: Any) -> Any:
        create_app, _ = load_app_factory(SERVICES[service])
        return create_app(service_settings(service, **overrides))

    return build


@dataclass
class ServiceProcess:
    """A service running as ``liveboard serve`` in a child process (for kill/restart tests)."""

    service: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> ServiceProcess:
        SERVICE_LOGS.append(self.log_path)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "liveboard", "serve", self.service, "--port", str(self.port), *self.extra_args],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.service} exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.service} not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def service_process(base_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """``service_process("boards", ENV=value)`` starts ``liveboard serve boards`` on a free port."""
    started: list[ServiceProcess] = []

    def start(
        service: str, *, start: bool = True, port: int | None = None, args: list[str] | None = None, **env: str
    ) -> ServiceProcess:
        proc = ServiceProcess(
            service,
            port or free_port(),
            {**base_env, **service_nats_env(service), **env},
            tmp_path / f"{service}-{len(started)}.log",
            extra_args=list(args or []),
        )
        started.append(proc)
        return proc.start() if start else proc

    yield start
    for proc in started:
        proc.stop()
