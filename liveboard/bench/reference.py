"""``--reference node``: the same fan-out on Node's socket.io 4, measured the same way.

``socket.io`` is installed from npm into a temporary folder (reused between runs, never part of
the repository); ``reference_server.js`` speaks the bench's subset of the contract with no auth
or persistence, so what is measured is the Socket.IO fan-out alone. Its "fixtures" are ids.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from libs.common.devstack import free_port, wait_for_port

from .run import Deployment, Setup
from .target import BenchSetupError, BenchUser, Board, Target

NPM_PACKAGE = "socket.io@4"
FOLDER = Path(tempfile.gettempdir()) / "liveboard-bench-node-reference"


def install(folder: Path = FOLDER) -> Path:
    """``npm install socket.io@4`` into ``folder`` (once); returns the folder."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise BenchSetupError("--reference node needs node and npm on PATH")
    if not (folder / "node_modules" / "socket.io").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"name": "liveboard-bench-node-reference", "private": true}\n')
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", NPM_PACKAGE],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchSetupError(f"npm install {NPM_PACKAGE} failed: {done.stderr.strip()[-500:]}")
    shutil.copy(Path(__file__).with_name("reference_server.js"), folder / "server.js")
    return folder


@dataclass
class NodeReference:
    proc: subprocess.Popen
    port: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def deployment(self, target: Target) -> ReferenceDeployment:
        return ReferenceDeployment(target, [self.proc.pid])


class ReferenceDeployment(Deployment):
    """The reference needs no organization: boards, cards and users are just ids."""

    async def provision(self, *, members: int, movers: int, boards: int, cards: int = 10) -> Setup:
        run_id = uuid.uuid4().hex[:8]
        user = BenchUser("reference-user", "bench@example.com", "reference")
        made = [
            Board(
                f"ref-{run_id}-{index}",
                "ref-org",
                "ref-div",
                ["col-a", "col-b"],
                [str(uuid.uuid4()) for _ in range(max(cards, movers))],
                0,
            )
            for index in range(boards)
        ]
        return Setup(run_id, made, [user], [user])


def start_node_reference() -> tuple[NodeReference, Target]:
    folder = install()
    port = free_port()
    proc = subprocess.Popen(
        ["node", "server.js", str(port)],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, "127.0.0.1", 30, proc)
    except BaseException:
        proc.kill()
        raise
    url = f"http://127.0.0.1:{port}"
    return NodeReference(proc, port), Target(url, url, url, jwt_secret="unused")
