"""``--start-stack``: embedded NATS + Postgres and the four services on free loopback ports.

The same machinery as ``liveboard dev`` (``DevStack``), in a temporary state directory with
fresh secrets, so a benchmark is self-contained and leaves nothing behind. Limits that would
refuse a load test from one address (connections per IP per minute, messages per connection
per minute, total connections) are raised for the run; everything else keeps its default.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from libs.common.devstack import free_port
from liveboard.dev import DevSecrets, DevStack

from .target import Target


@dataclass
class StackOptions:
    fast_path: bool = True
    realtime_workers: int = 1
    loop: str = "uvloop"  # realtime's LIVEBOARD_EVENT_LOOP: "uvloop" (serve's default) or "asyncio"
    max_connections: int = 12000
    extra_env: dict[str, str] = field(default_factory=dict)


class BenchStack(DevStack):
    """A ``DevStack`` whose realtime gets the bench's settings, workers and event loop."""

    options: StackOptions

    def _say(self, text: str) -> None:
        # Never let a closed stderr (a parent that went away) interrupt stopping the stack.
        with contextlib.suppress(OSError, ValueError):
            print(text, file=sys.stderr, flush=True)

    def quiet_env(self) -> dict[str, str]:
        return {"LOG_LEVEL": "warning", "REALTIME_DRAIN_SECONDS": "1"}

    def realtime_env(self) -> dict[str, str]:
        """realtime's environment: the stack's, with the limits that would refuse a load test raised."""
        options = self.options
        return {
            **self.service_env("realtime"),
            **self.quiet_env(),
            "WEBSOCKET_RATE_LIMIT_CONNECTIONS": "1000000",
            "WEBSOCKET_RATE_LIMIT_MESSAGES": "1000000",
            "WEBSOCKET_MAX_CONNECTIONS": str(options.max_connections),
            "REALTIME_FAST_PATH": "true" if options.fast_path else "false",
            "LIVEBOARD_EVENT_LOOP": options.loop,
            **options.extra_env,
        }

    def start_services(self) -> None:
        options = self.options
        for name in ("auth", "boards", "audit", "realtime"):
            argv = [sys.executable, "-m", "liveboard", "serve", name, "--port", str(self.ports[name])]
            if name == "realtime" and options.realtime_workers > 1:
                argv += ["--workers", str(options.realtime_workers)]
            self.children[name] = subprocess.Popen(
                argv,
                env=self.realtime_env() if name == "realtime" else {**self.service_env(name), **self.quiet_env()},
                stdin=subprocess.DEVNULL,
                stdout=open(self.state / f"{name}.log", "ab"),
                stderr=subprocess.STDOUT,
            )


def start_stack(options: StackOptions) -> tuple[BenchStack, Target]:
    """Start everything; the caller must ``stop_stack`` it (also on errors)."""
    state = Path(tempfile.mkdtemp(prefix="liveboard-bench-"))
    ports = {name: free_port() for name in ("realtime", "auth", "boards", "audit")}
    stack = BenchStack(state=state, ports=ports, nats_port=free_port(), postgres_port=free_port())
    stack.options = options
    secrets = DevSecrets.load_or_create(state)
    try:
        stack.start_servers(secrets)
        stack.migrate()
        stack.start_services()
        stack.wait_ready()
    except Exception as exc:
        logs = _log_tails(state)  # the state folder goes with the stack: keep what says why
        stop_stack(stack)
        raise RuntimeError(f"{exc}\n{logs}") from exc
    except BaseException:
        stop_stack(stack)
        raise
    target = Target(
        realtime_url=f"http://127.0.0.1:{ports['realtime']}",
        auth_url=f"http://127.0.0.1:{ports['auth']}",
        boards_url=f"http://127.0.0.1:{ports['boards']}",
        jwt_secret=stack.env["SUPABASE_JWT_SECRET"],
        issuer=stack.env["SUPABASE_JWT_ISSUER"],
    )
    return stack, target


def _log_tails(state: Path, lines: int = 30) -> str:
    tails = []
    for log in sorted(state.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"--- {log.name} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(tails)


def stop_stack(stack: BenchStack) -> None:
    try:
        stack.stop()
    finally:
        shutil.rmtree(stack.state, ignore_errors=True)
