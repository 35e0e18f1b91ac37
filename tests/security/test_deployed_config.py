"""Every documented configuration boots as deployed (wave 1's documented origin list crashed
realtime at start-up, and no test had started a service with the environment it is deployed with).

* **Kubernetes**: each overlay is rendered with ``kubectl kustomize``; each pod's environment is
  built the way the kubelet builds it (``envFrom`` in order, then ``env`` with ``$(VAR)``
  expansion, ``secretKeyRef``/``configMapKeyRef``/``fieldRef``) from the rendered ConfigMaps and
  Secrets — for prod, from the objects docs/deploy.md tells the operator to create, parsed from
  its commands. The NATS StatefulSet runs as its replicas (3 nats-servers in a JetStream cluster
  for prod) with the rendered ``nats.conf`` and ``permissions.conf`` and the Secret's passwords;
  the migration Job and each pod's ``migrate`` init container run first; then every Deployment
  runs as ``liveboard serve`` with exactly its pod environment and its manifest's arguments.
  Only addresses change: cluster DNS names (``nats``, ``auth``, ``otel-collector``, the
  database host) become the loopback ports of the processes standing in for them, and
  ``--host``/``--port`` become 127.0.0.1 and a free port. Each ``/readyz`` must answer 200, and a
  user then works through the whole path: organization, board, socket (from an allowed Origin;
  another Origin is refused), a card, its audit row, and spans at the collector.
* **README**: every variable of the configuration table, set to an example of its documented
  form, boots the services that read it; and every variable a service reads is in the table.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import socketio

from libs.common.devstack import free_port, nats_server_binary, wait_for_port
from libs.common.runner import SERVICES, load_app_factory
from libs.common.scopes import ScopeSigner
from libs.common.settings import CommonSettings, env_name
from liveboard.devtokens import user_token
from tests.conftest import JWT_SECRET, ROOT, SERVICE_LOGS, service_nats_env
from tests.deploy.k8s import KUBECTL, WORKLOAD_KINDS, is_our_image, of_kind, render

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed"),
]

Obj = dict[str, Any]

#: What a service's process gets besides its pod environment: a program search path.
PROCESS_BASE = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp"}

# --------------------------------------------------------------------------------------------
# the kubelet's part: objects and pod environments


def operator_objects() -> dict[str, dict[str, str]]:
    """The Secrets and ConfigMaps docs/deploy.md tells a prod operator to create, from its
    ``kubectl create`` commands (so the test follows the documentation, not a copy of it)."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    block = text.split("### Secrets and site configuration", 1)[1].split("```", 2)[1]
    commands = re.sub(r"\\\n\s*", " ", block)
    objects: dict[str, dict[str, str]] = {}
    key = ScopeSigner.generate().private_pem()
    for line in commands.splitlines():
        line = line.split(" # ", 1)[0].strip()
        if " create secret generic " not in line and " create configmap " not in line:
            continue
        words = shlex.split(line.replace('"$(openssl rand -base64 32)"', uuid.uuid4().hex))
        name = words[words.index("generic") + 1] if "generic" in words else words[words.index("configmap") + 1]
        data: dict[str, str] = {}
        for word in words:
            if word.startswith("--from-literal="):
                name_, _, value = word.removeprefix("--from-literal=").partition("=")
                data[name_] = value if "openssl" not in value else uuid.uuid4().hex
            elif word.startswith("--from-file="):
                name_, _, path = word.removeprefix("--from-file=").partition("=")
                assert path.endswith(".pem"), f"docs/deploy.md: unexpected file {path}"
                data[name_] = key
        objects[name] = data
    assert {"liveboard-secrets", "liveboard-nats", "liveboard-site"} <= set(objects), objects.keys()
    return objects


def object_data(rendered: tuple[Obj, ...], overlay: str) -> dict[str, dict[str, str]]:
    """ConfigMap and Secret contents by name (Secrets decoded), plus the operator's for prod."""
    found: dict[str, dict[str, str]] = {}
    for obj in of_kind(rendered, "ConfigMap", "Secret"):
        data = dict(obj.get("data") or {})
        if obj["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            data.update(obj.get("stringData") or {})
        found[obj["metadata"]["name"]] = data
    if overlay == "prod":
        for name, data in operator_objects().items():
            assert name not in found, f"{name} is committed in prod (the operator creates it)"
            found[name] = data
    return found


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def pod_env(container: Obj, objects: dict[str, dict[str, str]], pod_name: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it (a missing non-optional source is
    what keeps a pod from starting: an assertion here)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        assert ref is not None, source
        if ref["name"] not in objects:
            assert ref.get("optional"), f"{container['name']}: envFrom {ref['name']} does not exist"
            continue
        env.update({source.get("prefix", "") + k: v for k, v in objects[ref["name"]].items()})
    fields = {"metadata.name": pod_name, "metadata.namespace": "liveboard", "spec.nodeName": "node-0"}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _REF.sub(lambda m: env.get(m.group(1), m.group(0)), item["value"])
            continue
        source = item["valueFrom"]
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
        if ref is not None:
            value = objects.get(ref["name"], {}).get(ref["key"])
            if value is None:
                assert ref.get("optional"), f"{container['name']}: {item['name']} from a missing {ref}"
                continue
            env[item["name"]] = value
        elif "fieldRef" in source:
            env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
        else:
            raise AssertionError(f"{container['name']}: unsupported env source {source}")
    return env


def readdress(url: str, addresses: dict[str, str]) -> str:
    """``url`` with its ``host[:port]`` replaced by the stand-in's (comma lists item by item)."""
    if "," in url:
        return ",".join(readdress(part, addresses) for part in url.split(","))
    parts = urlsplit(url)
    host = parts.hostname or ""
    where = addresses.get(f"{host}:{parts.port}") or addresses.get(host)
    if where is None:
        return url
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@{where}" if auth else where))


# --------------------------------------------------------------------------------------------
# stand-ins: a NATS cluster from the rendered config, an OTLP collector


class NatsFromManifest:
    """The nats StatefulSet's replicas as local nats-servers with the rendered configuration."""

    def __init__(self, rendered: tuple[Obj, ...], objects: dict[str, dict[str, str]], directory: Path) -> None:
        sts = next(o for o in of_kind(rendered, "StatefulSet") if o["metadata"]["name"] == "nats")
        self.replicas = int(sts["spec"].get("replicas", 1))
        self.container = sts["spec"]["template"]["spec"]["containers"][0]
        config = next(c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"].startswith("nats-config"))
        self.files: dict[str, str] = config["data"]
        self.objects = objects
        self.directory = directory
        self.ports = [free_port() for _ in range(self.replicas)]
        self.cluster_ports = [free_port() for _ in range(self.replicas)]
        self.http_ports = [free_port() for _ in range(self.replicas)]
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.ports)

    def _config(self, i: int) -> str:
        text = self.files["nats.conf"]
        text = text.replace("0.0.0.0:6222", f"127.0.0.1:{self.cluster_ports[i]}")
        text = text.replace("0.0.0.0:4222", f"127.0.0.1:{self.ports[i]}")
        text = text.replace("0.0.0.0:8222", f"127.0.0.1:{self.http_ports[i]}")
        text = re.sub(r"pid_file: .*", f'pid_file: "{self.directory}/nats-{i}.pid"', text)
        text = re.sub(r"store_dir: .*", f'store_dir: "{self.directory}/data-{i}"', text)
        for k in range(self.replicas):
            text = text.replace(f"nats-{k}.nats-headless:6222", f"127.0.0.1:{self.cluster_ports[k]}")
        settings = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        assert not re.search(r"nats-headless|0\.0\.0\.0|/data/|/var/run", settings), settings
        return text

    def start(self) -> NatsFromManifest:
        for name, content in self.files.items():
            (self.directory / name).write_text(content)
        for i in range(self.replicas):
            path = self.directory / f"nats-{i}.conf"
            path.write_text(self._config(i))
            env = {**PROCESS_BASE, **pod_env(self.container, self.objects, f"nats-{i}")}
            log = open(self.directory / f"nats-{i}.log", "wb")
            self.procs.append(
                subprocess.Popen(
                    [nats_server_binary(), "--config", str(path)],
                    env=env,
                    cwd=self.directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for i, proc in enumerate(self.procs):
            wait_for_port(self.ports[i], timeout=20, proc=proc)
        self._wait_jetstream()
        return self

    def _wait_jetstream(self, timeout: float = 30.0) -> None:
        """JetStream (and for a cluster, its meta leader) up on every server."""
        deadline = time.monotonic() + timeout
        pending = set(range(self.replicas))
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.http_ports[i]}/healthz", timeout=1) as r:
                        if r.status == 200:
                            pending.discard(i)
                except OSError:
                    pass
            time.sleep(0.2)
        assert not pending, f"nats servers {pending} not healthy: " + self.log_tail()

    def log_tail(self) -> str:
        return "\n".join((self.directory / f"nats-{i}.log").read_text()[-1500:] for i in range(self.replicas))

    def refusals(self) -> list[str]:
        lines = []
        for i in range(self.replicas):
            lines += [x for x in (self.directory / f"nats-{i}.log").read_text().splitlines() if "Violation" in x]
        return lines

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


class Collector:
    """An OTLP/HTTP endpoint that keeps what it is sent (the otel-collector's stand-in)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------------
# the pods


class Pod:
    """One Deployment's serving container as a ``liveboard serve`` process."""

    def __init__(self, service: str, port: int, args: list[str], env: dict[str, str], log: Path) -> None:
        self.service, self.port, self.args, self.env, self.log = service, port, args, env, log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Pod:
        SERVICE_LOGS.append(self.log)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "liveboard", *self.args],
                env={**PROCESS_BASE, **self.env},
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.service} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                last = exc.read()[:500]
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"{self.service} /readyz not 200 in {timeout}s ({last}):\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "liveboard", *args],
        env={**PROCESS_BASE, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def _serving_containers(rendered: tuple[Obj, ...]) -> Iterator[tuple[Obj, Obj]]:
    for workload in of_kind(rendered, *WORKLOAD_KINDS):
        spec = workload["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec["containers"]:
            if is_our_image(container.get("image", "")):
                yield workload, container


def _serve_args(container: Obj, port: int) -> list[str]:
    """The container's command line for ``python -m liveboard``, bound to 127.0.0.1:``port``."""
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[0] == "liveboard", argv
    argv = argv[1:]
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_each_overlay_boots_as_deployed(overlay: str, fresh_database: str, tmp_path: Path):
    rendered = render(f"overlays/{overlay}")
    objects = object_data(rendered, overlay)
    nats = NatsFromManifest(rendered, objects, tmp_path).start()
    collector = Collector()
    ports = {svc: free_port() for svc in SERVICES}
    database = urlsplit(fresh_database)
    addresses = {
        "otel-collector": f"127.0.0.1:{collector.port}",
        "otel-collector.observability": f"127.0.0.1:{collector.port}",
        **{svc: f"127.0.0.1:{port}" for svc, port in ports.items()},
    }

    def environment(container: Obj, pod: str) -> dict[str, str]:
        env = pod_env(container, objects, pod)
        for name in ("AUTH_SERVICE_URL", "BOARDS_SERVICE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
            if name in env:
                env[name] = readdress(env[name], addresses)
        if "NATS_URL" in env:  # the `nats` Service spreads clients over every replica
            assert urlsplit(env["NATS_URL"]).hostname == "nats", env["NATS_URL"]
            env["NATS_URL"] = nats.url
        if "DATABASE_URL" in env:  # the deployed DSN's database, on the test's server
            assert urlsplit(env["DATABASE_URL"]).scheme.startswith("postgres"), env["DATABASE_URL"]
            env["DATABASE_URL"] = urlunsplit(database)
        return env

    pods: dict[str, Pod] = {}
    try:
        containers = list(_serving_containers(rendered))
        # the migration Job, then each pod's init containers (kubectl applies them in any order)
        for workload, container in sorted(containers, key=lambda wc: wc[0]["kind"] != "Job"):
            argv = [*container.get("command", []), *container.get("args", [])]
            if argv[:2] == ["liveboard", "migrate"]:
                _run(argv[1:], environment(container, workload["metadata"]["name"]), f"{workload['metadata']['name']}")
        for _workload, container in containers:
            argv = [*container.get("command", []), *container.get("args", [])]
            if argv[:2] != ["liveboard", "serve"]:
                continue
            service = argv[2]
            env = environment(container, f"{service}-0")
            assert env.get("LIVEBOARD_MIGRATE_ON_START") == "false", "pods migrate in init containers"
            pods[service] = Pod(
                service, ports[service], _serve_args(container, ports[service]), env, tmp_path / f"{service}.log"
            )
        assert set(pods) == set(SERVICES), f"Deployments running liveboard serve: {sorted(pods)}"
        for pod in pods.values():
            pod.start()
        for pod in pods.values():
            body = pod.ready()
            assert body["status"] == "ready", body
        asyncio.run(_work_through(pods, overlay))
    finally:
        for pod in pods.values():
            pod.stop()
        collector.stop()
        nats.stop()
    for pod in pods.values():
        log = pod.log.read_text()
        assert "Traceback" not in log, f"{pod.service}:\n{log[-3000:]}"
    assert not nats.refusals(), nats.refusals()
    exported = b"".join(collector.bodies)
    for service in SERVICES:
        assert service.encode() in exported, f"no spans from {service} reached the collector"


async def _work_through(pods: dict[str, Pod], overlay: str) -> None:
    """One user, end to end, with the deployed settings: organization, board, socket, card, audit."""
    env = pods["auth"].env
    assert env.get("SUPABASE_JWT_SECRET"), "both overlays document an HS256 secret"
    token = user_token(
        env["SUPABASE_JWT_SECRET"],
        str(uuid.uuid4()),
        "deployed@example.com",
        issuer=env["SUPABASE_JWT_ISSUER"],
        audience=env.get("SUPABASE_JWT_AUDIENCE", "authenticated"),
    )
    org, board = f"org-{overlay}-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def call(method: str, url: str, body: Any = None) -> Any:
            async with http.request(method, url, json=body) as response:
                text = await response.text()
                assert response.status < 300, f"{method} {url}: {response.status} {text}"
                return json.loads(text) if text else None

        await call("POST", f"{pods['auth'].url}/v1/organizations", {"id": org, "name": org})
        created = await call(
            "POST",
            f"{pods['boards'].url}/v1/boards",
            {"id": board, "organization_id": org, "name": "Deployed", "columns": ["To do"]},
        )
        column = created["columns"][0]["id"]
        realtime = pods["realtime"]
        origins = [o.strip() for o in realtime.env["WEBSOCKET_ALLOWED_ORIGINS"].split(",") if o.strip()]
        assert origins, "both overlays set an Origin allow-list"
        intruder, refusals = socketio.AsyncClient(reconnection=False), []
        intruder.on("connect_error", refusals.append, namespace="/workspace")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await intruder.connect(
                realtime.url,
                namespaces=["/workspace"],
                auth={"token": token},
                headers={"Origin": "https://evil.example"},
                wait_timeout=10,
            )
        assert [r.get("data", {}).get("code") for r in refusals] == ["forbidden"], refusals
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(
            realtime.url,
            namespaces=["/workspace"],
            auth={"token": token},
            headers={"Origin": origins[-1]},
            wait_timeout=10,
        )
        try:
            joined = await sio.call("join_board", {"board_id": board, "organization_id": org}, namespace="/workspace")
            assert joined["ok"], joined
            created = await sio.call(
                "task_created",
                {"board_id": board, "column_id": column, "title": "deployed", "client_op_id": str(uuid.uuid4())},
                namespace="/workspace",
                timeout=10,
            )
            assert created["ok"], created
        finally:
            await sio.disconnect()
        deadline = time.monotonic() + 20
        while True:
            rows = await call("GET", f"{pods['audit'].url}/v1/audit/events?organization_id={org}")
            if any(row["action"] == "task_created" for row in rows["events"]):
                break
            assert time.monotonic() < deadline, f"no audit row for the card: {rows}"
            await asyncio.sleep(0.3)


# --------------------------------------------------------------------------------------------
# the README's configuration table

#: An example of each README variable in its documented form; lists alternate between the comma
#: form and a JSON array. ``{...}`` fields are filled in by the test. Variables whose example
#: needs a differently configured NATS are booted by the test named instead.
EXAMPLES: dict[str, list[str]] = {
    "DATABASE_URL": ["{database}"],
    "NATS_URL": ["{nats},{nats_localhost}"],
    "NATS_STREAM_REPLICAS": ["1"],
    "NATS_USER": ["{nats_user}"],
    "NATS_PASSWORD": ["{nats_password}"],
    "SUPABASE_JWT_SECRET": [JWT_SECRET],
    "SUPABASE_JWKS_URL": ["https://PROJECT.supabase.co/auth/v1/.well-known/jwks.json"],
    "SUPABASE_JWT_ISSUER": ["https://PROJECT.supabase.co/auth/v1"],
    "SUPABASE_JWT_AUDIENCE": ["authenticated"],
    "SUPABASE_JWT_LEEWAY": ["10"],
    "AUTH_SERVICE_URL": ["http://127.0.0.1:8001"],
    "BOARDS_SERVICE_URL": ["http://127.0.0.1:8002"],
    "TRUSTED_PROXIES": ["10.0.0.0/8,192.168.1.7", '["10.244.0.0/16", "fd00::/8"]'],
    "AUTH_SCOPE_SIGNING_KEY": ["{signing_key}"],
    "WEBSOCKET_MAX_CONNECTIONS": ["5000"],
    "WEBSOCKET_CONNECTION_TIMEOUT": ["120"],
    "WEBSOCKET_RATE_LIMIT_CONNECTIONS": ["50"],
    "WEBSOCKET_RATE_LIMIT_MESSAGES": ["600"],
    "WEBSOCKET_ENFORCE_AUTHENTICATION": ["true", "false"],
    "WEBSOCKET_VALIDATE_SCOPE": ["true", "false"],
    "WEBSOCKET_AUDIT_EVENTS": ["false", "true"],
    "WEBSOCKET_MAX_ROOMS_PER_CONNECTION": ["50"],
    "WEBSOCKET_MAX_CONNECTIONS_PER_ROOM": ["500"],
    "WEBSOCKET_CLEANUP_INTERVAL": ["60"],
    "WEBSOCKET_MAX_MESSAGE_BYTES": ["32768"],
    "WEBSOCKET_ALLOWED_ORIGINS": ["https://app.example.com,http://localhost:8000", '["https://app.example.com"]'],
    "WEBSOCKET_TOKEN_EXPIRY_WARNING": ["30"],
    "WEBSOCKET_TRANSPORT_MAX_BYTES": ["1048576"],
    "WEBSOCKET_AUTH_TIMEOUT": ["3"],
    "WEBSOCKET_PING_INTERVAL": ["20"],
    "WEBSOCKET_PING_TIMEOUT": ["15"],
    "REALTIME_DRAIN_SECONDS": ["5"],
    "REALTIME_BOARDS_TIMEOUT": ["3"],
    "REALTIME_FAST_PATH": ["false", "true"],
    "AUTH_SCOPE_RETIRED_KEYS": ["{retired_key}"],
    "AUTH_SCOPE_TOKEN_TTL": ["120"],
    "AUTH_JWKS_URL": ["http://127.0.0.1:8001/.well-known/jwks.json"],
    "SUPABASE_JWKS_COOLDOWN": ["60"],
    "BOARDS_POOL_SIZE": ["5"],
    "BOARDS_EVENT_RETENTION_DAYS": ["30"],
    "BOARDS_CLIENT_OP_RETENTION_HOURS": ["24"],
    "BOARDS_RELAY_INTERVAL": ["2"],
    "BOARDS_RANK_MAX_LENGTH": ["24"],
    "AUDIT_RETENTION_DAYS": ["90"],
    "AUDIT_RETENTION_INTERVAL": ["3600"],
    "AUDIT_LAG_INTERVAL": ["15"],
    "AUDIT_CONSUMER_NAME": ["audit-readme"],
    "AUDIT_FETCH_BATCH": ["50"],
    "AUDIT_ACK_WAIT": ["30"],
    "LOG_LEVEL": ["warning", "DEBUG"],
    "OTEL_SERVICE_NAME": ["{service}"],
    "OTEL_EXPORTER_OTLP_ENDPOINT": ["http://127.0.0.1:{collector}"],
    "LIVEBOARD_TRACE_FILE": ["{tmp}/{service}-trace.jsonl"],
    "LIVEBOARD_MIGRATE_ON_START": ["true", "false"],
    "LIVEBOARD_SHUTDOWN_TIMEOUT": ["5"],
    "LIVEBOARD_EVENT_LOOP": ["uvloop", "asyncio"],
}
_NATS_AUTH = "tests/security/test_nats_auth.py::"
_TLS = _NATS_AUTH + "test_a_service_connects_over_tls_with_a_client_certificate"
BOOTED_ELSEWHERE = {
    "NATS_NKEY_SEED_FILE": _NATS_AUTH + "test_a_service_connects_with_an_nkey_seed_file",
    "NATS_TLS_CA_FILE": _TLS,
    "NATS_TLS_CERT_FILE": _TLS,
    "NATS_TLS_KEY_FILE": _TLS,
    "NATS_CREDS_FILE": _NATS_AUTH + "test_a_service_connects_with_a_creds_file",
}
#: Read by the services but not operator settings: test hooks and the runner's own name.
NOT_FOR_OPERATORS = {"LIVEBOARD_SERVICE", "LIVEBOARD_TEST_HOOKS", "BOARDS_FAULT_EXIT_AFTER_COMMIT"}


def readme_variables() -> list[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("| variable | default | meaning |", 1)[1].split("\n\n", 1)[0]
    names: list[str] = []
    for row in table.splitlines()[2:]:
        names += re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    return names


def variables_read_by(service: str) -> set[str]:
    _, settings_cls = load_app_factory(SERVICES[service])
    return {env_name(settings_cls, f) for f in settings_cls.model_fields}


def test_the_readme_table_is_what_the_services_read():
    documented = set(readme_variables())
    read = set().union(*(variables_read_by(s) for s in SERVICES)) - NOT_FOR_OPERATORS
    assert read - documented == set(), "read by a service but not in the README's table"
    assert documented - read == set(), "in the README's table but read by no service"
    assert documented == set(EXAMPLES) | set(BOOTED_ELSEWHERE), (
        "add an example of the documented form to EXAMPLES: "
        + str(documented ^ (set(EXAMPLES) | set(BOOTED_ELSEWHERE)))
    )
    common = {env_name(CommonSettings, f) for f in CommonSettings.model_fields}
    assert common <= read | NOT_FOR_OPERATORS


def test_every_readme_variable_in_its_documented_form_boots(base_env, nats_server, fresh_database, tmp_path):
    collector = Collector()
    nats_url = nats_server.url
    fills = {
        "database": fresh_database,
        "nats": nats_url,
        "nats_localhost": nats_url.replace("127.0.0.1", "localhost"),
        "signing_key": base_env["AUTH_SCOPE_SIGNING_KEY"],
        "retired_key": ScopeSigner.generate().private_pem(),
        "collector": str(collector.port),
        "tmp": str(tmp_path),
    }
    rounds = max(len(values) for values in EXAMPLES.values())
    try:
        for round_ in range(rounds):
            pods = []
            for service in SERVICES:
                read = variables_read_by(service)
                nats_env = service_nats_env(service)
                values = {
                    **fills,
                    "service": service,
                    "nats_user": nats_env.get("NATS_USER", ""),
                    "nats_password": nats_env.get("NATS_PASSWORD", ""),
                }
                env = {
                    var: examples[round_ % len(examples)].format(**values)
                    for var, examples in EXAMPLES.items()
                    if var in read
                }
                if not nats_env:  # an external NATS of the developer's: no users
                    env.pop("NATS_USER", None), env.pop("NATS_PASSWORD", None)
                port = free_port()
                pods.append(
                    Pod(
                        service,
                        port,
                        ["serve", service, "--port", str(port)],
                        env,
                        tmp_path / f"{service}-{round_}.log",
                    )
                )
            for pod in pods:
                if pod.service == "realtime" or pod.env.get("LIVEBOARD_MIGRATE_ON_START") == "true":
                    continue
                _run(["migrate", pod.service], {"DATABASE_URL": fresh_database}, f"migrate {pod.service}")
            try:
                for pod in pods:
                    pod.start()
                for pod in pods:
                    body = pod.ready()
                    assert body["status"] == "ready", (pod.service, round_, body)
            finally:
                for pod in pods:
                    pod.stop()
            for pod in pods:
                assert "Traceback" not in pod.log.read_text(), pod.log.read_text()[-3000:]
    finally:
        collector.stop()
