"""A small NetworkPolicy evaluator: which (source, destination, port) connections do policies allow?

It follows the Kubernetes semantics the tests rely on:

* a pod selected by no policy of a direction is not isolated in that direction (all allowed);
* a pod selected by at least one is isolated: a connection passes if any rule of any selecting
  policy matches it; a connection needs both the source's egress and the destination's ingress;
* a peer with only podSelector means "in the policy's namespace"; namespaceSelector {} means
  "any namespace"; an absent `from`/`to` means every peer; absent `ports` means every port;
* ipBlock peers are matched against endpoints outside the cluster only. (How an ipBlock applies
  to pod IPs differs between network plugins; no policy here should rely on it.)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .k8s import selector_matches

Policy = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace + labels) or an address outside the cluster (ip), and what it listens on."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    ip: str | None = None
    listens: tuple[tuple[int, str], ...] = ()

    @property
    def in_cluster(self) -> bool:
        return self.namespace is not None

    def namespace_labels(self) -> dict[str, str]:
        # What Kubernetes puts on every namespace; enough for the selectors we use.
        return {"kubernetes.io/metadata.name": self.namespace or ""}


Edge = tuple[str, str, int, str]


def _peer_matches(peer: dict[str, Any], endpoint: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if endpoint.in_cluster or endpoint.ip is None:
            return False
        address = ipaddress.ip_address(endpoint.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))
    if not endpoint.in_cluster:
        return False
    namespace_selector = peer.get("namespaceSelector")
    if namespace_selector is None:
        if endpoint.namespace != policy_namespace:
            return False
    elif not selector_matches(namespace_selector, endpoint.namespace_labels()):
        return False
    return selector_matches(peer.get("podSelector") or {}, endpoint.labels)


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for rule in ports:
        if rule.get("protocol", "TCP") != protocol:
            continue
        if "port" not in rule:
            return True
        if not isinstance(rule["port"], int):
            raise AssertionError(f"use numeric ports in policies (the evaluator does not resolve {rule['port']!r})")
        if rule["port"] <= port <= rule.get("endPort", rule["port"]):
            return True
    return False


def _types(policy: Policy) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])


def _allows(policies: list[Policy], subject: Endpoint, other: Endpoint, port: int, protocol: str, way: str) -> bool:
    """Does `subject`'s side allow the connection with `other` in direction `way` (Ingress/Egress)?"""
    if not subject.in_cluster:
        return True  # outside the cluster: no NetworkPolicy applies
    rules_key, peers_key = ("ingress", "from") if way == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if way in _types(p)
        and p["metadata"].get("namespace") == subject.namespace
        and selector_matches(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(peer, other, policy["metadata"]["namespace"]) for peer in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed_edges(policies: list[Policy], endpoints: list[Endpoint]) -> set[Edge]:
    """Every (source, destination, port, protocol) that the policies let through, over the
    ports each destination listens on."""
    edges = set()
    for source in endpoints:
        for destination in endpoints:
            for port, protocol in destination.listens:
                if _allows(policies, source, destination, port, protocol, "Egress") and _allows(
                    policies, destination, source, port, protocol, "Ingress"
                ):
                    edges.add((source.name, destination.name, port, protocol))
    return edges
