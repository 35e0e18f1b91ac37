"""TEST-ONLY fault injection. Nothing here runs unless two settings are set together.

``BOARDS_FAULT_EXIT_AFTER_COMMIT=N`` makes the process ``os._exit`` immediately after its N-th
committed mutation, before the events are published — the crash window the outbox relay exists
for. It is refused at start-up unless ``LIVEBOARD_TEST_HOOKS=1`` is also set (see
``app.Settings``), so a stray variable in a production environment stops the pod with a clear
message instead of arming a crash.
"""

from __future__ import annotations

import logging
import os

from .mutation import AfterCommit, StoredEvent

log = logging.getLogger(__name__)

#: Exit status of a deliberate crash, distinct from real failures in test logs.
FAULT_EXIT_STATUS = 70


def exit_after_commits(count: int) -> AfterCommit:
    """An after-commit hook that kills the process right after the ``count``-th commit."""
    commits = 0

    async def hook(events: list[StoredEvent]) -> None:
        nonlocal commits
        if not events:
            return
        commits += 1
        if commits >= count:
            log.warning("test hook: exiting after commit %d before publishing", commits)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(FAULT_EXIT_STATUS)

    return hook
