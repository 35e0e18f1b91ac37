"""Fixtures for the deployment tests: the rendered overlays (no cluster, no network needed)."""

from __future__ import annotations

import pytest

from .k8s import KUBECTL, OVERLAYS, Obj, render


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


def _rendered(overlay: str) -> tuple[Obj, ...]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: the manifests cannot be rendered (CI and dev machines have it)")
    return render(f"overlays/{overlay}")


@pytest.fixture(scope="session")
def rendered(overlay: str) -> tuple[Obj, ...]:
    """Every object of one overlay, as `kubectl kustomize` renders it."""
    return _rendered(overlay)


@pytest.fixture(scope="session")
def dev() -> tuple[Obj, ...]:
    return _rendered("dev")


@pytest.fixture(scope="session")
def prod() -> tuple[Obj, ...]:
    return _rendered("prod")
