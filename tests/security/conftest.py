"""The in-process stack of tests/realtime (``make_stack``), for security tests that need real sockets."""

from tests.realtime.conftest import make_stack  # noqa: F401  (a fixture: importing it registers it here)
