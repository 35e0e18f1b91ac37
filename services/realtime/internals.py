"""The python-socketio and python-engineio series realtime was written and tested against.

Realtime reaches past their public API in a few places (the fast path replaces engineio's socket
class and copies its upgrade handshake, ``room_index`` reads the client manager's pending
connects, ``protocol`` patches packet handling), and such internals change between minor
releases: on python-socketio 5.16 to 5.17, which a floor alone allowed, every disconnect raised
``AttributeError``. ``pyproject.toml`` caps both below the next minor and ``constraints.txt``
holds the exact tested versions; this check makes any other install fail at start-up with what
to do, instead of failing later on a connection.
"""

from __future__ import annotations

from importlib.metadata import version

#: Distribution -> the ``major.minor`` series tested (keep in step with pyproject.toml's caps).
TESTED = {"python-socketio": "5.18", "python-engineio": "4.15"}


class UntestedVersion(RuntimeError):
    pass


def check() -> None:
    """Raise ``UntestedVersion`` naming each distribution outside its tested series."""
    wrong = []
    for dist, series in TESTED.items():
        installed = version(dist)
        if installed.split(".")[:2] != series.split("."):
            wrong.append(f"{dist} {installed} (tested: {series}.x)")
    if wrong:
        raise UntestedVersion(
            "realtime uses internals of "
            + ", ".join(wrong)
            + ": install the tested versions with `pip install -c constraints.txt .` (what make and the "
            "Dockerfile do), or update services/realtime/internals.py after the tests pass on the new ones"
        )
