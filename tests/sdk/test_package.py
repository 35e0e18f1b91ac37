"""The SDK as a package: its types are those of the services' pydantic models of now, the sample
app type-checks against them, and ``npm pack`` gives a tarball that imports in plain Node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.sdk.conftest import NODE, ROOT, SDK, needs_sdk_build

TSC = SDK / "node_modules" / ".bin" / "tsc"


def run(args: list[str], cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def test_the_schemas_are_those_of_the_pydantic_models():
    result = run([sys.executable, str(SDK / "scripts" / "dump_schemas.py"), "--check"], ROOT)
    assert result.returncode == 0, result.stderr + "\nrun `make sdk-types` (clients/js/schemas, src/generated)"


@needs_sdk_build
def test_the_generated_types_are_those_of_the_schemas():
    result = run([NODE, "scripts/gen-types.mjs", "--check"], SDK)
    assert result.returncode == 0, result.stderr + "\nrun `make sdk-types`"


@needs_sdk_build
def test_the_sample_app_type_checks_against_the_built_package():
    result = run([str(TSC), "-p", "examples/tsconfig.json", "--noEmit"], SDK)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_sdk_build
@pytest.mark.slow
def test_npm_pack_gives_a_tarball_that_imports_in_node(tmp_path):
    result = run(["npm", "pack", "--json", "--pack-destination", str(tmp_path)], SDK)
    assert result.returncode == 0, result.stderr
    (packed,) = json.loads(result.stdout)
    files = {entry["path"] for entry in packed["files"]}
    assert {"package.json", "README.md", "dist/index.js", "dist/index.d.ts"} <= files
    assert not any(path.startswith(("test/", "node_modules/", "scripts/")) for path in files)
    app = tmp_path / "app"
    target = app / "node_modules" / "@liveboard"
    target.mkdir(parents=True)
    with tarfile.open(tmp_path / packed["filename"]) as tar:
        tar.extractall(target, filter="data")
    (target / "package").rename(target / "client")
    # its one runtime dependency, as npm would have installed it next to it
    for name in ("socket.io-client", "engine.io-client", "socket.io-parser", "engine.io-parser", "@socket.io"):
        os.symlink(SDK / "node_modules" / name, app / "node_modules" / name)
    for name in ("debug", "ms", "ws", "xmlhttprequest-ssl"):
        if (SDK / "node_modules" / name).exists():
            os.symlink(SDK / "node_modules" / name, app / "node_modules" / name)
    script = (
        "import { createClient, MemoryStorage } from '@liveboard/client';"
        "const c = createClient({ url: 'http://127.0.0.1:9', getToken: () => 'x', storage: new MemoryStorage(),"
        " reconnection: false });"
        "console.log(typeof c.openBoard, c.status); c.close();"
    )
    result = run([NODE, "--input-type=module", "-e", script], app)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["function", "connecting"]
    deps = json.loads((target / "client" / "package.json").read_text())["dependencies"]
    assert list(deps) == ["socket.io-client"]
