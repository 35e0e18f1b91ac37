"""``python -m liveboard.bench.launch ARGS``: ``liveboard ARGS`` on uvloop's event loop.

What ``liveboard serve`` would do with uvloop installed before ``web.run_app`` creates its loop;
the bench uses it to measure that configuration (``--loop uvloop``) until serve does it itself.
"""

from __future__ import annotations

import sys

import uvloop

from liveboard.cli import main

if __name__ == "__main__":
    uvloop.install()
    sys.exit(main())
