"""The documented configuration boots as a real ``liveboard serve`` process (wave 1 crashed on
the documented comma list: pydantic-settings JSON-decoded it before any validator ran)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "origins",
    ["http://127.0.0.1:8000,http://localhost:8000", "http://localhost:8000", '["http://localhost:8000"]'],
)
def test_realtime_boots_with_the_documented_allowed_origins(service_process, origins):
    proc = service_process("realtime", WEBSOCKET_ALLOWED_ORIGINS=origins)
    assert proc.proc is not None and proc.proc.poll() is None


def test_a_bad_list_stops_start_up_with_one_line(base_env):
    done = subprocess.run(
        [sys.executable, "-m", "liveboard", "serve", "realtime", "--port", "1"],
        env={**base_env, "PATH": "/usr/bin:/bin", "WEBSOCKET_ALLOWED_ORIGINS": '["http://x'},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and "configuration error: WEBSOCKET_ALLOWED_ORIGINS=" in lines[-1], done.stderr
