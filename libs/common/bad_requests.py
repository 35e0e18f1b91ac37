"""Malformed HTTP from a client is the client's error: one rate-limited warning, never a traceback.

aiohttp logs every request it cannot parse (headers over the size cap, a garbled request line, a
header without a colon, a broken chunked body) at error level with a traceback, from
``RequestHandler.handle_error`` (and a body that breaks off, when aiohttp drains what the handler
left unread, as "Unhandled exception"). Anyone who can reach a port could fill the logs and page whoever
watches error lines. aiohttp has already answered such a request with a 4xx and closed the
connection; this filter on ``aiohttp.server`` only changes what is logged: one warning line per
kind of error per ``interval`` (counting the ones it left out), without the traceback. Records
of anything else — a 500 from a handler, a bug — pass unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

#: The logger aiohttp's request handler logs through (``aiohttp.log.server_logger``).
SERVER_LOGGER = "aiohttp.server"
_DETAIL_CHARS = 200


class BadRequestFilter(logging.Filter):
    """Turns aiohttp's parse-error records into rate-limited warnings (see the module)."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError | RequestPayloadError):
            return True
        kind = type(error).__name__
        now = time.monotonic()
        with self._lock:
            self.counts[kind] += 1
            if now - self._last.get(kind, -self.interval) < self.interval:
                self._suppressed[kind] += 1
                return False
            self._last[kind] = now
            suppressed, self._suppressed[kind] = self._suppressed[kind], 0
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg = "bad HTTP request from %s: %s: %s"
        record.args = (peer, kind, _detail(error))
        if suppressed:
            record.msg += " (%d more in the last %.0f s not logged)"
            record.args += (suppressed, self.interval)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _detail(error: BaseException) -> str:
    """aiohttp's description without the client's bytes it quotes (``b'...'``): an oversized
    header may be an ``Authorization`` line, and its token does not belong in a log."""
    text = " ".join(str(getattr(error, "message", None) or error).split())
    for quote in ("b'", 'b"'):
        text = text.split(quote, 1)[0]
    return text.rstrip(" :")[:_DETAIL_CHARS]


_INSTALLED = BadRequestFilter()


def install() -> BadRequestFilter:
    """Add the filter to aiohttp's server logger once per process (every app factory calls this)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if _INSTALLED not in logger.filters:
        logger.addFilter(_INSTALLED)
    return _INSTALLED
