"""Rendering the kustomize overlays and walking what they produce, shared by the deploy tests.

The tests work on what `kubectl kustomize` renders, not on the source YAML, because that is what
a cluster receives: patches, generators and components applied.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
KUBECTL = shutil.which("kubectl")

#: The Kubernetes version the manifests are validated against: the oldest we support.
K8S_VERSION = "1.31.0"

#: The project's image, as the manifests name it before an overlay or CI sets registry and tag.
IMAGE = "liveboard"

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")

Obj = dict[str, Any]


@functools.cache
def render(path: str) -> tuple[Obj, ...]:
    """`kubectl kustomize deploy/k8s/<path>`, parsed. Cached: each overlay renders once per run."""
    if KUBECTL is None:
        raise RuntimeError("kubectl is not installed")
    done = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def name_of(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"{kind}/{name} is not in the rendered manifests")


def of_kind(objects: tuple[Obj, ...], *kinds: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] in kinds]


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Obj) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload: Obj, *, init: bool = True) -> Iterator[Obj]:
    spec = pod_spec(workload)
    if init:
        yield from spec.get("initContainers", [])
    yield from spec["containers"]


def is_our_image(image: str) -> bool:
    """`liveboard`, `liveboard:0.1.0`, `registry.example.com/team/liveboard@sha256:...`."""
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    return last.split(":", 1)[0] == IMAGE


def argv(container: Obj) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def env_value(container: Obj, name: str) -> str | None:
    for item in container.get("env", []):
        if item["name"] == name:
            return item.get("value")
    return None


def config_value(objects: tuple[Obj, ...], configmap: str, key: str) -> str:
    """A key of a generated ConfigMap, whatever hash suffix kustomize gave its name."""
    for obj in of_kind(objects, "ConfigMap"):
        if obj["metadata"]["name"].rsplit("-", 1)[0] == configmap and key in obj.get("data", {}):
            return obj["data"][key]
    raise AssertionError(f"no ConfigMap {configmap}-<hash> with key {key}")


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions); {} matches all."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
