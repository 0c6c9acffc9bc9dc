"""The API's app factory: routes over a read store, keys, pipeline status and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AdminOps, ApiContext
from api.envelope import fail, request_id_from
from api.errors import (
    INTERNAL_ERROR,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    VALIDATION_ERROR,
    ApiError,
)
from api.keys import KeyRing
from api.limits import Limits, LimitsMiddleware
from api.readstore import ReadStore
from api.receipts import RECEIPT_WINDOW
from api.routes import admin as admin_routes
from api.routes import campaigns, health, stream, ui
from api.routes import extra as extra_views
from api.routing import Owners, RoutingMiddleware
from projector.intake.feed import ChangeFeed
from projector.intake.health import PipelineSnapshot
from projector.intake.metrics import Metrics

log = logging.getLogger(__name__)

DESCRIPTION = """\
Read-only analytics of campaign runs, projected from the dispatch events.

Authenticate with the `X-API-Key` header. Every response is an envelope
`{success, data, errors, request_id}`; errors carry a stable `code`. Data
responses tell their freshness in `X-Projection-Watermark` / `X-Projection-Lag`
and carry a weak `ETag`: poll with `If-None-Match` to get `304` while nothing
changed.
"""


class RequestContextMiddleware:
    """Request id in and out, latency by route template, and the last-resort 500.

    Plain ASGI rather than ``BaseHTTPMiddleware``: no extra task per request.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        supplied = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                supplied = value.decode("latin-1")
                break
        request_id = request_id_from(supplied)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            route = scope.get("route")
            log.exception(
                "unhandled error in %s %s (request %s)",
                scope["method"], getattr(route, "path", "?"), request_id,
            )
            if started:
                raise
            response = fail(500, INTERNAL_ERROR, ApiError.public_message, request_id)
            await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )


def _request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else request_id_from(None)


async def _api_error(request: Request, exc: Exception) -> Response:
    """The one mapping of domain errors to HTTP: status and code come from the error class."""
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        # A 503 with Retry-After is a state the client is told to wait out
        # (a partition moving, restoring): worth a debug line, not an error.
        level = logging.DEBUG if "Retry-After" in (exc.headers or {}) else logging.ERROR
        log.log(level, "request %s failed: %s", _request_id(request), exc)
    return fail(exc.status, exc.code, exc.client_message, _request_id(request),
                headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Location and message only: the offending input is not echoed back.
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return fail(422, VALIDATION_ERROR, "; ".join(parts) or "Invalid request.", _request_id(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}.get(exc.status_code, f"HTTP_{exc.status_code}")
    message = {404: "No such endpoint.", 405: "Method not allowed."}.get(
        exc.status_code, str(exc.detail)
    )
    if exc.status_code == 304 or exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return fail(exc.status_code, code, message, _request_id(request), headers=exc.headers)


def create_app(
    reader: ReadStore,
    *,
    keys: KeyRing,
    status: Callable[[], PipelineSnapshot],
    metrics: Metrics,
    limits: Limits | None = None,
    feed: ChangeFeed | None = None,
    admin: AdminOps | None = None,
    owners: Owners | None = None,
    receipt_window: timedelta = RECEIPT_WINDOW,
) -> FastAPI:
    """The HTTP API over ``reader``.

    Args:
        reader: where projections are read (live store cursors or a read-only file).
        keys: the API keys and their workspaces and scopes.
        status: the pipeline's current position, lag and readiness.
        metrics: registry served at /metrics; HTTP latency is recorded in it.
        limits: request-size and rate limits (``api.limits.Limits()`` when None).
        feed: the writer's flush notifications, pushed by /stream (None: streams poll).
        admin: the swap of the live database (None: nothing to swap).
        owners: which node owns which partition, when several share them; requests
            for a campaign another node owns are forwarded there, and the campaign
            list is gathered from all (``api.routing``). None: one node, all here.
        receipt_window: how long after its send a receipt is overdue (``api.receipts``).
    """
    app = FastAPI(
        title="Campaign analytics API",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    ctx = ApiContext(
        reader=reader, keys=keys, status=status, metrics=metrics, feed=feed, admin=admin,
        owners=owners, receipt_window=receipt_window,
    )
    app.state.ctx = ctx
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(campaigns.router)
    app.include_router(health.router)
    app.include_router(extra_views.router)
    app.include_router(stream.router)
    app.include_router(ui.router)
    app.include_router(admin_routes.router)
    if owners is not None:
        # Inside the limits: a request is measured and rate limited where it arrives,
        # before it is forwarded (docs/decisions/0031-routing-as-asgi-middleware.md).
        app.add_middleware(RoutingMiddleware, owners=owners, proxy=ctx.proxy, metrics=metrics)
    # Inside the request context: rejections carry the request id and are timed.
    app.add_middleware(LimitsMiddleware, keys=keys, limits=limits)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


