"""Tokens are never logged: every log the suite produces is scanned for every token it used.

A pytest plugin (registered by ``pytest_plugins`` in ``tests/conftest.py``):

* **tokens** — every JWT PyJWT produces in the test process (``PyJWS.encode``, the layer that
  ``jwt.encode``, ``PyJWT.encode``, ``liveboard.devtokens``, ``ScopeSigner.sign`` and the test
  helpers all go through), every token ``tests/auth/helpers.py`` ``raw_token`` crafts by hand,
  and every JWT-shaped string in an HTTP response body the tests read through aiohttp (the
  scope tokens ``liveboard serve auth`` processes mint);
* **logs** — one session log of every ``logging`` record in the test process (the in-process
  service apps), formatted by the services' own ``JsonFormatter``, with the project's loggers
  at DEBUG; every ``ServiceProcess`` log (``SERVICE_LOGS`` in ``tests/conftest.py``); and every
  ``*.log`` under the session's temporary directory (``liveboard dev``, worker and reload logs,
  the bench stack, nats-server);
* **check** — at the end of the session each log line is searched for every token, its payload
  segment and its signature segment (so a truncated or split token is caught too), and every
  JSON log record for any JWT-shaped string at all (the formatter scrubs those from strings, so
  one that survives is a leak, whoever minted it). A leak fails the session.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import jwt
import jwt.api_jws
import pytest

from libs.common.logs import JsonFormatter

#: Shorter segments are too likely to occur by chance (and too short to be worth anything).
MIN_SEGMENT = 20
#: A compact JWS in text (the header of every JSON-headed token starts ``eyJ``, i.e. ``{"``).
JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_RUN = re.compile(rf"[A-Za-z0-9_-]{{{MIN_SEGMENT},}}")
_PIECE = re.compile(r"[A-Za-z0-9_-]{8,}")
#: Loggers whose DEBUG records the session log gets (the ``*.server`` ones explicitly: python-
#: engineio/socketio set their own logger to ERROR when it has no level of its own).
VERBOSE_LOGGERS = (
    "libs",
    "services",
    "liveboard",
    "aiohttp",
    "aiohttp.access",
    "socketio",
    "socketio.server",
    "engineio",
    "engineio.server",
    "nats",
)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(segment: str) -> Any:
    try:
        return json.loads(_b64decode(segment))
    except (ValueError, binascii.Error):
        return None


@dataclass(frozen=True)
class Token:
    """One token the suite used, and where it came from (never printed in full)."""

    value: str
    origin: str
    test: str | None = None

    @property
    def header(self) -> dict[str, Any]:
        head = _json_segment(self.value.split(".", 1)[0])
        return head if isinstance(head, dict) else {}

    @property
    def claims(self) -> dict[str, Any]:
        parts = self.value.split(".")
        body = _json_segment(parts[1]) if len(parts) > 1 else None
        return body if isinstance(body, dict) else {}

    @property
    def kind(self) -> str:
        claims = self.claims
        if claims.get("iss") == "liveboard-auth":
            return "scope token"
        if claims.get("role") == "service_role":
            return "service_role key"
        if "role" in claims or claims.get("aud") == "authenticated":
            return f"user token (role={claims.get('role')})"
        return "token"

    def parts(self) -> list[tuple[str, str]]:
        """What to look for: (name, text) for the payload and signature segments long enough to be
        distinctive, or the whole token when neither is."""
        segments = self.value.split(".")
        found = []
        if len(segments) >= 3 and len(segments[1]) >= MIN_SEGMENT:
            found.append(("payload segment", segments[1]))
        if len(segments) >= 2 and len(segments[-1]) >= MIN_SEGMENT:
            found.append(("signature segment", segments[-1]))
        if not found and len(self.value) >= MIN_SEGMENT:
            found.append(("token", self.value))
        return found

    def describe(self) -> str:
        claims, header = self.claims, self.header
        facts = [f"{key}={claims[key]}" for key in ("sub", "iss", "aud", "org_id") if key in claims]
        facts += [f"{key}={header[key]}" for key in ("alg", "kid") if key in header]
        where = f" in {self.test}" if self.test else ""
        return f"{self.kind} {self.value[:12]}… [{', '.join(facts)}] from {self.origin}{where}"


@dataclass(frozen=True)
class Leak:
    token: Token | None  # None: a JWT-shaped string nobody registered, in a JSON log record
    part: str
    text: str
    path: Path
    line_number: int
    line: str

    def describe(self) -> str:
        what = self.token.describe() if self.token else "unregistered JWT-shaped string " + _shape_facts(self.text)
        # The line as logged, with the matched part named and whatever else of the token it holds
        # (a truncated segment, the header) masked: the report must not become a leak itself.
        value = self.token.value if self.token else self.text
        line = self.line.replace(self.text, f"[{self.part.upper()}]")
        line = _PIECE.sub(lambda m: "[…]" if m.group() in value else m.group(), line)
        if len(line) > 400:
            line = line[:400] + "…"
        return f"{self.path}:{self.line_number}: {self.part} ({self.text[:8]}…) of {what}\n    {line}"


def _shape_facts(text: str) -> str:
    token = Token(text, "a log")
    header, claims = token.header, token.claims
    facts = [f"{key}={header[key]}" for key in ("alg", "kid") if key in header]
    facts += [f"{key}={claims[key]}" for key in ("sub", "iss", "role") if key in claims]
    return f"{text[:12]}… [{', '.join(facts)}]"


def jwt_shaped(text: str) -> list[str]:
    """The JWT-shaped substrings of ``text`` whose header decodes to a JSON object with ``alg``."""
    if "eyJ" not in text:
        return []
    found = []
    for match in JWT_SHAPE.finditer(text):
        header = _json_segment(match.group().split(".", 1)[0])
        if isinstance(header, dict) and "alg" in header:
            found.append(match.group())
    return found


class Scanner:
    """Finds any of many tokens' parts in text lines, in time linear in the text.

    Each needle (a part of ≥ ``MIN_SEGMENT`` base64url characters) is indexed under its rarest
    window of ``MIN_SEGMENT`` characters; every such window of every base64url run in a line is
    looked up, and a hit is confirmed by comparing the whole needle.
    """

    def __init__(self, tokens: Iterable[Token]) -> None:
        self.needles: dict[str, tuple[Token, str]] = {}
        self.dotted: dict[str, tuple[Token, str]] = {}  # whole tokens: rare, searched plainly
        for token in tokens:
            for part, text in token.parts():
                target = self.dotted if "." in text else self.needles
                target.setdefault(text, (token, part))
        window = MIN_SEGMENT
        offsets = {text: range(0, len(text) - window + 1, window) for text in self.needles}
        counts = Counter(text[i : i + window] for text, starts in offsets.items() for i in starts)
        self.index: dict[str, list[tuple[str, int]]] = {}
        for text, starts in offsets.items():
            offset = min(starts, key=lambda i: counts[text[i : i + window]])
            self.index.setdefault(text[offset : offset + window], []).append((text, offset))
        self.shortest = min((len(text) for text in self.needles), default=0)

    def find(self, line: str) -> list[tuple[Token, str, str]]:
        """(token, part name, matched text) for each registered token part in ``line``."""
        hits: dict[str, tuple[Token, str, str]] = {}
        if self.needles:
            for match in _RUN.finditer(line):
                run = match.group()
                if len(run) < self.shortest:
                    continue
                if run in self.needles:
                    hits[run] = (*self.needles[run], run)
                    continue
                for start in range(len(run) - MIN_SEGMENT + 1):
                    for text, offset in self.index.get(run[start : start + MIN_SEGMENT], ()):
                        if start >= offset and run.startswith(text, start - offset):
                            hits[text] = (*self.needles[text], text)
        for text, (token, part) in self.dotted.items():
            if text in line:
                hits[text] = (token, part, text)
        # Name the whole token when it is there, once, rather than each segment of it.
        results: dict[tuple[str, str], tuple[Token, str, str]] = {}
        for token, part, text in hits.values():
            if part != "token" and token.value in line:
                part, text = "token", token.value
            results.setdefault((token.value, text), (token, part, text))
        return list(results.values())

    def scan(self, path: Path, known: set[str]) -> tuple[int, list[Leak]]:
        """(lines read, leaks) of one log file; ``known``: every registered token, so a JSON
        record's JWT-shaped string is reported once, as a registered token or as unknown."""
        leaks: list[Leak] = []
        lines = 0
        seen: set[tuple[str, int]] = set()
        with open(path, encoding="utf-8", errors="replace") as log:
            for number, raw in enumerate(log, 1):
                lines += 1
                line = raw.rstrip("\n")
                for token, part, text in self.find(line):
                    if (token.value, number) not in seen:
                        seen.add((token.value, number))
                        leaks.append(Leak(token, part, text, path, number, line))
                if line.startswith("{") and "eyJ" in line and _is_log_record(line):
                    for text in jwt_shaped(line):
                        if text not in known:
                            leaks.append(Leak(None, "jwt", text, path, number, line))
        return lines, leaks


def _is_log_record(line: str) -> bool:
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return isinstance(entry, dict) and "level" in entry and "message" in entry


@dataclass
class Registry:
    tokens: dict[str, Token] = field(default_factory=dict)
    log_files: list[Path] = field(default_factory=list)

    def add_token(self, value: object, origin: str) -> None:
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        if isinstance(value, str) and value.count(".") >= 1 and value not in self.tokens:
            self.tokens[value] = Token(value, origin, os.environ.get("PYTEST_CURRENT_TEST"))

    def add_log(self, path: Path | str) -> None:
        self.log_files.append(Path(path))


REGISTRY = Registry()


def record_token(value: object, origin: str = "a test") -> None:
    """Register a token the suite uses that no hook here sees being made."""
    REGISTRY.add_token(value, origin)


def record_log_file(path: Path | str) -> None:
    """Register a log file to scan (for logs outside the session's temporary directory)."""
    REGISTRY.add_log(path)


# --- token hooks -------------------------------------------------------------------------------


def _install_token_hooks() -> None:
    """Wrap ``PyJWS.encode``: ``jwt.encode`` is ``PyJWT.encode`` bound to a global instance, which
    calls ``self._jws.encode`` at call time, so a class-level wrapper sees every token however the
    encoder was imported. ``jwt.api_jws.encode`` was bound at import: rebind it."""
    original = jwt.PyJWS.encode
    if getattr(original, "_records_tokens", False):
        return

    @functools.wraps(original)
    def encode(self: jwt.PyJWS, *args: Any, **kwargs: Any) -> str:
        token = original(self, *args, **kwargs)
        REGISTRY.add_token(token, "jwt.encode")
        return token

    encode._records_tokens = True  # type: ignore[attr-defined]
    jwt.PyJWS.encode = encode  # type: ignore[method-assign]
    jwt.api_jws.encode = jwt.api_jws._jws_global_obj.encode

    read = aiohttp.ClientResponse.read

    @functools.wraps(read)
    async def read_and_record(self: aiohttp.ClientResponse) -> bytes:
        body = await read(self)
        if body and b"eyJ" in body:
            for text in jwt_shaped(body.decode("utf-8", "replace")):
                REGISTRY.add_token(text, f"a response from {self.method} {self.url.path}")
        return body

    aiohttp.ClientResponse.read = read_and_record  # type: ignore[method-assign]


def _install_raw_token_hook() -> None:
    """``tests/auth/helpers.py`` ``raw_token`` crafts tokens without PyJWT; wrap it before the
    test modules that ``from .helpers import raw_token`` are collected."""
    try:
        from tests.auth import helpers
    except ImportError:
        return
    original = helpers.raw_token
    if getattr(original, "_records_tokens", False):
        return

    @functools.wraps(original)
    def raw_token(*args: Any, **kwargs: Any) -> str:
        token = original(*args, **kwargs)
        REGISTRY.add_token(token, "raw_token")
        return token

    raw_token._records_tokens = True  # type: ignore[attr-defined]
    helpers.raw_token = raw_token


_install_token_hooks()


# --- the in-process session log ----------------------------------------------------------------


class SessionLogHandler(logging.Handler):
    """Appends every record, formatted as the services format theirs, to one file."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.NOTSET)
        self.path = path
        self.setFormatter(JsonFormatter("test-process"))
        self.stream: TextIO | None = open(path, "a", encoding="utf-8")
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.errors += 1  # a broken log call is the test's business, not this handler's
            return
        if self.stream is not None:
            self.stream.write(line + "\n")

    def close(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
        finally:
            self.release()
        super().close()


@dataclass
class _State:
    handler: SessionLogHandler | None = None
    basetemp: Path | None = None
    result: tuple[int, int, int, list[Leak]] | None = None
    error: str | None = None


_STATE = _State()


def _ensure_logging(levels: bool) -> None:
    """(Re)attach the session handler — ``configure_logging`` drops every root handler — and, at
    the start of each test, put the service loggers back at DEBUG."""
    handler = _STATE.handler
    if handler is None:
        return
    root = logging.getLogger()
    if handler not in root.handlers:
        root.addHandler(handler)
    if levels:
        for name in VERBOSE_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)


def _basetemp(config: pytest.Config) -> Path:
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        return Path(factory.getbasetemp())
    return Path(tempfile.mkdtemp(prefix="liveboard-leaks-"))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    _install_raw_token_hook()
    if _STATE.handler is not None:
        return
    _STATE.basetemp = _basetemp(config)
    directory = _STATE.basetemp / "token-leak-check"
    directory.mkdir(parents=True, exist_ok=True)
    _STATE.handler = SessionLogHandler(directory / "in-process.log")
    _ensure_logging(levels=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _ensure_logging(levels=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    _ensure_logging(levels=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _ensure_logging(levels=False)


def collected_logs() -> list[Path]:
    """Every log file to scan: the session log, the registered ones, every ``*.log`` under the
    session's temporary directory."""
    paths: list[Path] = []
    if _STATE.handler is not None:
        paths.append(_STATE.handler.path)
    conftest = sys.modules.get("tests.conftest")
    paths += [Path(p) for p in getattr(conftest, "SERVICE_LOGS", [])]
    paths += REGISTRY.log_files
    if _STATE.basetemp is not None and _STATE.basetemp.is_dir():
        paths += sorted(_STATE.basetemp.rglob("*.log"))
    unique: dict[Path, Path] = {}
    for path in paths:
        if path.is_file():
            unique.setdefault(path.resolve(), path)
    return list(unique.values())


def check(tokens: Iterable[Token], logs: Iterable[Path]) -> tuple[int, int, list[Leak]]:
    """(files scanned, lines scanned, leaks)."""
    tokens = list(tokens)
    scanner = Scanner(tokens)
    known = {token.value for token in tokens}
    files = lines = 0
    leaks: list[Leak] = []
    for path in logs:
        try:
            count, found = scanner.scan(path, known)
        except OSError:
            continue
        files += 1
        lines += count
        leaks += found
    return files, lines, leaks


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is torn down (so every service has stopped and flushed its log)."""
    handler = _STATE.handler
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
    try:
        files, lines, leaks = check(REGISTRY.tokens.values(), collected_logs())
    except Exception as exc:  # the check must never hide the suite's own result
        _STATE.error = f"{type(exc).__name__}: {exc}"
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR if not session.exitstatus else session.exitstatus
        return
    _STATE.result = (len(REGISTRY.tokens), files, lines, leaks)
    if leaks and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if session.config.pluginmanager.get_plugin("terminalreporter") is None:
        for line in _report_lines():
            print(line, file=sys.stderr)


def _report_lines() -> Iterator[str]:
    if _STATE.error:
        yield f"token leak check: could not run: {_STATE.error}"
        return
    if _STATE.result is None:
        return
    tokens, files, lines, leaks = _STATE.result
    head = f"token leak check: {tokens} tokens, {files} log files ({lines} lines)"
    if not leaks:
        yield f"{head}, no leaks"
        return
    yield f"{head}, {len(leaks)} LEAKS:"
    for leak in leaks:
        yield "  " + leak.describe()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    lines = list(_report_lines())
    if not lines:
        return
    bad = bool(_STATE.error) or bool(_STATE.result and _STATE.result[3])
    if bad:
        terminalreporter.section("token leaks", sep="=", red=True, bold=True)
    for line in lines:
        terminalreporter.write_line(line, red=bad, bold=bad)
