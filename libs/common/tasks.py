"""Background task shutdown that cannot hang.

A library awaited inside a background loop may swallow ``CancelledError`` (then the loop simply
waits again, forever); stopping therefore cancels, waits a bounded time, and moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


async def stop_tasks(tasks: Iterable[asyncio.Task], timeout: float = 5.0) -> None:
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    done, still = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
    for task in still:
        log.warning("background task did not stop in time", extra={"task": task.get_name()})
