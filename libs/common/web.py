"""aiohttp building blocks every service shares: the client address, JSON errors, correlation ids,
health, readiness, Prometheus metrics, the OpenAPI document, and the ``run`` entry used by
``liveboard serve``.

A service's app factory calls ``base_app`` and adds its own routes and ``cleanup_ctx`` resources;
readiness checks are registered by the code that owns the dependency (NATS, the pool).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from . import bad_requests
from .correlation import (
    CORRELATION_HEADER,
    CORRELATION_RE,
    is_valid_correlation_id,
    new_correlation_id,
)
from .errors import ApiError
from .forwarded import Network, client_address
from .tracing import continued

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]


@dataclass
class Readiness:
    """What ``/readyz`` asks: every named dependency check true, and not draining."""

    checks: dict[str, ReadyCheck] = field(default_factory=dict)
    draining: bool = False
    last: dict[str, bool] = field(default_factory=dict)

    async def report(self) -> tuple[bool, dict[str, bool]]:
        names = list(self.checks)
        results = await asyncio.gather(*(self.checks[n]() for n in names), return_exceptions=True)
        status = {name: result is True for name, result in zip(names, results, strict=True)}
        self.last = status
        return (not self.draining and all(status.values())), status


@dataclass
class ServiceInfo:
    name: str
    version: str = "0.1.0"
    description: str = ""


READINESS = web.AppKey("readiness", Readiness)
METRICS = web.AppKey("metrics_registry", CollectorRegistry)
SERVICE = web.AppKey("service_info", ServiceInfo)
TRACER = web.AppKey("tracer", trace.Tracer)
SETTINGS = web.AppKey("settings", object)
#: Path prefixes served without a per-request span or latency sample (e.g. long-lived Engine.IO).
UNTRACED_PREFIXES = web.AppKey("untraced_prefixes", tuple)


def _untraced(request: web.Request) -> bool:
    prefixes = request.app.get(UNTRACED_PREFIXES)
    return bool(prefixes) and request.path.startswith(prefixes)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body, default=str),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(code: str, message: str, status: int, **details: Any) -> web.Response:
    return json_response({"error": {"code": code, "message": message, **details}}, status=status)


#: Failures of Postgres or NATS that mean "try again soon" (503), not "bug" (500).
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    # A pooled connection a Postgres fast shutdown left half-open (found by `liveboard bench soak`).
    asyncpg.InternalClientError,
    asyncpg.TooManyConnectionsError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
)

_HTTP_CODES = {
    400: "invalid_payload",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
    503: "unavailable",
}


def client_address_middleware(trusted: Sequence[Network]) -> Callable:
    """``request.remote`` becomes the client address that ``trusted`` proxies forwarded
    (``libs/common/forwarded.py``), for every handler, middleware and python-socketio alike."""
    trusted = tuple(trusted)

    @web.middleware
    async def client_address_mw(request: web.Request, handler: Callable) -> web.StreamResponse:
        client = client_address(request.remote, request.headers, trusted)
        if client is not None and client != request.remote:
            request = request.clone(remote=client)
        return await handler(request)

    return client_address_mw


@web.middleware
async def error_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Every failure becomes ``{"error": {"code", "message"}}``; never a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response({"error": exc.to_dict()}, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "internal" if exc.status >= 500 else "invalid_payload")
        message = exc.reason if exc.text is None or exc.text.startswith(f"{exc.status}:") else exc.text
        return error_response(code, message, exc.status)
    except asyncio.CancelledError:
        raise
    except nats.errors.MaxPayloadError:  # a body within the HTTP cap but over what NATS carries
        return error_response("payload_too_large", "the request is larger than the message bus carries", 413)
    except DEPENDENCY_ERRORS as exc:
        log.warning("dependency unavailable: %s", exc, extra={"path": request.path})
        return error_response("unavailable", "a backing service is unavailable; retry shortly", 503)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return error_response("internal", "internal server error", 500)


@web.middleware
async def correlation_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
    """Bind the request's correlation id (header, or new) and its trace for the whole handler."""
    if _untraced(request):
        return await handler(request)
    cid = request.headers.get(CORRELATION_HEADER)
    if cid is not None and not is_valid_correlation_id(cid):
        return error_response("invalid_payload", "X-Correlation-Id must be 1-128 of [A-Za-z0-9._:-]", 400)
    cid = cid or new_correlation_id()
    tracer = request.app[TRACER]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    with continued(
        tracer,
        f"{request.method} {route}",
        request.headers,
        correlation_id=cid,
        attributes={"http.request.method": request.method, "http.route": route},
    ) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        response.headers[CORRELATION_HEADER] = cid
        return response


def metrics_middleware_factory(registry: CollectorRegistry) -> Callable:
    requests = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=registry)

    @web.middleware
    async def metrics_middleware(request: web.Request, handler: Callable) -> web.StreamResponse:
        if _untraced(request):
            return await handler(request)
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource else "unmatched"
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            requests.labels(request.method, route, str(status)).inc()
            latency.labels(request.method, route).observe(time.perf_counter() - started)

    return metrics_middleware


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers. Kubernetes liveness."""
    return json_response({"status": "ok", "service": request.app[SERVICE].name})


async def readyz(request: web.Request) -> web.Response:
    """Ready: dependencies answer and the service is not draining. Kubernetes readiness."""
    ready, checks = await request.app[READINESS].report()
    body = {
        "status": "ready" if ready else "unavailable",
        "checks": checks,
        "draining": request.app[READINESS].draining,
    }
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this service's registry."""
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


#: Every operation accepts the correlation header (``correlation_middleware``); a bad one is 400.
_CORRELATION_PARAMETER = {
    "name": CORRELATION_HEADER,
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": CORRELATION_RE.pattern},
}


def openapi_document(app: web.Application) -> dict[str, Any]:
    """Built from the route table: each handler's docstring and optional ``openapi`` attribute
    (``documented``), with the models its request bodies refer to under ``components.schemas``."""
    info = app[SERVICE]
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        handler = route.handler
        doc = (handler.__doc__ or "").strip().splitlines()
        operation: dict[str, Any] = {
            "summary": doc[0] if doc else path,
            "responses": {
                "200": {"description": "OK"},
                "default": {
                    "description": "Error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
        params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        operation["parameters"] = [
            {"name": p.split(":")[0], "in": "path", "required": True, "schema": {"type": "string"}} for p in params
        ]
        extra = dict(getattr(handler, "openapi", None) or {})
        schemas.update(extra.pop("x-schemas", {}))
        extra["parameters"] = [*operation["parameters"], *extra.get("parameters", []), _CORRELATION_PARAMETER]
        operation.update(extra)
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Liveboard {info.name}", "version": info.version, "description": info.description},
        "paths": paths,
        "components": {
            "schemas": {
                **schemas,
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


async def openapi(request: web.Request) -> web.Response:
    """This service's OpenAPI 3.1 document."""
    return json_response(openapi_document(request.app))


def documented(body: type[BaseModel] | None = None, **extra: Any) -> Callable:
    """Attach OpenAPI details (a request body model, responses) to a handler."""

    def wrap(handler: Callable) -> Callable:
        spec: dict[str, Any] = dict(extra)
        if body is not None:
            # Nested models are components: a ``#/$defs/...`` reference inside a body schema would
            # resolve against the document's root, where there is no ``$defs``.
            schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
            spec["x-schemas"] = schema.pop("$defs", {})
            spec["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        handler.openapi = spec  # type: ignore[attr-defined]
        return handler

    return wrap


async def read_json(request: web.Request, model: type[BaseModel] | None = None, *, max_bytes: int = 1 << 20) -> Any:
    """The request body as JSON (validated against ``model`` when given), or a 400/413 ApiError."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError("payload_too_large", f"body over {max_bytes} bytes")
    try:
        raw = await request.content.read(max_bytes + 1)
    except (HttpProcessingError, web.RequestPayloadError) as exc:  # broken chunked or compressed body
        raise ApiError("invalid_payload", f"the body cannot be read: {type(exc).__name__}") from None
    if len(raw) > max_bytes:
        raise ApiError("payload_too_large", f"body over {max_bytes} bytes")
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise ApiError("invalid_payload", "body is not valid JSON") from None
    if model is None:
        return data
    return validate(model, data)


def validate(model: type[BaseModel], data: Any) -> Any:
    """``model`` built from ``data``, or ``invalid_payload`` naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError("invalid_payload", f"{where}: {first['msg']}") from None


#: Largest request header line accepted. Supabase tokens are ~1 KiB, but the contract (§7)
#: promises that tokens up to 16 KiB reach the application and get a JSON 401 (aiohttp cuts at 8190).
MAX_HEADER_FIELD_SIZE = 20 * 1024


def base_app(
    info: ServiceInfo,
    tracer: trace.Tracer,
    *,
    client_max_size: int = 1 << 20,
    middlewares: list[Callable] | None = None,
    trusted_proxies: Sequence[Network] = (),
) -> web.Application:
    """An application with the shared middlewares and endpoints; the service adds the rest.

    ``trusted_proxies``: the networks whose X-Forwarded-For / Forwarded are believed
    (``TRUSTED_PROXIES``); empty, the TCP peer is the client and no header is read.
    """
    registry = CollectorRegistry()
    bad_requests.install()  # a request aiohttp cannot parse: one warning line, not a traceback
    # Outermost first: the client address before anything reads it (audit refusals, limits);
    # metrics see the final status; errors are rendered inside the request span.
    forwarded = [client_address_middleware(trusted_proxies)] if trusted_proxies else []
    app = web.Application(
        middlewares=[
            *forwarded,
            metrics_middleware_factory(registry),
            correlation_middleware,
            error_middleware,
            *(middlewares or []),
        ],
        client_max_size=client_max_size,
        # handler_args reach the HTTP server that both ``web.run_app`` and the test server build.
        handler_args={"max_field_size": MAX_HEADER_FIELD_SIZE},
    )
    app[SERVICE] = info
    app[TRACER] = tracer
    app[METRICS] = registry
    app[READINESS] = Readiness()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)

    async def drain_on_shutdown(app: web.Application) -> None:
        app[READINESS].draining = True

    app.on_shutdown.append(drain_on_shutdown)
    return app


def run(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 10.0, reuse_port: bool = False
) -> None:
    """Serve until SIGINT/SIGTERM, then run the shutdown and cleanup hooks (graceful)."""
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout,
        print=None,
        access_log=logging.getLogger("aiohttp.access"),
        reuse_port=reuse_port,
        handle_signals=True,
    )
