"""NATS as deployed: no anonymous clients, each service its own user and only its own subjects.

The permissions table lives in ``libs/common/nats_permissions.py``; the embedded dev/test server
renders it directly, and Kubernetes gets the committed ``deploy/k8s/base/nats/permissions.conf``.
These tests keep the two the same and check that every service's pod connects as itself.
"""

from __future__ import annotations

import pytest

from libs.common import nats_permissions

from .k8s import K8S, OVERLAYS, containers, find, of_kind, pod_spec, render

pytestmark = pytest.mark.skipif(not __import__("shutil").which("kubectl"), reason="kubectl is not installed")


def test_the_committed_permissions_are_the_rendered_table():
    committed = (K8S / "base/nats/permissions.conf").read_text()
    assert committed == nats_permissions.kubernetes_config(), (
        "deploy/k8s/base/nats/permissions.conf is stale: python -m libs.common.nats_permissions > it"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_connects_as_its_own_user(overlay: str):
    rendered = render(f"overlays/{overlay}")
    for service in nats_permissions.SERVICES:
        container = next(containers(find(rendered, "Deployment", service), init=False))
        env = {item["name"]: item for item in container.get("env", [])}
        assert env["NATS_USER"]["value"] == service, service
        reference = env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert reference["name"].startswith("liveboard-nats") and reference["key"] == f"{service.upper()}_NATS_PASSWORD"
        assert not reference.get("optional"), "a service without its NATS password must not start"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_nats_server_loads_the_permissions_and_their_passwords(overlay: str):
    rendered = render(f"overlays/{overlay}")
    config = next(c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"].startswith("nats-config"))
    assert config["data"]["permissions.conf"] == nats_permissions.kubernetes_config()
    assert "include ./permissions.conf" in config["data"]["nats.conf"]
    spec = pod_spec(find(rendered, "StatefulSet", "nats"))
    sources = [item["secretRef"]["name"] for item in spec["containers"][0].get("envFrom", []) if "secretRef" in item]
    assert any(name.startswith("liveboard-nats") for name in sources)
    if overlay == "dev":
        secret = next(s for s in of_kind(rendered, "Secret") if s["metadata"]["name"].startswith("liveboard-nats"))
        assert set(secret["data"]) == {f"{s.upper()}_NATS_PASSWORD" for s in nats_permissions.SERVICES}


def test_grants_name_only_subjects_of_this_system():
    """No catch-all grant: nobody may publish ``>`` or the whole JetStream API."""
    for service, grant in nats_permissions.GRANTS.items():
        for subject in (*grant.publish, *grant.subscribe):
            assert subject not in (">", "*", "$JS.API.>", "$JS.>", "_INBOX.>"), (service, subject)
    assert "kanban.events.>" in nats_permissions.GRANTS["boards"].publish
    assert not any(s.startswith("kanban.events") for s in nats_permissions.GRANTS["realtime"].publish)
    assert not any(
        s.startswith("auth.membership")
        for svc in ("boards", "realtime", "audit")
        for s in nats_permissions.GRANTS[svc].publish
    )
