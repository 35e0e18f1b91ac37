"""Dockerfile and .dockerignore rules, checked offline (no Docker engine needed).

The Dockerfile is parsed by Docker's own parser (the `dockerfile` package wraps BuildKit's Go
parser), then checked against hadolint-style rules: multi-stage, pinned bases, no remote ADD,
dependencies installed before the source is copied, a non-root numeric user in the final stage
matching the pods' runAsUser, exec-form entrypoint. The .dockerignore is evaluated with Docker's
matching semantics against the paths that must and must not reach the build context.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from functools import cache

import dockerfile
import pytest

from .k8s import KUBECTL, ROOT, WORKLOAD_KINDS, containers, is_our_image, of_kind, pod_spec, render

SOURCE_DIRS = ("libs", "services", "liveboard")
DEPENDENCY_FILES = ("pyproject.toml", "constraints.txt", "requirements", ".lock")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[dockerfile.Command] = field(default_factory=list)


@cache
def stages() -> tuple[Stage, ...]:
    """The Dockerfile split into stages, in order (the last one is what `docker build` produces)."""
    result: list[Stage] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            words = [w for w in command.value]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(result))
            result.append(Stage(name=name, base=words[0]))
        elif result:
            result[-1].instructions.append(command)
    return tuple(result)


def stage(name: str) -> Stage:
    return next(s for s in stages() if s.name == name)


def chain(target: Stage) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    names = {s.name for s in stages()}
    result = [target]
    while result[-1].base in names:
        result.append(stage(result[-1].base))
    return result


def effective_user(target: Stage) -> str | None:
    for s in chain(target):
        users = [c.value[0] for c in s.instructions if c.cmd == "USER"]
        if users:
            return users[-1]
    return None


def test_is_multi_stage() -> None:
    assert len(stages()) >= 2, "build tools must stay out of the runtime image: use a build stage"


def test_base_images_are_pinned() -> None:
    """hadolint DL3006/DL3007: an exact tag (or digest), never `latest` or no tag."""
    names = {s.name for s in stages()}
    for s in stages():
        if s.base in names or s.base == "scratch":
            continue
        assert "$" not in s.base, f"stage {s.name}: pin the base image literally, not through ARG ({s.base})"
        tag = s.base.partition("@")[0].rpartition("/")[-1].partition(":")[2]
        assert "@sha256:" in s.base or re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9.-]+)?", tag), (
            f"stage {s.name}: base image {s.base} is not pinned to a version"
        )


def test_final_stage_runs_as_the_pods_non_root_uid() -> None:
    """A numeric uid lets Kubernetes verify runAsNonRoot; it must be the uid the pods run as."""
    user = effective_user(stages()[-1])
    assert user is not None, "the final stage has no USER: it would run as root"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: use a numeric, non-zero uid"
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: cannot compare with the manifests")
    for workload in of_kind(render("base"), *WORKLOAD_KINDS):
        if any(is_our_image(c["image"]) for c in containers(workload)):
            run_as = pod_spec(workload)["securityContext"].get("runAsUser")
            assert run_as == int(uid), f"{workload['metadata']['name']} runs as {run_as}, the image as {uid}"


def test_no_remote_add() -> None:
    """hadolint DL3020: ADD of a URL downloads unverified content at build time; use COPY."""
    for s in stages():
        for command in s.instructions:
            if command.cmd == "ADD":
                assert not any(re.match(r"(https?|git|ssh)://|git@", v) for v in command.value), command.original


def _copies_from_context(command: dockerfile.Command) -> bool:
    return command.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in command.flags)


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """Layer caching: editing code must not reinstall dependencies. In the stage that installs
    the project, the dependency install comes first and only dependency manifests precede it."""
    installs_project = re.compile(r"pip install\b[^&;|]*\s\.(\s|$)")
    (builder,) = [s for s in stages() if any(installs_project.search(c.original) for c in s.instructions)]
    steps = builder.instructions
    deps = next(i for i, c in enumerate(steps) if c.cmd == "RUN" and re.search(r"pip install .*-r ", c.original))
    source = next(
        i
        for i, c in enumerate(steps)
        if _copies_from_context(c) and any(v.rstrip("/").split("/")[0] in (*SOURCE_DIRS, ".") for v in c.value[:-1])
    )
    assert deps < source, "dependencies are installed after the source is copied: every edit reinstalls them"
    for command in steps[:deps]:
        if _copies_from_context(command):
            sources = command.value[:-1]
            assert all(any(d in src for d in DEPENDENCY_FILES) for src in sources), (
                f"`{command.original}` comes before the dependency install: it invalidates that layer"
            )


def test_pip_and_apt_leave_no_caches_in_layers() -> None:
    """hadolint DL3042 (pip cache) and DL3009/DL3015 (apt lists, recommends)."""
    for s in stages():
        for command in s.instructions:
            if command.cmd != "RUN":
                continue
            text = command.original
            cache_mount = any("type=cache" in f for f in command.flags)
            if "pip install" in text:
                assert cache_mount or "--no-cache-dir" in text, f"pip cache left in a layer: {text}"
            if "apt-get install" in text:
                assert "--no-install-recommends" in text and "rm -rf /var/lib/apt/lists" in text, text


def test_entrypoint_and_workdir_forms() -> None:
    """hadolint DL3025 (exec form, so signals reach the server) and DL3000 (absolute WORKDIR)."""
    for s in stages():
        for command in s.instructions:
            if command.cmd in ("CMD", "ENTRYPOINT"):
                assert command.json, f"shell form would put /bin/sh between SIGTERM and the server: {command.original}"
            if command.cmd == "WORKDIR":
                assert command.value[0].startswith("/"), command.original
    final = chain(stages()[-1])
    entrypoint = next(c for s in final for c in s.instructions if c.cmd == "ENTRYPOINT")
    assert list(entrypoint.value) == ["liveboard"], "the image's entrypoint is the liveboard console script"


def test_copy_from_names_an_earlier_stage() -> None:
    seen: set[str] = set()
    for s in stages():
        for command in s.instructions:
            for flag in command.flags:
                if flag.startswith("--from="):
                    assert flag.split("=", 1)[1] in seen, f"{command.original}: no earlier stage of that name"
        seen.add(s.name)


# --- .dockerignore ---------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (moby/patternmatcher): `*`, `?`, `[...]` within a path segment,
    `**` across segments."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


@cache
def _ignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern(pattern)))
    return tuple(rules)


def ignored(path: str) -> bool:
    """Whether `path` stays out of the build context: the last rule matching the path or one of its
    parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in _ignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".liveboard/secrets.json",
        "node_modules/socket.io-client/package.json",
        "services/realtime/web/node_modules/socket.io-client/dist/socket.io.min.js",
        "services/realtime/__pycache__/app.cpython-311.pyc",
        "tests/deploy/test_dockerfile.py",
        "deploy/k8s/overlays/dev/dev-scope-signing-key.pem",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert ignored(path), f"{path} would be sent to the Docker build context"


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "libs/common/settings.py", "services/realtime/app.py", "liveboard/cli.py"],
)
def test_dockerignore_lets_the_build_inputs_in(path: str) -> None:
    assert not ignored(path), f"{path} is needed by the build but .dockerignore excludes it"


def test_every_copied_path_reaches_the_context() -> None:
    """A COPY of something .dockerignore excludes fails the build (or silently copies nothing)."""
    for s in stages():
        for command in s.instructions:
            if _copies_from_context(command):
                for source in command.value[:-1]:
                    # The part before the first wildcard segment must exist in the context.
                    segments = source.strip("/").split("/")
                    literal = "/".join(itertools.takewhile(lambda seg: not re.search(r"[*?\[]", seg), segments))
                    if literal not in ("", "."):
                        assert not ignored(literal), f"`{command.original}`: {literal} is excluded by .dockerignore"


def test_the_image_installs_the_tested_versions() -> None:
    """The image gets exactly what `make test` ran with (constraints.txt), not the newest release
    of every dependency on the day it is built."""
    installs = [
        c.original
        for s in stages()
        for c in s.instructions
        if c.cmd == "RUN" and re.search(r"pip install .*-r ", c.original)
    ]
    assert installs, "no dependency install found"
    assert all("-c constraints.txt" in command for command in installs), installs
    assert "!constraints.txt" in (ROOT / ".dockerignore").read_text().splitlines()
