"""How the realtime service serves the demo page: content types, CSP and security headers,
cache validators, the versioned Socket.IO client, and nothing outside ``web/``.

In-process (the realtime app from its factory on the session's NATS): no browser needed.
"""

from __future__ import annotations

import re

import pytest

from services.realtime import demo


@pytest.fixture
async def client(aiohttp_client, make_app):
    return await aiohttp_client(make_app("realtime"))


async def test_the_page_comes_with_a_strict_policy_and_revalidation(client):
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = response.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ):
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-cache"
    html = await response.text()
    assert "<script>" not in html and " style=" not in html  # nothing inline for the CSP to allow
    client_url = re.search(r'name="liveboard:socket-io-client" content="([^"]+)"', html).group(1)
    assert client_url == f"/static/vendor/socket.io-client/{demo.client_version()}/socket.io.esm.min.js"

    again = await client.get("/", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("board.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_have_their_content_type_and_an_etag(client, name, content_type):
    response = await client.get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Content-Security-Policy"] == demo.CSP
    assert (await client.get(f"/static/{name}", headers={"If-None-Match": response.headers["ETag"]})).status == 304
    assert (await client.head(f"/static/{name}")).status == 200


async def test_the_official_client_is_served_from_node_modules_and_cached_for_a_year(client):
    version = demo.client_version()
    assert version, "run `npm ci` in services/realtime/web"
    response = await client.get(f"/static/vendor/socket.io-client/{version}/socket.io.esm.min.js")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    body = await response.read()
    assert body == (demo.CLIENT_DIR / "dist" / "socket.io.esm.min.js").read_bytes()
    # Another version is not this file: a stale page must not get a mismatched client.
    assert (await client.get("/static/vendor/socket.io-client/0.0.1/socket.io.esm.min.js")).status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/static/..%2Fdemo.py",
        "/static/%2e%2e%2fdemo.py",
        "/static/..%5Cdemo.py",
        "/static/package.json",
        "/static/package-lock.json",
        "/static/index.html",
        "/static/.hidden.js",
        "/static/node_modules%2Fsocket.io-client%2Fpackage.json",
        "/static/vendor/socket.io-client/x/..%2F..%2Fpackage.json",
        "/static/vendor/socket.io-client/4.8.1/socket.io.js",
        "/static/vendor/socket.io-client/..%2F..%2F..%2Fdemo.py/socket.io.esm.min.js",
        "/static/no-such-file.js",
    ],
)
async def test_nothing_outside_the_page_is_reachable(client, path):
    response = await client.get(path)
    assert response.status == 404, path
    assert response.headers["Content-Type"].startswith("application/json")  # the services' error shape


async def test_without_npm_ci_the_page_still_loads_and_says_what_is_missing(client, monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "CLIENT_DIR", tmp_path / "socket.io-client")
    html = await (await client.get("/")).text()
    assert 'name="liveboard:socket-io-client" content=""' in html
    assert (await client.get("/static/vendor/socket.io-client/4.8.1/socket.io.esm.min.js")).status == 404
