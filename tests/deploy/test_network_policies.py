"""The production NetworkPolicies allow exactly the service graph: nothing missing, nothing extra.

The allowed edges are computed from the rendered policies (tests/deploy/netpol.py) over our
workloads, labelled as the manifests label them, and a few endpoints around them: the ingress
controller, kube-dns, an OpenTelemetry collector in another namespace, the external Postgres,
Supabase on the internet, the cloud metadata address, and strangers that must reach nothing.
"""

from __future__ import annotations

from .k8s import WORKLOAD_KINDS, Obj, containers, of_kind, pod_labels
from .netpol import Edge, Endpoint, allowed_edges

APP = ("realtime", "auth", "boards", "audit")
TCP, UDP = "TCP", "UDP"

#: What is around the namespace, labelled the way those components label themselves.
AROUND = [
    Endpoint(
        "ingress-nginx",
        namespace="ingress-nginx",
        labels={"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
    ),
    Endpoint("kube-dns", namespace="kube-system", labels={"k8s-app": "kube-dns"}, listens=((53, UDP), (53, TCP))),
    Endpoint(
        "otel-collector",
        namespace="observability",
        labels={"app.kubernetes.io/name": "opentelemetry-collector"},
        listens=((4317, TCP), (4318, TCP)),
    ),
    # A managed database in the VPC (private range), and Supabase's JWKS endpoint (public).
    Endpoint("postgres", ip="10.0.50.10", listens=((5432, TCP),)),
    Endpoint("supabase", ip="203.0.113.10", listens=((443, TCP),)),
    # Must stay unreachable even though the Postgres and HTTPS rules allow wide ranges.
    Endpoint("cloud-metadata", ip="169.254.169.254", listens=((80, TCP), (443, TCP))),
    Endpoint("private-https", ip="10.0.99.9", listens=((443, TCP),)),
    # Neither may reach our pods, nor be reached from them.
    Endpoint("stranger-elsewhere", namespace="default", labels={"app": "other"}, listens=((8080, TCP),)),
]

#: The service graph (CONTRACT, DESIGN, docs/deploy.md "Network policies").
EXPECTED: set[Edge] = {
    ("ingress-nginx", "realtime", 8000, TCP),
    ("realtime", "auth", 8001, TCP),
    # boards and audit verify scope tokens against auth's JWKS (and exchange REST callers' tokens).
    ("boards", "auth", 8001, TCP),
    ("audit", "auth", 8001, TCP),
    ("realtime", "boards", 8002, TCP),
    ("nats", "nats", 6222, TCP),
    *{(service, "nats", 4222, TCP) for service in APP},
    *{(service, "otel-collector", port, TCP) for service in APP for port in (4317, 4318)},
    # Every service verifies Supabase tokens and may fetch the project's JWKS (SUPABASE_JWKS_URL).
    *{(service, "supabase", 443, TCP) for service in APP},
    *{(client, "postgres", 5432, TCP) for client in ("auth", "boards", "audit", "liveboard-migrate")},
    *{(pod, "kube-dns", 53, protocol) for pod in (*APP, "nats", "liveboard-migrate") for protocol in (UDP, TCP)},
}


def _our_endpoints(objects: tuple[Obj, ...]) -> list[Endpoint]:
    """One endpoint per workload, with its pod labels and the ports its containers listen on."""
    endpoints = []
    for workload in of_kind(objects, *WORKLOAD_KINDS):
        listens = tuple(
            (port["containerPort"], port.get("protocol", TCP))
            for container in containers(workload, init=False)
            for port in container.get("ports", [])
        )
        endpoints.append(
            Endpoint(
                workload["metadata"]["name"],
                namespace=workload["metadata"]["namespace"],
                labels=pod_labels(workload),
                listens=listens,
            )
        )
    namespace = endpoints[0].namespace
    # A pod someone starts in the namespace later (a debug shell, another app): default deny.
    endpoints.append(Endpoint("stranger-here", namespace=namespace, labels={"run": "debug"}, listens=((8080, TCP),)))
    return endpoints


def _describe(edges: set[Edge]) -> str:
    return "\n".join(f"  {src} -> {dst}:{port}/{proto}" for src, dst, port, proto in sorted(edges))


def test_policies_allow_exactly_the_service_graph(prod: tuple[Obj, ...]) -> None:
    policies = of_kind(prod, "NetworkPolicy")
    assert policies, "the prod overlay has no NetworkPolicy"
    ours = _our_endpoints(prod)
    # Only connections with one end in our namespace are ours to allow or deny.
    names = {endpoint.name for endpoint in ours}
    allowed = {edge for edge in allowed_edges(policies, ours + AROUND) if edge[0] in names or edge[1] in names}
    missing, extra = EXPECTED - allowed, allowed - EXPECTED
    assert not missing and not extra, f"missing edges:\n{_describe(missing)}\nextra edges:\n{_describe(extra)}"


def test_the_namespace_denies_by_default(prod: tuple[Obj, ...]) -> None:
    """Without the default-deny policy a new workload would be wide open; check it explicitly."""
    deny = [p for p in of_kind(prod, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert deny, "no policy selects every pod"
    assert any(
        set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in deny
    ), "no default-deny policy for both directions"
