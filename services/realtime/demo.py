"""The demo board page (CONTRACT §4: ``/`` serves it, ``/#token=JWT&board=ID`` opens a board).

Why the realtime service serves it: the page is the reference browser client of the Socket.IO
contract, and serving it from the same origin as ``/socket.io/`` means no CORS, a CSP of
``'self'`` and nothing else to deploy. The page talks to nothing but this origin's socket
(organizations come from ``connection_established``, the board's from the join), so auth and
boards stay cluster-internal.

What is served, and only that:

- ``/`` — ``web/index.html``, with the versioned URL of the Socket.IO client filled in;
- ``/static/<name>.{js,css,svg}`` — files directly in ``web/`` (a name pattern without slashes or
  dots, and a lookup in that one directory: no traversal is expressible);
- ``/static/vendor/socket.io-client/<version>/socket.io.esm.min.js`` (and its source map) — the
  official client from ``web/node_modules`` as installed by ``npm ci`` from the lock file; the
  version is in the URL so it can be cached for a year;
- ``/static/vendor/liveboard-client/<version>/<name>.js`` — the ES modules of our own SDK
  (``@liveboard/client``, ``clients/js/dist`` as ``make sdk`` built it, or ``web/sdk`` in an
  installed package), with its one bare import (``'socket.io-client'``) pointed at the versioned
  client above, so the browser needs neither an import map (an inline script) nor a bundler;
- ``/sw.js`` — the service worker that keeps the page and these files for a reload while offline.

Our own files are revalidated on every load (``no-cache`` + ETag), so a deploy is visible at
once and an unchanged file costs a 304. Files are re-read when their mtime changes, which keeps
editing the page during ``liveboard dev`` a reload away.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parent / "web"
CLIENT_DIR = WEB_DIR / "node_modules" / "socket.io-client"
CLIENT_FILES = ("socket.io.esm.min.js", "socket.io.esm.min.js.map")
CLIENT_PLACEHOLDER = "%SOCKET_IO_CLIENT_URL%"
#: The SDK's build: copied next to the page in an installed package (the Docker image), else the
#: repository's ``clients/js/dist`` (``make sdk``).
SDK_DIRS = (WEB_DIR / "sdk", Path(__file__).resolve().parents[2] / "clients" / "js" / "dist")
SDK_PLACEHOLDER = "%LIVEBOARD_CLIENT_URL%"
PRECACHE_PLACEHOLDER = '["%PRECACHE%"]'
_SDK_NAME = re.compile(r"^[a-z]{1,32}\.js$")
_BARE_IMPORT = re.compile(rb"""from ['"]socket\.io-client['"]""")
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(js|css|svg)$")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "map": "application/json; charset=utf-8",
}

#: Scripts, styles and sockets from this origin only; no inline code, no framing, no plugins.
#: ``connect-src 'self'`` covers ``ws:``/``wss:`` to this host in CSP Level 3 browsers.
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # The token travels in the fragment, which browsers never send; no Referer at all is simpler still.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[int, int]  # (mtime_ns, size): re-read when either changes
    body: bytes
    etag: str


class _Files:
    """Bytes and ETags of served files, re-read only when the file changed on disk."""

    def __init__(self) -> None:
        self._cache: dict[Path, _Loaded] = {}

    def get(self, path: Path) -> _Loaded | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        loaded = self._cache.get(path)
        if loaded is None or loaded.stamp != stamp:
            body = path.read_bytes()
            loaded = _Loaded(stamp, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
            self._cache[path] = loaded
        return loaded


FILES = web.AppKey("demo_files", _Files)


def client_version() -> str | None:
    """The installed socket.io-client's version, or ``None`` when ``npm ci`` has not been run."""
    try:
        version = json.loads((CLIENT_DIR / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version if isinstance(version, str) and re.fullmatch(r"[0-9A-Za-z.+-]{1,32}", version) else None


def sdk_dir() -> Path | None:
    """Where the SDK's ES modules are, or ``None`` when it has not been built (``make sdk``)."""
    return next((d for d in SDK_DIRS if (d / "index.js").is_file()), None)


def sdk_version() -> str | None:
    folder = sdk_dir()
    if folder is None:
        return None
    for package in (folder / "package.json", folder.parent / "package.json"):
        try:
            version = json.loads(package.read_text())["version"]
        except (OSError, ValueError, KeyError):
            continue
        if isinstance(version, str) and re.fullmatch(r"[0-9A-Za-z.+-]{1,32}", version):
            return version
    return None


def _client_url() -> str:
    version = client_version()
    return f"/static/vendor/socket.io-client/{version}/{CLIENT_FILES[0]}" if version else ""


def _sdk_url(name: str = "index.js") -> str:
    version = sdk_version()
    return f"/static/vendor/liveboard-client/{version}/{name}" if version and client_version() else ""


def _respond(request: web.Request, loaded: _Loaded, content_type: str, cache: str) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": loaded.etag}
    if loaded.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=loaded.body, headers={**headers, "Content-Type": content_type})


async def page(request: web.Request) -> web.Response:
    """The demo board page (sign in from ``#token=...&board=...`` or by pasting a token)."""
    loaded = request.app[FILES].get(WEB_DIR / "index.html")
    if loaded is None:
        raise web.HTTPNotFound(text="the demo page is not installed")
    body = loaded.body.replace(CLIENT_PLACEHOLDER.encode(), _client_url().encode())
    body = body.replace(SDK_PLACEHOLDER.encode(), _sdk_url().encode())
    filled = _Loaded(loaded.stamp, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return _respond(request, filled, CONTENT_TYPES["html"], REVALIDATE)


async def asset(request: web.Request) -> web.Response:
    """A script, stylesheet or icon of the page (files directly in ``web/``, nothing else)."""
    name = request.match_info["name"]
    match = _ASSET_NAME.fullmatch(name)
    loaded = request.app[FILES].get(WEB_DIR / name) if match else None
    if match is None or loaded is None:
        raise web.HTTPNotFound(text="no such asset")
    return _respond(request, loaded, CONTENT_TYPES[match.group(1)], REVALIDATE)


async def socketio_client(request: web.Request) -> web.Response:
    """The official socket.io-client ES module, as ``npm ci`` installed it (cached for a year)."""
    name = request.match_info["name"]
    if name not in CLIENT_FILES or request.match_info["version"] != client_version():
        raise web.HTTPNotFound(text="no such client file (run `npm ci` in services/realtime/web)")
    loaded = request.app[FILES].get(CLIENT_DIR / "dist" / name)
    if loaded is None:
        raise web.HTTPNotFound(text="socket.io-client is not installed (run `npm ci` in services/realtime/web)")
    return _respond(request, loaded, CONTENT_TYPES[name.rsplit(".", 1)[1]], IMMUTABLE)


async def sdk_module(request: web.Request) -> web.Response:
    """One ES module of ``@liveboard/client``, importing the versioned socket.io-client."""
    name = request.match_info["name"]
    folder = sdk_dir()
    if not _SDK_NAME.fullmatch(name) or folder is None or request.match_info["version"] != sdk_version():
        raise web.HTTPNotFound(text="no such SDK file (run `make sdk`)")
    loaded = request.app[FILES].get(folder / name)
    client = _client_url()
    if loaded is None or not client:
        raise web.HTTPNotFound(text="no such SDK file (run `make sdk`)")
    body = _BARE_IMPORT.sub(f"from '{client}'".encode(), loaded.body)
    filled = _Loaded(loaded.stamp, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    # Revalidated, not immutable: a rebuilt SDK keeps its version number during development.
    return _respond(request, filled, CONTENT_TYPES["js"], REVALIDATE)


def _precache() -> list[str]:
    """What the service worker keeps for an offline reload: the page, its files and the SDK."""
    urls = ["/"]
    urls += [
        f"/static/{p.name}" for p in sorted(WEB_DIR.iterdir()) if _ASSET_NAME.fullmatch(p.name) and p.name != "sw.js"
    ]
    if _client_url():
        urls.append(_client_url())
    folder = sdk_dir()
    if folder is not None and _sdk_url():
        urls += [_sdk_url(p.name) for p in sorted(folder.glob("*.js")) if _SDK_NAME.fullmatch(p.name)]
    return urls


async def service_worker(request: web.Request) -> web.Response:
    """``web/sw.js`` at the root (its scope is the page), with the list of files to keep."""
    loaded = request.app[FILES].get(WEB_DIR / "sw.js")
    if loaded is None:
        raise web.HTTPNotFound(text="no service worker")
    body = loaded.body.replace(PRECACHE_PLACEHOLDER.encode(), json.dumps(_precache()).encode())
    filled = _Loaded(loaded.stamp, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return _respond(request, filled, CONTENT_TYPES["js"], REVALIDATE)


def add_routes(app: web.Application) -> None:
    app[FILES] = _Files()
    app.router.add_get("/", page)
    app.router.add_get("/sw.js", service_worker)
    app.router.add_get("/static/vendor/liveboard-client/{version}/{name}", sdk_module)
    app.router.add_get("/static/vendor/socket.io-client/{version}/{name}", socketio_client)
    app.router.add_get("/static/{name}", asset)
