"""The seed document's names and start commands work as its readers expect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from libs.common.devstack import free_port, wait_for_port
from services.realtime.app import WebSocketConfig, create_test_websocket_app
from services.realtime.http_api import WS_SERVER
from services.realtime.server import WebSocketServer
from tests.conftest import service_nats_env


def test_websocket_config_takes_the_seed_field_names():
    config = WebSocketConfig(
        max_concurrent_connections=5000, enforce_authentication=True, validate_scope=True, audit_events=True
    )
    assert config.max_concurrent_connections == 5000
    assert config.rate_limit_messages == 1000 and config.max_connections_per_room == 1000


async def test_websocket_server_exposes_sio_and_stats():
    from opentelemetry.sdk.trace import TracerProvider

    server = WebSocketServer(WebSocketConfig(), TracerProvider().get_tracer("t"))
    assert server.sio is not None
    assert server.stats.active_connections == 0


async def test_create_test_websocket_app(base_env, monkeypatch, aiohttp_client):
    for name, value in {**base_env, **service_nats_env("realtime")}.items():
        monkeypatch.setenv(name, value)
    app = await create_test_websocket_app(max_concurrent_connections=7)
    client = await aiohttp_client(app)
    assert app[WS_SERVER].config.max_concurrent_connections == 7
    assert (await client.get("/api/v1/websocket/health")).status == 200


@pytest.mark.slow
def test_workers_share_one_port_and_stop_together(base_env, tmp_path):
    port = free_port()
    log = open(tmp_path / "workers.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "liveboard",
            "serve",
            "realtime",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "info",
        ],
        env={**os.environ, **base_env, **service_nats_env("realtime")},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        for _ in range(100):
            children = psutil.Process(proc.pid).children()
            if len(children) == 2:
                break
            time.sleep(0.1)
        assert len(children) == 2
        for _ in range(20):  # whichever worker the kernel picks answers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                assert response.status == 200
        pids = {child.pid for child in children}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_reload_restarts_the_worker_when_a_source_changes(base_env, tmp_path):
    pytest.importorskip("watchfiles")
    port = free_port()
    log_path = tmp_path / "reload.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "liveboard",
                "serve",
                "realtime",
                "--port",
                str(port),
                "--reload",
                "--log-level",
                "debug",
            ],
            env={**os.environ, **base_env, **service_nats_env("realtime")},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        first = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        touched = Path(__file__).resolve().parents[2] / "services" / "realtime" / "limits.py"
        touched.write_text(touched.read_text())  # same content, new mtime: a save in an editor
        for _ in range(100):
            now = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            if now and not (now & first):
                break
            time.sleep(0.1)
        assert now and not (now & first), "the worker was not restarted"
        wait_for_port(port, timeout=30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
