"""``--profile DIR``: samples of the services under test during the measured window only.

Samples the realtime processes, or those named by ``--profile-service`` (local services only).
With py-spy (default) writes collapsed Python stacks (``<mode>-<service>-<pid>.txt``, loadable
by speedscope or ``flamegraph.pl``) and where the samples were (``….top.txt``); with
``--profiler perf`` a ``perf record`` of user and kernel code (``….perf.data`` and its
``perf report`` as ``.top.txt``) — what shows the cost of ``send`` itself. So a missed target
comes with the profile that shows why. Needs ``py-spy`` (pip) or ``perf``, and ptrace rights.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Any


def _py_spy() -> str | None:
    local = Path(sysconfig.get_path("scripts")) / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(
        self, out_dir: Path | None, mode: str, pids: dict[str, list[int]], rate: int = 250, tool: str = "py-spy"
    ) -> None:
        self.out_dir, self.mode, self.rate, self.tool = out_dir, mode, rate, tool
        self.pids = {f"{service}-{pid}": pid for service, found in pids.items() for pid in found}
        self._procs: list[tuple[str, subprocess.Popen, Path]] = []

    @classmethod
    def of(cls, args: Any, mode: str, deployment: Any) -> Profiler:
        """The ``--profile``/``--profiler``/``--profile-service`` choice for ``deployment``."""
        services = args.profile_service or ["realtime"]
        return cls(args.profile, mode, {s: deployment.pids_of(s) for s in services}, tool=args.profiler)

    def start(self) -> None:
        if self.out_dir is None or not self.pids:
            return
        binary = _py_spy() if self.tool == "py-spy" else shutil.which("perf")
        if binary is None:
            print(f"--profile: {self.tool} is not installed", file=sys.stderr)
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            if self.tool == "py-spy":
                path = self.out_dir / f"{self.mode}-{name}.txt"
                argv = [
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(path),
                ]
            else:
                path = self.out_dir / f"{self.mode}-{name}.perf.data"
                argv = [binary, "record", "-F", str(self.rate), "-g", "-p", str(pid), "-o", str(path)]
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self._procs.append((name, proc, path))

    def stop(self) -> list[Path]:
        written = []
        for _, proc, _ in self._procs:
            proc.send_signal(signal.SIGINT)  # both write their output on Ctrl-C
        for name, proc, path in self._procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                continue
            if path.exists():
                summary = self.out_dir / f"{self.mode}-{name}.top.txt"  # type: ignore[operator]
                summary.write_text(summarize(path) if self.tool == "py-spy" else perf_summary(path))
                written += [path, summary]
        self._procs.clear()
        return written


def perf_summary(data: Path, top: int = 40) -> str:
    """``perf report`` by shared object and symbol (self time), user and kernel alike."""
    done = subprocess.run(
        [
            "perf",
            "report",
            "-i",
            str(data),
            "--no-children",
            "--sort",
            "dso,sym",
            "--stdio",
            "-g",
            "none",
            "--percent-limit",
            "0.5",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip() and not line.startswith("#")]
    return "\n".join(lines[:top]) + "\n"


def summarize(collapsed: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "self %   function"]
    lines += [f"{n * 100 / total:6.1f}   {name}" for name, n in own.most_common(top)]
    lines += ["", "total %  function (inclusive)"]
    lines += [f"{n * 100 / total:6.1f}   {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """``send (engineio/async_socket.py:123)`` → ``send (engineio/async_socket.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name
