"""The Tiltfile, run in a real Starlark interpreter (starlark-go) with Tilt's built-ins stubbed.

The stubs record every call. `kustomize` really renders the overlay and the YAML built-ins
really parse and print YAML, so the Tiltfile's own transformation of the manifests runs too.
Without a cluster or Tilt this still catches: syntax errors, unknown built-ins, paths that do not
exist, resources that match no workload, and a live_update that syncs to the wrong place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlark_go import Starlark, configure_starlark

from .k8s import KUBECTL, ROOT, WORKLOAD_KINDS, Obj, argv, of_kind, pod_spec, render

SERVICES = {"realtime": 8000, "auth": 8001, "boards": 8002, "audit": 8003}


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class FakeTilt:
    """Tilt's built-ins, recording their calls. Objects Tilt would return become tagged dicts."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.builtins: dict[str, Any] = {}

    def globals(self) -> dict[str, Any]:
        recorded = "docker_build k8s_yaml k8s_resource local_resource watch_settings update_settings allow_k8s_contexts"
        stubs: dict[str, Any] = {name: self._recorder(name) for name in recorded.split()}
        for name in ("sync", "fall_back_on", "run", "link", "port_forward"):
            stubs[name] = self._recorder(name, tagged=True)
        stubs["kustomize"] = self._recorder("kustomize", result=self._kustomize)
        stubs["decode_yaml_stream"] = lambda text: [doc for doc in yaml.safe_load_all(text) if doc]
        stubs["encode_yaml_stream"] = lambda objects: yaml.safe_dump_all(objects, sort_keys=False)
        stubs["TRIGGER_MODE_AUTO"], stubs["TRIGGER_MODE_MANUAL"] = 0, 1
        return stubs

    def _recorder(self, name: str, *, tagged: bool = False, result: Any = None) -> Any:
        def builtin(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(Call(name, args, kwargs))
            if result is not None:
                return result(*args, **kwargs)
            return {"tilt": name, "args": list(args), **kwargs} if tagged else None

        return builtin

    @staticmethod
    def _kustomize(path: str) -> str:
        return yaml.safe_dump_all(render(str(Path(path).relative_to("deploy/k8s"))), sort_keys=False)

    def named(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]


@pytest.fixture(scope="module")
def tilt() -> FakeTilt:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the Tiltfile's kustomize() cannot be rendered")
    # Tilt's dialect: top-level for/if and global reassignment are allowed.
    configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)
    fake = FakeTilt()
    # Keep the stubs referenced while Starlark runs: starlark-go does not hold a reference to the
    # Python callables it is given, and a collected closure crashes the interpreter.
    fake.builtins = fake.globals()
    Starlark(globals=fake.builtins).exec((ROOT / "Tiltfile").read_text(), filename="Tiltfile")
    return fake


def _named_paths(tilt: FakeTilt) -> list[str]:
    """Every repository path the Tiltfile hands to Tilt."""
    paths = []
    for call in tilt.named("docker_build"):
        paths += [call.args[1], call.kwargs.get("dockerfile", "Dockerfile")]
    for call in tilt.named("kustomize"):
        paths.append(call.args[0])
    for call in tilt.named("sync"):
        paths.append(call.args[0])
    for call in tilt.named("fall_back_on"):
        paths += call.args[0] if isinstance(call.args[0], list) else [call.args[0]]
    return paths


def test_every_path_the_tiltfile_names_exists(tilt: FakeTilt) -> None:
    paths = _named_paths(tilt)
    assert paths, "no paths recorded: did the Tiltfile run?"
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"the Tiltfile names paths that do not exist: {missing}"


def test_image_is_built_with_live_update_into_site_packages(tilt: FakeTilt) -> None:
    """live_update must write where Python imports the packages from, or edits change nothing."""
    (build,) = tilt.named("docker_build")
    image, context = build.args[:2]
    assert (image, context) == ("liveboard", ".")
    dockerfile = (ROOT / build.kwargs.get("dockerfile", "Dockerfile")).read_text()
    target = build.kwargs.get("target")
    assert target and re.search(rf"^FROM\s+\S+\s+AS\s+{target}\s*$", dockerfile, re.M | re.I), "unknown target"
    python = re.search(r"^FROM\s+python:(\d+\.\d+)\.", dockerfile, re.M)
    venv = re.search(r"VIRTUAL_ENV=(\S+)", dockerfile)
    assert python and venv, "the Dockerfile should pin python:X.Y.Z and set VIRTUAL_ENV"
    site_packages = f"{venv.group(1)}/lib/python{python.group(1)}/site-packages"
    steps = build.kwargs["live_update"]
    syncs = {step["args"][0]: step["args"][1] for step in steps if step["tilt"] == "sync"}
    for package in ("services", "libs"):
        assert syncs.get(package) == f"{site_packages}/{package}", f"{package}/ is not synced into site-packages"
    assert steps[0]["tilt"] == "fall_back_on", "fall_back_on must come first in live_update"
    assert "pyproject.toml" in steps[0]["args"][0], "a dependency change must rebuild the image"


def _deployed(tilt: FakeTilt) -> tuple[Obj, ...]:
    (call,) = tilt.named("k8s_yaml")
    return tuple(doc for doc in yaml.safe_load_all(call.args[0]) if doc)


def _is_service_deployment(obj: Obj) -> bool:
    return obj["kind"] == "Deployment" and obj["metadata"]["name"] in SERVICES


def test_deploys_the_dev_overlay_with_reload_for_live_update(tilt: FakeTilt) -> None:
    assert [call.args[0] for call in tilt.named("kustomize")] == ["deploy/k8s/overlays/dev"]
    objects = _deployed(tilt)
    for workload in of_kind(objects, "Deployment"):
        name = workload["metadata"]["name"]
        if name not in SERVICES:
            continue
        container = pod_spec(workload)["containers"][0]
        assert argv(container)[:3] == ["liveboard", "serve", name]
        assert "--reload" in argv(container), f"{name} does not restart on synced changes"
        assert container["securityContext"]["readOnlyRootFilesystem"] is False, f"live_update cannot write {name}"
    # Everything else is exactly the dev overlay.
    expected = [o for o in render("overlays/dev") if not _is_service_deployment(o)]
    assert [o for o in objects if not _is_service_deployment(o)] == expected


def test_one_resource_per_service_with_ports_and_dependencies(tilt: FakeTilt) -> None:
    resources = {call.args[0]: call.kwargs for call in tilt.named("k8s_resource")}
    workloads = {w["metadata"]["name"] for w in of_kind(_deployed(tilt), *WORKLOAD_KINDS)}
    assert set(resources) <= workloads, f"k8s_resource names no workload: {set(resources) - workloads}"

    def dependencies(name: str) -> set[str]:
        direct = set(resources.get(name, {}).get("resource_deps", []))
        return direct.union(*(dependencies(dep) for dep in direct))

    for service, port in SERVICES.items():
        assert service in resources, f"no k8s_resource for {service}"
        forwards = resources[service].get("port_forwards", [])
        assert f"{port}:{port}" in forwards, f"{service} does not forward {port}"
        assert {"nats", "postgres"} <= dependencies(service), f"{service} may start before NATS and Postgres"


def test_links_to_the_demo_page_and_jaeger(tilt: FakeTilt) -> None:
    urls = [call.args[0] for call in tilt.named("link")]
    assert "http://localhost:8000/" in urls, "no link to the demo page"
    assert any(url.startswith("http://localhost:16686/") for url in urls), "no link to Jaeger"
    forwards = [f for call in tilt.named("k8s_resource") for f in call.kwargs.get("port_forwards", [])]
    assert "16686:16686" in forwards, "the Jaeger link points at a port nobody forwards"
