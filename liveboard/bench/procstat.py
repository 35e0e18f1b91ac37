"""CPU and memory of the processes under test, read from ``/proc`` (same machine only).

Server CPU per delivered message is ``(utime + stime)`` of the realtime processes over the run,
divided by what was delivered; that counts everything the process did for it (NATS, Python,
kernel time of its ``send`` calls), which is what a capacity plan needs.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

import psutil

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def listening_pids(port: int) -> list[int]:
    """Processes listening on ``port`` (several with ``liveboard serve --workers N``)."""
    pids = {
        conn.pid
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid
    }
    return sorted(pids)


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) of ``pids`` (fields 14 and 15 of ``/proc/<pid>/stat``), in seconds."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except FileNotFoundError:
            continue
        user += int(fields[11])  # counted from the field after "(comm)", which is field 3
        system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids``, in seconds."""
    return sum(cpu_split(pids))


def rss_bytes(pids: list[int]) -> int:
    """Resident set size of ``pids`` (``/proc/<pid>/statm``)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
        except FileNotFoundError:
            continue
    return total


def own_cpu_seconds() -> float:
    """This process's CPU (a load-generator process reports its own)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU seconds (user and system) of ``pids`` between ``start`` and ``stop``."""

    pids: list[int]
    started: tuple[float, float] = (0.0, 0.0)
    user: float = 0.0
    system: float = 0.0

    @property
    def used(self) -> float:
        return self.user + self.system

    def start(self) -> None:
        self.started = cpu_split(self.pids)

    def stop(self) -> float:
        user, system = cpu_split(self.pids)
        self.user, self.system = user - self.started[0], system - self.started[1]
        return self.used


async def quiesce(pids: list[int], *, below: float = 0.05, window: float = 0.5, timeout: float = 120.0) -> float:
    """Wait until ``pids`` use less than ``below`` of a core for two windows in a row.

    Joins leave work behind (presence fan-out, audit events); measuring before it is done would
    charge it to the next phase. Returns the seconds waited.
    """
    import asyncio
    import time

    began = time.monotonic()
    quiet = 0
    last = cpu_seconds(pids)
    while pids and quiet < 2 and time.monotonic() - began < timeout:
        await asyncio.sleep(window)
        now = cpu_seconds(pids)
        quiet = quiet + 1 if now - last < below * window else 0
        last = now
    return time.monotonic() - began


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU of this machine, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def quiesce_machine(*, below_cores: float = 0.25, window: float = 0.5, timeout: float = 60.0) -> float:
    """Wait until the whole machine uses less than ``below_cores`` cores for two windows in a row.

    The realtime process going quiet is not enough when the stack runs here too: a join storm
    leaves thousands of audit events (connection opened, joined) for the audit service and
    Postgres, and measuring while they drain charges their CPU to the fan-out. Bounded, since a
    shared machine may never be that quiet; returns the seconds waited.
    """
    import asyncio
    import time

    cores = os.cpu_count() or 1
    began = time.monotonic()
    quiet = 0
    last = machine_busy_jiffies()
    while quiet < 2 and time.monotonic() - began < timeout:
        await asyncio.sleep(window)
        now = machine_busy_jiffies()
        busy, total = now[0] - last[0], now[1] - last[1]
        quiet = quiet + 1 if total and busy / total * cores < below_cores else 0
        last = now
    return time.monotonic() - began


@dataclass
class Settled:
    """How a wait for quiet ended: ``settled`` False means it gave up after ``seconds``."""

    seconds: float
    settled: bool
    level_pct: float | None
    windows_pct: list[float]
    reason: str


async def settle(
    pids: list[int],
    *,
    baseline_pct: float,
    window: float = 10.0,
    timeout: float = 120.0,
    margin_pct: float = 2.0,
    tolerance: float = 0.25,
    ceiling_pct: float = 50.0,
) -> Settled:
    """Wait until ``pids`` have finished what the last burst left behind, judged against what
    they were measured to cost, not against a fixed threshold.

    Idle is not zero: at 10,000 sockets realtime's own steady cost (presence heartbeats every
    10 s, Engine.IO pings) is 7-13 % of a core on a slow machine, so "below 5 %" may never come.
    Quiet here is either within ``margin_pct`` points of ``baseline_pct`` (measured the same way
    before the burst), or a plateau: two windows in a row within ``tolerance`` of each other (or
    ``margin_pct`` points) and below ``ceiling_pct`` (a saturated process is steady too, at 100 %).
    ``window`` should be a whole number of heartbeat periods (10 s), or the windows alternate.
    Bounded by ``timeout``; then ``settled`` is False and ``reason`` says so.
    """
    import asyncio
    import time

    began = time.monotonic()
    windows: list[float] = []
    if not pids:
        return Settled(0.0, False, None, [], "no process to measure")
    while True:
        before = cpu_seconds(pids)
        await asyncio.sleep(window)
        windows.append(round((cpu_seconds(pids) - before) / window * 100, 2))
        level = windows[-1]
        waited = time.monotonic() - began
        if level <= baseline_pct + margin_pct:
            return Settled(waited, True, level, windows, f"within {margin_pct:g} points of the baseline")
        if len(windows) >= 2:
            a, b = windows[-2:]
            if abs(a - b) <= max(margin_pct, tolerance * max(a, b)) and max(a, b) < ceiling_pct:
                return Settled(waited, True, round((a + b) / 2, 2), windows, f"steady for 2 windows of {window:g} s")
        if waited >= timeout:
            return Settled(waited, False, level, windows, f"gave up after {waited:.0f} s: still not steady")
