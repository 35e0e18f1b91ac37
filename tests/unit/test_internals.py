"""Realtime refuses to start on python-socketio / python-engineio series it was not tested with,
and the three places that name the tested versions agree (internals.TESTED, pyproject's caps,
constraints.txt)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pytest

from services.realtime import internals
from tests.conftest import ROOT


def test_the_installed_versions_are_the_tested_series():
    internals.check()


def test_another_series_stops_start_up_saying_what_to_do(monkeypatch):
    monkeypatch.setitem(internals.TESTED, "python-socketio", "5.16")
    with pytest.raises(internals.UntestedVersion) as refused:
        internals.check()
    message = str(refused.value)
    assert f"python-socketio {version('python-socketio')} (tested: 5.16.x)" in message
    assert "pip install -c constraints.txt" in message


def test_pyproject_caps_and_constraints_agree_with_the_tested_series():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    pinned = {name.lower().replace("_", "-"): v for name, v in pinned.items()}
    for dist, series in internals.TESTED.items():
        spec = next(d for d in dependencies if d.startswith(dist))
        major, minor = map(int, series.split("."))
        assert f"<{major}.{minor + 1}" in spec, f"pyproject.toml: {spec} is not capped below {major}.{minor + 1}"
        floor = re.search(r">=([\d.]+)", spec)
        assert floor and floor.group(1).startswith(series), f"pyproject.toml: {spec} allows untested {series}"
        assert pinned[dist].startswith(series + "."), f"constraints.txt pins {dist}=={pinned[dist]}"
        assert version(dist) == pinned[dist], f"installed {dist} {version(dist)}, constraints.txt {pinned[dist]}"
