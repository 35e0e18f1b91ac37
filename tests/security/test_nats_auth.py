"""Services trust each other only with credentials: NATS refuses anonymous clients, each service
may use only its own subjects, and every credential kind we document boots a real service.

The session's NATS already runs with authentication and per-service grants, so the whole suite
fails on a missing grant (tests/conftest.py checks the server log for violations). Here: what a
stranger or a compromised service cannot do, and the other credential forms (nkey seed, creds file, TLS).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys
from pathlib import Path

import nats
import nats.errors
import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from libs.common.devstack import NatsServer, free_port
from libs.common.nats_permissions import inbox_prefix
from tests.conftest import NATS_PASSWORDS, ROOT, nats_refusals

pytestmark = pytest.mark.slow


async def test_a_client_without_credentials_is_refused(nats_server):
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(nats_server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            nats_server.url, user="boards", password="guessed", allow_reconnect=False, max_reconnect_attempts=0
        )


# What each service must not be able to do, were its password stolen: (service, action, subject).
FORBIDDEN = [
    ("boards", "publish", "auth.membership.changed.u-1"),  # only auth announces membership changes
    ("realtime", "publish", "kanban.events.org.board.task_moved"),  # only boards writes board events
    ("audit", "publish", "kanban.events.org.board.task_moved"),
    ("realtime", "publish", "security.auth.expired"),  # each reports only its own refusals
    ("realtime", "publish", "$JS.API.STREAM.DELETE.KANBAN_EVENTS"),
    ("boards", "publish", "$JS.API.STREAM.DELETE.SECURITY_EVENTS"),
    ("audit", "publish", "boards.v1.task_moved"),  # nobody but realtime sends boards commands
    ("realtime", "subscribe", "_INBOX_boards.>"),  # nobody reads another service's replies
    ("realtime", "subscribe", "auth.v1.exchange"),  # nobody but auth sees tokens being exchanged
    ("boards", "subscribe", "_INBOX.>"),
]


@pytest.mark.parametrize(("service", "action", "subject"), FORBIDDEN)
async def test_a_service_cannot_use_another_services_subjects(private_nats, service, action, subject):
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    client = await nats.connect(
        private_nats.url,
        user=service,
        password=NATS_PASSWORDS[service],
        inbox_prefix=inbox_prefix(service),
        error_cb=on_error,
    )
    try:
        if action == "publish":
            await client.publish(subject, b"forged")
        else:
            await client.subscribe(subject)
        await client.flush()
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.02)
    finally:
        await client.close()
    assert any("permissions violation" in str(e).lower() for e in errors), (service, action, subject, errors)
    assert any(subject in line for line in nats_refusals(private_nats)), "the server logs the violation"


async def test_a_service_may_use_its_own_subjects(private_nats):
    """The positive side of the table (the whole suite proves the rest): boards' own events."""
    client = await nats.connect(
        private_nats.url, user="boards", password=NATS_PASSWORDS["boards"], inbox_prefix=inbox_prefix("boards")
    )
    try:
        from libs.common.messaging import declare_stream
        from libs.common.subjects import BOARD_EVENTS_STREAM

        await declare_stream(client.jetstream(), BOARD_EVENTS_STREAM)
        ack = await client.jetstream().publish("kanban.events.org.board.task_moved", b"{}")
        assert ack.stream == BOARD_EVENTS_STREAM
    finally:
        await client.close()
    assert nats_refusals(private_nats) == []


def _serve(service: str, env: dict[str, str], port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "liveboard", "serve", service, "--port", str(port)],
        env={"PATH": os.environ["PATH"], **env},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _ready(proc: subprocess.Popen, port: int, timeout: float = 30.0) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("not ready in time")


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def test_wrong_credentials_stop_start_up_with_one_line(base_env, nats_server):
    env = {**base_env, "NATS_USER": "auth", "NATS_PASSWORD": "not-the-password"}
    done = subprocess.run(
        [sys.executable, "-m", "liveboard", "serve", "auth", "--port", str(free_port())],
        env={"PATH": os.environ["PATH"], **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NATS refused the credentials" in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_service_connects_with_an_nkey_seed_file(base_env, tmp_path):
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    (tmp_path / "auth.nk").write_bytes(seed)
    server = NatsServer(
        data_dir=tmp_path / "nats",
        port=free_port(),
        extra_config=f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n',
    ).start()
    port = free_port()
    proc = _serve("auth", {**base_env, "NATS_URL": server.url, "NATS_NKEY_SEED_FILE": str(tmp_path / "auth.nk")}, port)
    try:
        _ready(proc, port)
    finally:
        log = _stop(proc)
        server.stop()
    assert "Traceback" not in log


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    now = datetime.datetime.now(datetime.UTC)

    def make(name: str, issuer_key, issuer_name, *, ca: bool = False, server: bool = False):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if server:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        cert = builder.sign(issuer_key or key, hashes.SHA256())
        return key, cert

    ca_key, ca_cert = make("liveboard test CA", None, None, ca=True)
    paths = {}
    for name, (key, cert) in {
        "ca": (ca_key, ca_cert),
        "server": make("127.0.0.1", ca_key, ca_cert.subject, server=True),
        "client": make("auth", ca_key, ca_cert.subject),
    }.items():
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        paths[name] = directory / f"{name}.pem"
        paths[f"{name}_key"] = directory / f"{name}.key"
    return paths


def test_a_service_connects_over_tls_with_a_client_certificate(base_env, tmp_path):
    certs = _certificates(tmp_path)
    tls = (
        f'tls {{ cert_file: "{certs["server"]}", key_file: "{certs["server_key"]}", '
        f'ca_file: "{certs["ca"]}", verify: true, timeout: 2 }}\n'
    )
    server = NatsServer(
        data_dir=tmp_path / "nats", port=free_port(), passwords=NATS_PASSWORDS, extra_config=tls
    ).start()
    env = {
        **base_env,
        "NATS_URL": f"tls://127.0.0.1:{server.port}",
        "NATS_USER": "auth",
        "NATS_PASSWORD": NATS_PASSWORDS["auth"],
        "NATS_TLS_CA_FILE": str(certs["ca"]),
        "NATS_TLS_CERT_FILE": str(certs["client"]),
        "NATS_TLS_KEY_FILE": str(certs["client_key"]),
    }
    port = free_port()
    proc = _serve("auth", env, port)
    try:
        _ready(proc, port)
    finally:
        log = _stop(proc)
    try:
        # Without a client certificate the server (verify: true) refuses the connection.
        async def plain_tls() -> None:
            import ssl

            context = ssl.create_default_context(cafile=str(certs["ca"]))
            await nats.connect(
                f"tls://127.0.0.1:{server.port}",
                tls=context,
                user="auth",
                password=NATS_PASSWORDS["auth"],
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=2,
            )

        with pytest.raises(Exception):  # noqa: B017 - the TLS layer's error type varies by version
            asyncio.run(plain_tls())
    finally:
        server.stop()
    assert "Traceback" not in log


def _nats_jwt(issuer: nkeys.KeyPair, subject: str, name: str, claims: dict) -> str:
    """A NATS (v2) JWT: ``ed25519-nkey``-signed claims, as ``nsc`` writes them."""
    import base64
    import hashlib
    import json
    import time

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    body = {"iat": int(time.time()), "iss": issuer.public_key.decode(), "name": name, "sub": subject, "nats": claims}
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()).decode()
    signing_input = b64(b'{"typ":"JWT","alg":"ed25519-nkey"}') + "." + b64(json.dumps(body).encode())
    return signing_input + "." + b64(issuer.sign(signing_input.encode()))


def _keypair(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def test_a_service_connects_with_a_creds_file(base_env, tmp_path):
    """Decentralized auth (operator, account and user JWTs): the creds file ``nsc`` hands out
    carries the user's JWT, with the service's grants, and its seed."""
    from libs.common.nats_permissions import GRANTS

    operator, account = _keypair(nkeys.PREFIX_BYTE_OPERATOR), _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    user = _keypair(nkeys.PREFIX_BYTE_USER)
    account_pub = account.public_key.decode()
    operator_jwt = _nats_jwt(operator, operator.public_key.decode(), "liveboard", {"type": "operator", "version": 2})
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1}
    storage = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    account_jwt = _nats_jwt(
        operator, account_pub, "LIVEBOARD", {"limits": {**unlimited, **storage}, "type": "account", "version": 2}
    )
    system = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    system_pub = system.public_key.decode()
    system_jwt = _nats_jwt(operator, system_pub, "SYS", {"limits": unlimited, "type": "account", "version": 2})
    grant = GRANTS["auth"]
    user_claims = {
        "pub": {"allow": list(grant.publish)},
        "sub": {"allow": list(grant.subscribe)},
        **({"resp": {"max": 1, "ttl": 0}} if grant.responds else {}),
        "subs": -1,
        "data": -1,
        "payload": -1,
        "issuer_account": account_pub,
        "type": "user",
        "version": 2,
    }
    user_jwt = _nats_jwt(account, user.public_key.decode(), "auth", user_claims)
    creds = tmp_path / "auth.creds"
    creds.write_text(
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )
    server = NatsServer(
        data_dir=tmp_path / "nats",
        port=free_port(),
        extra_config=(
            f"operator: {operator_jwt}\nsystem_account: {system_pub}\nresolver: MEMORY\n"
            f"resolver_preload: {{\n  {account_pub}: {account_jwt}\n  {system_pub}: {system_jwt}\n}}\n"
        ),
    ).start()
    port = free_port()
    proc = _serve("auth", {**base_env, "NATS_URL": server.url, "NATS_CREDS_FILE": str(creds)}, port)
    try:
        _ready(proc, port)
    finally:
        log = _stop(proc)
        server.stop()
    assert "Traceback" not in log
    assert nats_refusals(server) == [], "the creds' grants are the service's"
