"""Percentiles, the printed table and the one JSON line every mode ends with."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson


def percentiles(samples_ms: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99/max (nearest rank) of latencies in milliseconds; ``None`` without samples."""
    ordered = sorted(samples_ms)
    if not ordered:
        return {"p50": None, "p95": None, "p99": None, "max": None}

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))], 3)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": round(ordered[-1], 3)}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": sys.version.split()[0], "kernel": platform.release()}


@dataclass
class Report:
    """Rows for people (``metric  value``) and a dict for machines, printed together."""

    mode: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    #: What makes the run a failure (the command then exits 1 and says so on stderr).
    failures: list[str] = field(default_factory=list)

    def add(self, label: str, value: Any, key: str | None = None, unit: str = "") -> None:
        shown = (
            "-"
            if value is None
            else (
                f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
            )
        )
        self.rows.append((label, f"{shown} {unit}".rstrip()))
        if key is not None:
            self.data[key] = value

    def latency(self, label: str, key: str, samples_ms: Iterable[float]) -> dict[str, float | None]:
        pct = percentiles(samples_ms)
        self.data[key] = pct
        shown = " / ".join("-" if pct[k] is None else f"{pct[k]:.2f}" for k in ("p50", "p95", "p99", "max"))
        self.rows.append((f"{label} p50/p95/p99/max", f"{shown} ms"))
        return pct

    def result(self) -> dict[str, Any]:
        """What the JSON line (and ``--json``) holds: the mode, its figures, the machine."""
        return {"mode": self.mode, **self.data, "failures": self.failures, "machine": machine()}

    def print(self) -> None:
        width = max((len(label) for label, _ in self.rows), default=10)
        print(f"\nliveboard bench {self.mode}")
        for label, value in self.rows:
            print(f"  {label:<{width}}  {value}")
        print(orjson.dumps(self.result()).decode(), flush=True)
