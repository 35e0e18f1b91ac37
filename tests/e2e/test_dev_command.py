"""``liveboard dev`` as a user runs it: a subprocess without a TTY, stopped with SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from libs.common.devstack import free_port

pytestmark = pytest.mark.slow


def start_dev(state: Path, ports: dict[str, int], log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "liveboard", "dev", "--state-dir", str(state)]
    for name, port in ports.items():
        args += [f"--{name}-port", str(port)]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "NATS_URL", "SUPABASE_JWT_SECRET", "SUPABASE_JWT_ISSUER")
    }
    return subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def wait_healthy(proc: subprocess.Popen, ports: dict[str, int], log: Path, timeout: float = 60.0) -> float:
    started = time.monotonic()
    pending = {name for name in ports if name not in ("nats", "postgres")}
    while pending and time.monotonic() - started < timeout:
        assert proc.poll() is None, log.read_text()
        for name in list(pending):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports[name]}/readyz", timeout=1) as r:
                    if r.status == 200:
                        pending.discard(name)
            except OSError:
                pass
        time.sleep(0.2)
    assert not pending, f"not healthy: {pending}\n{log.read_text()}"
    while "Ctrl-C stops everything" not in log.read_text():
        assert time.monotonic() - started < timeout, log.read_text()
        time.sleep(0.1)
    return time.monotonic() - started


def stop_with_sigint(proc: subprocess.Popen) -> list[psutil.Process]:
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(60) == 0
    return tree


def test_dev_starts_four_healthy_services_and_sigint_leaves_nothing(tmp_path):
    ports = {
        "realtime": free_port(),
        "auth": free_port(),
        "boards": free_port(),
        "audit": free_port(),
        "nats": free_port(),
        "postgres": free_port(),
    }
    state = tmp_path / "state"
    log = tmp_path / "dev.log"
    proc = start_dev(state, ports, log)
    try:
        took = wait_healthy(proc, ports, log)
        assert took < 60
        text = log.read_text()
        assert "#token=" in text and "service_role key" in text
        tree = stop_with_sigint(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    names = {p.pid: " ".join(p.cmdline()[:4]) for p in tree if p.is_running()}
    assert len(tree) >= 6  # four services, nats-server, postgres (and its workers)
    time.sleep(0.5)
    alive = [
        pid
        for pid in (p.pid for p in tree)
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], names
    assert (state / "secrets.json").exists()

    # A second run reuses the data directory and the generated secrets.
    secrets_before = (state / "secrets.json").read_text()
    proc = start_dev(state, ports, log)
    try:
        wait_healthy(proc, ports, log)
        stop_with_sigint(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (state / "secrets.json").read_text() == secrets_before


def test_dev_names_a_port_in_use(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    ports = {
        "realtime": free_port(),
        "auth": port,
        "boards": free_port(),
        "audit": free_port(),
        "nats": free_port(),
        "postgres": free_port(),
    }
    log = tmp_path / "dev.log"
    try:
        proc = start_dev(tmp_path / "state", ports, log)
        assert proc.wait(60) == 2
    finally:
        busy.close()
    assert f"port {port} is already in use" in log.read_text()
