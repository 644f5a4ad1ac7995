"""The HTTP API (SPEC 5), compatible with Lern userorg-service: ``POST /v1/user/ownership/transfer`` validates a
request (``domain.transfer_request``) and publishes one event per object to the event sink (Kafka, or the
embedded store's queue); ``GET /v1/user/ownership/transfer/{requestId}`` shows what became of those events;
``/health``, ``/metrics`` and the OpenAPI document (``/openapi.json``, ``/docs``, ``/redoc``; these and
``/metrics`` need a token when ``auth.protect_metrics_and_docs`` is set). Every answer is a Sunbird envelope; bad
input is a 4xx, never a 500. Each route is also served under Sunbird's API-gateway prefix (``/api/user/v1/...``).
Authentication: ``entrypoints.auth`` (the user's token in ``x-authenticated-user-token`` or ``Authorization``).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from handover.bootstrap import ApiParts, App, api_parts
from handover.config import ConfigError
from handover.domain.model import User
from handover.domain.text import first_bad_string, text_problem
from handover.domain.transfer_request import SUBMITTED, InvalidRequest, build_events, validate
from handover.entrypoints.auth import USER_TOKEN_HEADER, AuthError, JwtAuth, authenticator
from handover.service.ports import DuplicateRequest, PublishError

log = logging.getLogger(__name__)

TRANSFER_PATHS = ("/v1/user/ownership/transfer", "/api/user/v1/ownership/transfer")
STATUS_PATHS = tuple(p + "/{requestId}" for p in TRANSFER_PATHS)
API_TRANSFER = "api.user.ownership.transfer"
API_STATUS = "api.user.ownership.transfer.status"
API_HEALTH = "api.health"
API_OTHER = "api.handover"

MAX_DEPTH = 64  # as events.MAX_DEPTH: deeper requests would produce events the worker rejects
DEFAULT_MAX_BODY_BYTES = 1_000_000

# error codes beyond the validation ones of domain.transfer_request ("UOS_" + "UOWNTRANS" + upstream key)
ERR_INVALID = "UOS_UOWNTRANS0028"
ERR_UNAUTHORIZED = "UOS_UOWNTRANS0070"
ERR_FORBIDDEN = "UOS_UOWNTRANS0071"
ERR_NOT_FOUND = "UOS_UOWNTRANS0013"
ERR_SERVER = "UOS_UOWNTRANS0069"
ERR_TOO_LARGE = "UOS_UOWNTRANS0028"
ERR_DUPLICATE = "UOS_UOWNTRANS0029"  # as api_audit.ERR_CONFLICT: a conflict with an earlier request

# the OpenAPI security of the routes that take a token: either scheme
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"userToken": []}]
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "direct calls"},
    "userToken": {"type": "apiKey", "in": "header", "name": USER_TOKEN_HEADER,
                  "description": "the user's token as Sunbird clients send it (through the API gateway)"},
}

RESPONSE_CODES = {200: "OK", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "RESOURCE_NOT_FOUND", 429: "TOO_MANY_REQUESTS"}

_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

api_requests = Counter("api_requests", "HTTP API requests, by route and status", ["method", "route", "status"])
api_events_published = Counter("api_events_published", "Events the HTTP API published")


# --- envelope ---------------------------------------------------------------------------------------


class Params(BaseModel):
    resmsgid: str
    msgid: str | None
    err: str | None
    status: str = Field(description="SUCCESS or FAILED")
    errmsg: str | None


class Envelope(BaseModel):
    """The Sunbird response envelope."""

    id: str
    ver: str
    ts: str
    params: Params
    responseCode: str = Field(description="OK, CLIENT_ERROR, SERVER_ERROR, UNAUTHORIZED, FORBIDDEN, ...")
    result: dict[str, Any]


def sunbird_ts(now: datetime | None = None) -> str:
    """Sunbird's ``yyyy-MM-dd HH:mm:ss:SSSZ``."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y-%m-%d %H:%M:%S:") + f"{now.microsecond // 1000:03d}" + now.strftime("%z")


def response_code(status: int) -> str:
    if status in RESPONSE_CODES:
        return RESPONSE_CODES[status]
    return "SERVER_ERROR" if status >= 500 else "CLIENT_ERROR"


def envelope(
    api_id: str,
    msgid: str | None,
    status: int = 200,
    result: Mapping[str, Any] | None = None,
    err: str | None = None,
    errmsg: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {
        "id": api_id,
        "ver": "v1",
        "ts": sunbird_ts(),
        "params": {
            "resmsgid": str(uuid.uuid4()),
            "msgid": msgid,
            "err": err,
            "status": "SUCCESS" if status < 400 else "FAILED",
            "errmsg": errmsg,
        },
        "responseCode": response_code(status),
        "result": dict(result or {}),
    }
    out = dict(headers or {})
    if msgid:
        out["X-Request-ID"] = msgid
    return JSONResponse(body, status_code=status, headers=out)


class ApiError(Exception):
    def __init__(self, status: int, err: str, errmsg: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(errmsg)
        self.status, self.err, self.errmsg, self.headers = status, err, errmsg, headers


def request_id_of(request: Request) -> str:
    """``X-Request-ID``, else ``X-msgId`` (as userorg-service), else a new UUID."""
    for name in ("x-request-id", "x-msgid"):
        value = request.headers.get(name, "").strip()
        if _REQUEST_ID.fullmatch(value):
            return value
    return str(uuid.uuid4())


# --- request body -----------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = ApiError(413, ERR_TOO_LARGE, f"Request body is larger than {limit} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_body(raw: bytes) -> Any:
    """JSON of at most ``MAX_DEPTH`` levels (NaN and Infinity are not JSON); 400 otherwise."""
    if not raw.strip():
        raise ApiError(400, ERR_INVALID, "Request body is empty.")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, ERR_INVALID, "Request body is not valid JSON.") from None
    except RecursionError:
        doc = None
        too_deep = True
    else:
        too_deep = depth_exceeds(doc, MAX_DEPTH)
    if too_deep:
        raise ApiError(400, ERR_INVALID, f"Request body is nested deeper than {MAX_DEPTH} levels.")
    bad = first_bad_string(doc)
    if bad is not None:  # no store can keep it (SPEC 5): refused before anything reads the store with it
        raise ApiError(400, ERR_INVALID, f"{bad[0]} contains {bad[1]}.")
    return doc


def depth_exceeds(doc: Any, limit: int) -> bool:
    """True when arrays/objects nest deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def claimed_action_by(doc: Any) -> str | None:
    """``request.actionBy.userId`` as sent (before validation), for the token check."""
    request = doc.get("request") if isinstance(doc, dict) else None
    action_by = request.get("actionBy") if isinstance(request, dict) else None
    user_id = action_by.get("userId") if isinstance(action_by, dict) else None
    return user_id.strip() if isinstance(user_id, str) else None


# --- the user directory, through the store's unit of work ------------------------------------------


class UnitOfWorkDirectory:
    """``transfer_request.Directory`` over a unit of work's user directory."""

    def __init__(self, users: Any) -> None:
        self._users = users

    def user(self, user_id: str) -> User | None:
        found: User | None = self._users.get(user_id)
        return found

    def organisation_exists(self, organisation_id: str) -> bool:
        check: Callable[[str], bool] | None = getattr(self._users, "organisation_exists", None)
        if check is None:  # a directory that cannot tell: let the request through, as before the check existed
            return True
        return bool(check(organisation_id))


# --- the app ----------------------------------------------------------------------------------------

_USER_SCHEMA = {
    "type": "object",
    "required": ["userId", "roles"],
    "properties": {
        "userId": {"type": "string"},
        "roles": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "role": {"type": "string"},
                    "scope": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"organisationId": {"type": "string"}}},
                    },
                },
            },
        },
    },
}
TRANSFER_BODY_SCHEMA = {
    "type": "object",
    "required": ["request"],
    "properties": {
        "request": {
            "type": "object",
            "required": ["context", "organisationId", "actionBy", "fromUser", "toUser"],
            "properties": {
                "context": {"type": "string", "example": "User Deletion"},
                "organisationId": {"type": "string"},
                "actionBy": {"type": "object", "required": ["userId"], "properties": {"userId": {"type": "string"}}},
                "fromUser": _USER_SCHEMA,
                "toUser": _USER_SCHEMA,
                "objects": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["identifier"],
                        "properties": {
                            "objectType": {"type": "string"},
                            "identifier": {"type": "string"},
                            "primaryCategory": {"type": "string"},
                            "name": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Envelope, "description": "Invalid request (params.err, params.errmsg)"},
    401: {"model": Envelope, "description": "No token, or a token refused (params.errmsg says why)"},
    403: {"model": Envelope, "description": "The token's user is not actionBy"},
    413: {"model": Envelope, "description": "Request body too large"},
    503: {"model": Envelope, "description": "Store or event sink unavailable"},
}


class Api:
    """The handlers, bound to one wired ``App``."""

    def __init__(self, app: App, parts: ApiParts, auth: JwtAuth | None, max_body_bytes: int) -> None:
        self.app = app
        self.parts = parts
        self.auth = auth
        self.max_body_bytes = max_body_bytes

    def authenticate(self, request: Request) -> str | None:
        """The token's user (None when auth is off); 401 saying why, with a ``WWW-Authenticate`` hint, otherwise."""
        if self.auth is None:
            return None
        try:
            return self.auth.user_of_request(request.headers)
        except AuthError as exc:
            hint = f'Bearer error="invalid_token", error_description="{header_text(exc.detail)}"'
            headers = {"WWW-Authenticate": hint}
            raise ApiError(exc.status, ERR_UNAUTHORIZED, f"You are not authorized: {exc.detail}.", headers) from None

    async def transfer(self, request: Request) -> JSONResponse:
        request_id = request_id_of(request)
        try:
            user = self.authenticate(request)
            doc = decode_body(await read_body(request, self.max_body_bytes))
            if user is not None and claimed_action_by(doc) != user:
                raise ApiError(403, ERR_FORBIDDEN, "The token's user is not the actionBy user of the request.")
            result = await run_in_threadpool(self.submit, doc, request_id)
        except ApiError as exc:
            return envelope(API_TRANSFER, request_id, exc.status, None, exc.err, exc.errmsg, exc.headers)
        return envelope(API_TRANSFER, request_id, 200, result)

    def submit(self, doc: Any, request_id: str) -> dict[str, Any]:
        try:
            with self.app.reader() as uow:
                valid = validate(doc, UnitOfWorkDirectory(uow.users), max_objects=self.app.settings["api.max_objects"])
            events = build_events(valid, request_id, int(time.time() * 1000), lambda: str(uuid.uuid4()))
        except InvalidRequest as exc:
            raise ApiError(400, exc.code, exc.message) from None
        except Exception as exc:
            log.exception("user directory unavailable")
            raise ApiError(503, ERR_SERVER, f"The user directory is unavailable ({type(exc).__name__}).") from None
        try:
            self.publish(request_id, valid.action_by.userId, events)
        except DuplicateRequest:
            raise ApiError(409, ERR_DUPLICATE, f"Request id {request_id} was used by an earlier request: send a new "
                           "X-Request-ID (or none).") from None
        api_events_published.inc(len(events))
        return {"status": SUBMITTED, "requestId": request_id, "events": len(events)}

    def publish(self, request_id: str, action_by: str, events: list[dict[str, Any]]) -> None:
        """Record the request and publish its events: in one transaction where the sink is the store's own queue
        (a failure leaves nothing pending); else record, publish, and forget the record when publishing fails.
        ``DuplicateRequest`` for a request id already used; ``ApiError`` 503 when the store or sink fails."""
        requests = self.parts.requests
        together = getattr(self.parts.sink, "publish_request", None)
        mids = [str(e["mid"]) for e in events]
        recorded = False
        try:
            if requests is not None and requests.status(request_id) is not None:
                raise DuplicateRequest(request_id)
            if requests is not None and together is not None:
                together(request_id, action_by, events)
                return
            if requests is not None:
                requests.record(request_id, action_by, events)
                recorded = True
            self.parts.sink.publish(events)
        except DuplicateRequest:
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, PublishError) else type(exc).__name__
            log.error("request %s: events not published: %s", request_id, exc, exc_info=True)
            if requests is not None and recorded:
                try:
                    requests.forget(request_id, mids)
                except Exception:
                    log.exception("request %s: could not forget the unpublished events", request_id)
            raise ApiError(
                503, ERR_SERVER, f"Ownership transfer could not be submitted: events not published ({reason})."
            ) from None

    async def status(self, request: Request, requestId: str) -> JSONResponse:
        request_id = request_id_of(request)
        try:
            user = self.authenticate(request)
            result = await run_in_threadpool(self.request_status, requestId, user)
        except ApiError as exc:
            return envelope(API_STATUS, request_id, exc.status, None, exc.err, exc.errmsg, exc.headers)
        return envelope(API_STATUS, request_id, 200, result)

    def request_status(self, request_id: str, user: str | None) -> dict[str, Any]:
        requests = self.parts.requests
        if requests is None:
            raise ApiError(501, ERR_SERVER, "Request status is not kept by this store.")
        try:
            found = requests.status(request_id)
        except Exception as exc:
            log.exception("request log unavailable")
            raise ApiError(503, ERR_SERVER, f"The store is unavailable ({type(exc).__name__}).") from None
        if found is None:
            raise ApiError(404, ERR_NOT_FOUND, f"Requested {request_id} resource not found")
        if user is not None and found.action_by != user:
            raise ApiError(403, ERR_FORBIDDEN, "The token's user is not the actionBy user of this request.")
        from handover.entrypoints.api_audit import with_changes  # (that module imports this one)

        return {"requestId": found.request_id, "events": with_changes(self.app, found.events)}

    def health(self) -> JSONResponse:
        checks: list[dict[str, Any]] = []
        probe: Callable[[], None] | None = getattr(self.app.store, "probe", None)
        try:
            if probe is not None:
                probe()  # a real write: unhealthy while writes fail (read-only file, full disk)
            else:
                with self.app.reader() as uow:
                    uow.users.get("")
            checks.append({"name": "store", "healthy": True})
        except Exception as exc:
            checks.append({"name": "store", "healthy": False, "error": type(exc).__name__})
        worker = self.parts.worker
        if worker is not None and worker.started:
            checks.append({"name": "worker", "healthy": worker.alive})
        healthy = all(c["healthy"] for c in checks)
        status = 200 if healthy else 503
        return envelope(
            API_HEALTH,
            None,
            status,
            {"healthy": healthy, "checks": checks},
            None if healthy else ERR_SERVER,
            None if healthy else "unhealthy",
        )


def header_text(text: str, limit: int = 300) -> str:
    """``text`` fit for a quoted string in a header: printable ASCII without ``"`` and ``\\`` (others become
    ``?``), at most ``limit`` characters."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text[:limit])


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
    from handover.entrypoints.api_audit import router as audit_router  # preview, undo, changes (SPEC 10)
    from handover.entrypoints.console import router as console_router  # the admin console at /admin (SPEC 11)

    fast.include_router(audit_router)
    fast.include_router(console_router)
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
        return refused(request) or Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

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

    def swagger_ui(request: Request) -> Response:
        return refused(request) or get_swagger_ui_html(openapi_url=document_url(request), title="handover - Swagger UI")

    def redoc(request: Request) -> Response:
        return refused(request) or get_redoc_html(openapi_url=document_url(request), title="handover - ReDoc")

    for path, endpoint in (("/openapi.json", openapi_document), ("/docs", swagger_ui), ("/redoc", redoc)):
        fast.add_api_route(path, endpoint, methods=["GET"], include_in_schema=False)
    _install_error_handlers(fast)
    _install_input_check(fast)
    _install_metrics(fast)
    return fast


def _install_error_handlers(fast: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
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
    before any handler looks anything up with it (SPEC 5)."""

    @fast.middleware("http")
    async def refuse_unstorable(request: Request, call_next: Callable[[Request], Any]) -> Any:
        path = str(request.scope.get("path", ""))
        query = unquote(request.scope.get("query_string", b"").decode("latin-1"), errors="replace")
        for name, text in (("The URL path", path), ("The query string", query)):
            problem = text_problem(text)
            if problem is not None:
                message = f"{name} contains {problem}."
                return envelope(API_OTHER, request_id_of(request), 400, None, ERR_INVALID, message)
        return await call_next(request)


def _install_metrics(fast: FastAPI) -> None:
    @fast.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Any]) -> Any:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        api_requests.labels(request.method, path, str(response.status_code)).inc()
        return response
