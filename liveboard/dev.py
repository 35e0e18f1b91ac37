"""``liveboard dev``: the whole stack on one machine, with real NATS and Postgres from PyPI wheels.

State (data directories, generated secrets) lives under ``.liveboard/`` so a second run reuses
it. Environment values (``DATABASE_URL``, ``NATS_URL``, ``SUPABASE_JWT_SECRET``, ...) win over
what is kept there. Ctrl-C, SIGINT or SIGTERM stops the services, then NATS and Postgres (every
child runs in a session of its own, so a terminal's Ctrl-C reaches only this process and the
servers outlive the services that need them while stopping); nothing is orphaned.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from libs.common.devstack import (
    NatsServer,
    PortInUseError,
    PostgresServer,
    nats_passwords,
    nats_service_env,
    port_is_free,
)

from .devtokens import DEV_ISSUER, service_role_key, user_token
from .seed import DEMO_BOARD, DEMO_USERS, SeedError, seed_demo


@dataclass
class DevSecrets:
    jwt_secret: str
    issuer: str
    scope_signing_key: str
    #: The embedded NATS's users (each service's and ``admin``), as in Kubernetes.
    nats_passwords: dict[str, str] = field(default_factory=nats_passwords)

    @classmethod
    def load_or_create(cls, state: Path) -> DevSecrets:
        path = state / "secrets.json"
        if path.exists():
            kept = json.loads(path.read_text())
            made = cls(**kept)
            if "nats_passwords" not in kept:  # state from before NATS authentication
                made.save(path)
            return made
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        made = cls(jwt_secret=secrets.token_urlsafe(48), issuer=DEV_ISSUER, scope_signing_key=pem)
        state.mkdir(parents=True, exist_ok=True)
        made.save(path)
        return made

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__))
        path.chmod(0o600)


@dataclass
class DevStack:
    state: Path
    ports: dict[str, int]
    nats_port: int = 4222
    postgres_port: int = 54322
    env: dict[str, str] = field(default_factory=dict)
    nats: NatsServer | None = None
    postgres: PostgresServer | None = None
    children: dict[str, subprocess.Popen] = field(default_factory=dict)

    def _say(self, text: str) -> None:
        print(text, flush=True)

    def start_servers(self, secrets_: DevSecrets) -> None:
        for name, port in self.ports.items():
            if not port_is_free(port):
                raise PortInUseError(port, f"the {name} service")
        nats_url = os.environ.get("NATS_URL")
        if not nats_url:
            self.nats = NatsServer(
                data_dir=self.state / "nats", port=self.nats_port, passwords=secrets_.nats_passwords
            ).start()
            nats_url = self.nats.url
            self._say(
                f"nats-server   {nats_url}  (JetStream, per-service users; admin: {self.nats.admin_url}; "
                f"data in {self.state / 'nats'})"
            )
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            self.postgres = PostgresServer(data_dir=self.state / "postgres", port=self.postgres_port).start()
            database_url = self.postgres.url
            self._say(f"postgres      {database_url}  (data in {self.state / 'postgres'})")
        self.env = {
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "SUPABASE_JWT_SECRET": os.environ.get("SUPABASE_JWT_SECRET", secrets_.jwt_secret),
            "SUPABASE_JWT_ISSUER": os.environ.get("SUPABASE_JWT_ISSUER", secrets_.issuer),
            "AUTH_SCOPE_SIGNING_KEY": os.environ.get("AUTH_SCOPE_SIGNING_KEY", secrets_.scope_signing_key),
            "AUTH_SERVICE_URL": f"http://127.0.0.1:{self.ports['auth']}",
            "BOARDS_SERVICE_URL": f"http://127.0.0.1:{self.ports['boards']}",
        }

    def migrate(self) -> None:
        from .migrate import migrate_all

        applied = migrate_all(self.env["DATABASE_URL"])
        self._say(
            f"migrations    {sum(len(v) for v in applied.values())} applied "
            f"({', '.join(f'{k}: {len(v)}' for k, v in applied.items())})"
        )

    def service_env(self, name: str) -> dict[str, str]:
        """What service ``name`` is started with: the stack's settings and its own NATS user."""
        passwords = self.nats.passwords if self.nats is not None else None
        return dict(os.environ, **self.env, **nats_service_env(name, passwords))

    def start_services(self) -> None:
        for name in ("auth", "boards", "audit", "realtime"):
            self.children[name] = subprocess.Popen(
                [sys.executable, "-m", "liveboard", "serve", name, "--port", str(self.ports[name])],
                env=self.service_env(name),
                stdin=subprocess.DEVNULL,
                stdout=open(self.state / f"{name}.log", "ab"),
                stderr=subprocess.STDOUT,
                # Sessions of their own, like NATS and Postgres: a terminal's Ctrl-C reaches only
                # this process, which stops the services (one SIGTERM each) and then the servers.
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.children)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                child = self.children[name]
                if child.poll() is not None:
                    raise RuntimeError(f"{name} exited with {child.returncode}; see {self.state / (name + '.log')}")
                if _ready(self.ports[name]):
                    pending.discard(name)
                    self._say(f"{name:<13} http://127.0.0.1:{self.ports[name]}  ready")
            time.sleep(0.2)
        if pending:
            raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in self.children.items():
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                self._say(f"{name} did not stop in 20 s; killing it")
                child.kill()
                child.wait(5)
        for server in (self.postgres, self.nats):
            if server is not None:
                server.stop()

    def watch(self) -> int:
        """Block until a signal or a child dies; the exit status says which."""
        while True:
            for name, child in self.children.items():
                if child.poll() is not None:
                    self._say(f"{name} exited with {child.returncode}; stopping the stack")
                    return 1
            time.sleep(0.5)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class _Stop(Exception):
    pass


class StateInUse(Exception):
    pass


def _hold_state(state: Path) -> IO[str]:
    """An exclusive lock on ``state`` for as long as this stack runs (the kernel drops it when the
    process ends, however it ends): two stacks on one state directory would run two nats-servers
    on one JetStream directory and two Postgres on one data directory."""
    handle = open(state / "dev.lock", "a+")  # held until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StateInUse(
            f"{state} is in use by another liveboard dev (PID {holder}); stop it, or give this one "
            "its own --state-dir (and other ports)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _command(name: str) -> str:
    """How to run the ``liveboard`` console script from here, as the user can type it."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        return f"{Path(sys.executable).name} -m liveboard"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def run_dev(state: Path, ports: dict[str, int], nats_port: int, postgres_port: int) -> int:
    started = time.monotonic()
    state = state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    try:
        lock = _hold_state(state)
    except StateInUse as exc:
        print(f"liveboard dev: {exc}", flush=True)
        return 2
    secrets_ = DevSecrets.load_or_create(state)
    stack = DevStack(state=state, ports=ports, nats_port=nats_port, postgres_port=postgres_port)

    def on_signal(signum: int, _frame: Any) -> None:
        raise _Stop(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        stack.start_servers(secrets_)
        stack.migrate()
        stack.start_services()
        stack.wait_ready()
        secret = stack.env["SUPABASE_JWT_SECRET"]
        issuer = stack.env["SUPABASE_JWT_ISSUER"]
        try:
            board_id = seed_demo(
                stack.ports,
                service_role_key(secret),
                say=stack._say,
                user_token=lambda user: user_token(secret, user.id, user.email, issuer=issuer, ttl=600),
            )
        except SeedError as exc:  # the stack is still useful; say plainly what is missing
            board_id = DEMO_BOARD
            stack._say(f"demo data not seeded: {exc}")
        stack._say(f"\nLiveboard is up in {time.monotonic() - started:.1f}s. Ctrl-C stops everything.\n")
        for user in DEMO_USERS:
            token = user_token(secret, user.id, user.email, issuer=issuer, ttl=12 * 3600)
            stack._say(
                f"{user.name:<6} ({user.role:<6}) http://127.0.0.1:{ports['realtime']}/#token={token}&board={board_id}"
            )
        stack._say("\nservice_role key: " + service_role_key(secret))
        home = "" if state == Path(".liveboard").resolve() else f"LIVEBOARD_HOME={shlex.quote(str(state))} "
        stack._say(f"Mint more tokens: {home}{_command('liveboard')} token --sub USER_ID --email EMAIL")
        code = stack.watch()
    except _Stop:
        stack._say("\nstopping ...")
    except PortInUseError as exc:
        stack._say(f"liveboard dev: {exc}")
        code = 2
    except Exception as exc:
        stack._say(f"liveboard dev: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        stack._say("stopped")
        lock.close()
    return code
