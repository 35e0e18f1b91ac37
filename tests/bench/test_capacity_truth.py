"""``liveboard bench capacity`` tells the truth about the sockets it holds: against a realtime whose
idle timeout (``WEBSOCKET_CONNECTION_TIMEOUT``) is 2 s, its keepalives hold every socket well
past it; without them, every socket the server closes is reported with its reason and the run
fails (exit status 1) instead of reporting figures for sockets it no longer holds."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.common.devstack import free_port
from tests.conftest import ISSUER, JWT_SECRET, ROOT, ServiceProcess, service_nats_env

from .conftest import REALTIME_ENV

pytestmark = pytest.mark.slow

IDLE_TIMEOUT = 2


@pytest.fixture(scope="module")
def impatient_realtime(
    bench_stack: Any, base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A realtime of its own next to the bench stack's auth and boards, closing idle sockets at 2 s."""
    env = {
        **base_env,
        **service_nats_env("realtime"),
        **REALTIME_ENV,
        "AUTH_SERVICE_URL": bench_stack.auth.url,
        "BOARDS_SERVICE_URL": bench_stack.boards.url,
        "WEBSOCKET_CONNECTION_TIMEOUT": str(IDLE_TIMEOUT),
    }
    proc = ServiceProcess("realtime", free_port(), env, tmp_path_factory.mktemp("impatient") / "realtime.log")
    proc.start(timeout=60)
    try:
        yield proc
    finally:
        proc.stop()


def capacity(stack: Any, realtime: ServiceProcess, tmp_path: Path, *flags: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "capacity.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "liveboard",
            "bench",
            "capacity",
            "--connections",
            "6",
            "--room-size",
            "3",
            "--settle-window",
            "1",
            "--settle-timeout",
            "10",
            *flags,
            "--realtime-url",
            realtime.url,
            "--auth-url",
            stack.auth.url,
            "--boards-url",
            stack.boards.url,
            "--pid",
            str(realtime.pid),
            "--jwt-secret",
            JWT_SECRET,
            "--issuer",
            ISSUER,
            "--processes",
            "1",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result == json.loads(done.stdout.strip().splitlines()[-1])
    return done.returncode, result, done.stdout + done.stderr


def test_keepalives_hold_every_socket_past_the_idle_timeout(bench_stack, impatient_realtime, tmp_path):
    code, result, output = capacity(bench_stack, impatient_realtime, tmp_path, "--hold", "5", "--keepalive", "0.5")
    assert code == 0, output
    assert result["connected"] == result["joined"] == 6
    assert result["held_s"] > 2 * IDLE_TIMEOUT  # held well past the server's idle timeout
    assert result["closed_during_run"] == 0 and result["open_at_end"] == 6 and result["failures"] == []
    assert result["keepalives"]["acked"] >= 6 and result["keepalives"]["refused"] == 0
    assert result["settled"] and result["baseline_cpu_pct"] is not None


def test_sockets_the_server_closes_are_reported_with_their_reason_and_fail_the_run(
    bench_stack, impatient_realtime, tmp_path
):
    code, result, output = capacity(bench_stack, impatient_realtime, tmp_path, "--hold", "4", "--keepalive", "0")
    assert code == 1, output
    assert result["closed_during_run"] == 6 and result["open_at_end"] == 0
    assert len(result["closed"]) == 6
    for closed in result["closed"]:
        assert closed["notice"].startswith("session_expired") and "idle" in closed["notice"], closed
        assert closed["after_s"] >= IDLE_TIMEOUT
    assert "FAILED: 6 of the 6 sockets the bench held were closed during the run" in output
    assert "sockets closed by the server during the run" in output
