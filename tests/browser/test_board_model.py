"""The demo page's board model (``web/board.js``) under Node's own test runner.

Why not only through the browser: the server never delivers out of order on purpose, so the
sequencing rules the page relies on around a re-join (hold, dedupe, gap -> re-join) are checked
here directly. The module is copied to ``.mjs`` because ``web/package.json`` does not declare
ES modules (browsers do not care; Node does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

MODEL = ROOT / "services" / "realtime" / "web" / "board.js"
TESTS = Path(__file__).parent / "js" / "board_model.test.mjs"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (make test installs the page's packages with it)")
def test_board_model(tmp_path: Path) -> None:
    module = tmp_path / "board.mjs"
    shutil.copyfile(MODEL, module)
    result = subprocess.run(
        [str(shutil.which("node")), "--test", str(TESTS)],
        env={**os.environ, "BOARD_MODULE": str(module)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
