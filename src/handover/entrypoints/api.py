"""The HTTP API (SPEC 5), compatible with Lern userorg-service: ``POST /v1/user/ownership/transfer`` validates a
request (``domain.transfer_request``) and publishes one event per object to the event sink (Kafka, or the
embedded store's queue); ``GET /v1/user/ownership/transfer/{requestId}`` shows what became of those events;
``/health``, ``/metrics`` and the OpenAPI document (``/openapi.json``, ``/docs``, ``/redoc``; these and
``/metrics`` need a token when ``auth.protect_metrics_and_docs`` is set; the pages' scripts and styles are served
by the app from the ``fastapi-offline`` package, under ``/docs-assets/``, so they work without internet); ``/``
redirects to the console (``/admin``). Every answer is a Sunbird envelope; bad
input is a 4xx, never a 500. Each route is also served under Sunbird's API-gateway prefix (``/api/user/v1/...``).
Authentication: ``entrypoints.auth`` (the user's token in ``x-authenticated-user-token`` or ``Authorization``).
"""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from handover.bootstrap import ApiParts, App, api_parts
from handover.config import ConfigError
from handover.domain.text import text_problem
from handover.entrypoints.api_audit import router as audit_router  # preview, undo, changes (SPEC 10)
from handover.entrypoints.api_common import (
    _ERRORS,
    API_OTHER,
    ERR_INVALID,
    ERR_SERVER,
    SECURITY,
    SECURITY_SCHEMES,
    STATUS_PATHS,
    TRANSFER_BODY_SCHEMA,
    TRANSFER_PATHS,
    Api,
    ApiError,
    Envelope,
    api_requests,
    envelope,
    request_id_of,
)
from handover.entrypoints.api_report import router as report_router  # the deleted-owner report (SPEC 12)
from handover.entrypoints.auth import JwtAuth, authenticator
from handover.entrypoints.console import is_console_path, no_such_page
from handover.entrypoints.console import router as console_router  # the admin console at /admin (SPEC 11)
from handover.entrypoints.console_report import router as console_report_router  # its deleted-owner page
from handover.metrics import exposition

log = logging.getLogger(__name__)

DOCS_ASSETS = {  # the Swagger UI and ReDoc files that fastapi-offline ships, served at /docs-assets/<name>
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")

def create_app(
    app: App,
    parts: ApiParts | None = None,
    *,
    auth: JwtAuth | bool | None = True,
    max_body_bytes: int | None = None,
) -> FastAPI:
    """The FastAPI application. ``parts`` defaults to ``bootstrap.api_parts(app)``; ``auth=True`` takes the
    authenticator from the settings (a ``ConfigError`` when ``auth.mode`` is jwt without a key, or when
    ``auth.protect_metrics_and_docs`` is set without authentication)."""
    parts = parts if parts is not None else api_parts(app)
    checker = authenticator(app.settings) if auth is True else (auth or None)
    protect = bool(app.settings["auth.protect_metrics_and_docs"])
    if protect and checker is None:
        raise ConfigError("auth.protect_metrics_and_docs needs auth.mode = jwt (there is no token to check)")
    limit = max_body_bytes or app.settings["api.max_body_bytes"]
    api = Api(app, parts, checker, limit)
    fast = FastAPI(
        title="handover",
        version="0.1.0",
        summary="Sunbird asset ownership transfer (Lern userorg-compatible API)",
        openapi_url=None,  # served below, behind the token check when auth.protect_metrics_and_docs is set
        docs_url=None,
        redoc_url=None,
    )
    fast.state.api = api

    for path in TRANSFER_PATHS:
        fast.add_api_route(
            path,
            api.transfer,
            methods=["POST"],
            response_model=Envelope,
            responses=_ERRORS,
            summary="Submit an ownership transfer",
            operation_id="transfer" + ("_gateway" if path.startswith("/api") else ""),
            openapi_extra={
                "requestBody": {"required": True, "content": {"application/json": {"schema": TRANSFER_BODY_SCHEMA}}},
                "security": SECURITY,
            },
        )
    for path in STATUS_PATHS:
        fast.add_api_route(
            path,
            api.status,
            methods=["GET"],
            response_model=Envelope,
            responses={k: v for k, v in _ERRORS.items() if k not in (400, 413)}
            | {404: {"model": Envelope, "description": "Unknown request id"}},
            summary="The outcome of each event of a request",
            operation_id="status" + ("_gateway" if path.startswith("/api") else ""),
            openapi_extra={"security": SECURITY},
        )
    fast.include_router(audit_router)
    fast.include_router(report_router)
    fast.include_router(console_router)
    fast.include_router(console_report_router)
    fast.add_api_route(
        "/health",
        api.health,
        methods=["GET"],
        response_model=Envelope,
        responses={503: {"model": Envelope, "description": "Store or worker down"}},
        summary="Liveness of the store and the in-process worker",
    )

    def refused(request: Request) -> Response | None:
        """With ``auth.protect_metrics_and_docs``: the 401 answer when the request has no good token."""
        if not protect:
            return None
        try:
            api.authenticate(request)
        except ApiError as exc:
            return envelope(API_OTHER, request_id_of(request), exc.status, None, exc.err, exc.errmsg, exc.headers)
        return None

    def prometheus(request: Request) -> Response:
        return refused(request) or Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    fast.add_api_route(
        "/metrics",
        prometheus,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )

    def openapi() -> dict[str, Any]:
        if fast.openapi_schema is None:
            schema = get_openapi(title=fast.title, version=fast.version, summary=fast.summary, routes=fast.routes)
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            fast.openapi_schema = schema
        return fast.openapi_schema

    fast.openapi = openapi  # type: ignore[method-assign]

    def document_url(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") + "/openapi.json"

    def openapi_document(request: Request) -> Response:
        return refused(request) or JSONResponse(fast.openapi())

    def asset_url(request: Request, name: str) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") + "/docs-assets/" + name

    def offline(page: Response) -> Response:
        """Nothing outside the server is fetched (ReDoc links a logo from its CDN: refused by the policy)."""
        page.headers["Content-Security-Policy"] = DOCS_POLICY
        return page

    def swagger_ui(request: Request) -> Response:
        return refused(request) or offline(get_swagger_ui_html(
            openapi_url=document_url(request), title="handover - Swagger UI",
            swagger_js_url=asset_url(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset_url(request, "swagger-ui.css"),
            swagger_favicon_url=asset_url(request, "favicon.png"),
        ))

    def redoc(request: Request) -> Response:
        return refused(request) or offline(get_redoc_html(
            openapi_url=document_url(request), title="handover - ReDoc",
            redoc_js_url=asset_url(request, "redoc.standalone.js"),
            redoc_favicon_url=asset_url(request, "favicon.png"), with_google_fonts=False,
        ))

    def docs_asset(name: str) -> Response:
        media = DOCS_ASSETS.get(name)
        if media is None:
            raise StarletteHTTPException(404, "Not Found")
        path = files("fastapi_offline") / "static" / name
        return FileResponse(str(path), media_type=media, headers={"Cache-Control": "max-age=86400"})

    def home(request: Request) -> Response:
        return RedirectResponse(str(request.scope.get("root_path", "")).rstrip("/") + "/admin", status_code=307)

    for path, endpoint in (("/openapi.json", openapi_document), ("/docs", swagger_ui), ("/redoc", redoc),
                           ("/docs-assets/{name}", docs_asset), ("/", home)):
        fast.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
    _install_error_handlers(fast)
    _install_input_check(fast)
    _install_metrics(fast)
    return fast


def _install_error_handlers(fast: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404 and request.method == "GET" and is_console_path(request):
            return no_such_page(request)
        names = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return envelope(
            API_OTHER,
            request_id_of(request),
            exc.status_code,
            None,
            names.get(exc.status_code, f"HTTP_{exc.status_code}"),
            str(exc.detail),
            getattr(exc, "headers", None),
        )

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        return envelope(API_OTHER, request_id_of(request), 400, None, ERR_INVALID, "Invalid request parameters.")

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return envelope(API_OTHER, request_id_of(request), 500, None, ERR_SERVER, "server error")

    fast.add_exception_handler(StarletteHTTPException, http_error)
    fast.add_exception_handler(RequestValidationError, validation_error)
    fast.add_exception_handler(Exception, server_error)


def _install_input_check(fast: FastAPI) -> None:
    """A path or query string no store can keep (a NUL, a lone surrogate, e.g. ``/transfer/%00``) is a 400
    before any handler looks anything up with it (SPEC 5). A plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` costs a task group and a stream per request (issue 15)."""

    class RefuseUnstorable:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                path = str(scope.get("path", ""))
                query = unquote(scope.get("query_string", b"").decode("latin-1"), errors="replace")
                for name, text in (("The URL path", path), ("The query string", query)):
                    problem = text_problem(text)
                    if problem is not None:
                        message = f"{name} contains {problem}."
                        answer = envelope(API_OTHER, request_id_of(Request(scope)), 400, None, ERR_INVALID, message)
                        await answer(scope, receive, send)
                        return
            await self.app(scope, receive, send)

    fast.add_middleware(RefuseUnstorable)


def _install_metrics(fast: FastAPI) -> None:
    class CountRequests:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            status = 0

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            await self.app(scope, receive, sending)
            path = getattr(scope.get("route"), "path", "unmatched")
            api_requests.labels(scope["method"], path, str(status)).inc()

    fast.add_middleware(CountRequests)
