"""Ctrl-C in a real terminal stops ``liveboard dev`` promptly and cleanly, every time.

A terminal's Ctrl-C is SIGINT to its whole foreground process group: ``liveboard dev`` and the
services it started get it at the same moment. Wave 1 started NATS and Postgres in that group too,
so they died while the services were still stopping (the outbox relay then retried against a
dead database: 1 stop in 10 took 22 s). Here ``liveboard dev`` runs on a pseudo-terminal of its
own (``pty.fork``: session leader with a controlling terminal) and the test types Ctrl-C into it.
"""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.common.devstack import free_port
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

STOPS = 10
#: What a clean stop never logs (in the stack's output or any service log).
NOISE = ("Traceback", "exception was never retrieved", "drain failed", "did not stop", "killing it")


class Terminal:
    """``liveboard dev`` on a pseudo-terminal; what it prints is collected as it comes."""

    def __init__(self, state: Path, ports: dict[str, int]) -> None:
        self.state = state
        args = [sys.executable, "-m", "liveboard", "dev", "--state-dir", str(state)]
        for name, port in ports.items():
            args += [f"--{name}-port", str(port)]
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "NATS_URL", "SUPABASE_JWT_SECRET", "SUPABASE_JWT_ISSUER")
        }
        self.output = bytearray()
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once (nothing else is safe after fork)
            os.chdir(ROOT)
            os.execve(sys.executable, args, env)
        self.pid, self.fd = pid, fd
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: the terminal's last process is gone
                return
            if not chunk:
                return
            self.output += chunk

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert time.monotonic() < deadline, f"no {needle!r} in {timeout}s:\n{self.text()[-3000:]}"
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            assert pid == 0, f"liveboard dev exited ({status}):\n{self.text()[-3000:]}\n{self.log_errors()}"
            time.sleep(0.05)

    def log_errors(self) -> str:
        """The services' error lines (what to read when one of them exited)."""
        lines = []
        for log in sorted(self.state.glob("*.log")):
            lines += [f"{log.name}: {x[:2000]}" for x in log.read_text(errors="replace").splitlines() if '"error"' in x]
        return "\n".join(lines[-10:])

    def ctrl_c(self) -> tuple[float, int]:
        """Type Ctrl-C; seconds until ``liveboard dev`` exited, and its exit status."""
        started = time.monotonic()
        os.write(self.fd, b"\x03")
        deadline = started + 60
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                took = time.monotonic() - started
                self.reader.join(5)
                os.close(self.fd)
                return took, os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        os.killpg(self.pid, signal.SIGKILL)
        raise AssertionError(f"not stopped in 60 s:\n{self.text()[-3000:]}")


def _printed_token_command_works(text: str) -> None:
    """The command ``liveboard dev`` prints for minting tokens runs as printed, from where it ran."""
    line = next(x for x in text.splitlines() if x.startswith("Mint more tokens: "))
    command = line.removeprefix("Mint more tokens: ").replace("USER_ID", "u-1").replace("EMAIL", "u1@example.com")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "LIVEBOARD_HOME"))}
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command!r}: {done.stderr}"
    assert done.stdout.count(".") == 2, done.stdout


@pytest.fixture
def state() -> Iterator[Path]:
    """Outside pytest's temp root, which any new pytest session resets to 0700 (Postgres, dropped
    from root to its own user, must traverse the path)."""
    path = Path(tempfile.mkdtemp(prefix="liveboard-dev-stop-"))
    yield path / "state"
    shutil.rmtree(path, ignore_errors=True)


def test_ctrl_c_in_a_terminal_stops_the_stack_within_5_seconds_every_time(state):
    ports = {name: free_port() for name in ("realtime", "auth", "boards", "audit", "nats", "postgres")}
    stops: list[float] = []
    for attempt in range(STOPS):
        terminal = Terminal(state, ports)
        try:
            terminal.wait_for("Ctrl-C stops everything", timeout=90)
            if attempt == 0:
                _printed_token_command_works(terminal.text())
            took, code = terminal.ctrl_c()
        finally:
            try:
                os.killpg(terminal.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stops.append(took)
        text = terminal.text()
        assert code == 0, f"stop {attempt + 1}: exit status {code}\n{text[-3000:]}"
        assert took < 5, f"stop {attempt + 1} took {took:.1f}s:\n{text[-3000:]}"
        assert "stopped" in text
        for needle in NOISE:
            assert needle not in text, f"stop {attempt + 1} printed {needle!r}:\n{text[-3000:]}"
    for log in state.glob("*.log"):
        for needle in NOISE:
            assert needle not in log.read_text(), f"{log.name} has {needle!r}:\n{log.read_text()[-3000:]}"
    print(f"\n{STOPS} Ctrl-C stops: slowest {max(stops):.2f}s, median {sorted(stops)[len(stops) // 2]:.2f}s")


def test_a_second_stack_on_the_same_state_directory_is_refused(state):
    first_ports = {name: free_port() for name in ("realtime", "auth", "boards", "audit", "nats", "postgres")}
    first = Terminal(state, first_ports)
    try:
        first.wait_for("nats-server", timeout=60)
        second = Terminal(state, {name: free_port() for name in first_ports})
        second.wait_for("in use by another liveboard dev", timeout=30)
        _, status = os.waitpid(second.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 2
        assert f"PID {first.pid}" in second.text(), second.text()
        assert "nats-server" not in second.text(), "the second stack started servers"
        first.wait_for("Ctrl-C stops everything", timeout=90)
        took, code = first.ctrl_c()
        assert code == 0 and took < 5, (took, code)
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
