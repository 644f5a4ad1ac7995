"""What the HTTP entry points share (the API, its audit routes, the console): the Sunbird envelope, reading
and checking a request body, the error codes, and ``Api``: the wired use cases (``service.requests``) with the
mapping of their ``ServiceError`` to HTTP answers (``ApiError``).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, Field

from handover.bootstrap import ApiParts, App
from handover.domain.text import first_bad_string
from handover.entrypoints.auth import USER_TOKEN_HEADER, AuthError, JwtAuth
from handover.ids import uuid4
from handover.service.requests import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    NotSupported,
    ServiceError,
    TransferRequests,
    Unavailable,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSFER_PATHS = ("/v1/user/ownership/transfer", "/api/user/v1/ownership/transfer")
STATUS_PATHS = tuple(p + "/{requestId}" for p in TRANSFER_PATHS)
API_TRANSFER = "api.user.ownership.transfer"
API_STATUS = "api.user.ownership.transfer.status"
API_HEALTH = "api.health"
API_OTHER = "api.handover"

API_THREADS = 40  # threads of the transfer and status routes' pool: as anyio's default limiter, the SQLite pool's size
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
    if now is None:  # every answer's: put together without strftime (2 µs against 5, issue 15)
        t = datetime.now(UTC)
        return (f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}:"
                f"{t.microsecond // 1000:03d}+0000")
    return now.strftime("%Y-%m-%d %H:%M:%S:") + f"{now.microsecond // 1000:03d}" + now.strftime("%z")


def response_code(status: int) -> str:
    if status in RESPONSE_CODES:
        return RESPONSE_CODES[status]
    return "SERVER_ERROR" if status >= 500 else "CLIENT_ERROR"


# Starlette's JSONResponse.render arguments, in an encoder made once (json.dumps with arguments makes one each call)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


class EnvelopeResponse(JSONResponse):
    """A ``JSONResponse`` (the same bytes) rendered by ``_ENCODER``."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")


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
            "resmsgid": uuid4(),
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
    return EnvelopeResponse(body, status_code=status, headers=out)


class ApiError(Exception):
    def __init__(self, status: int, err: str, errmsg: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(errmsg)
        self.status, self.err, self.errmsg, self.headers = status, err, errmsg, headers


# a use case's refusal -> (HTTP status, the error code when the refusal carries none)
SERVICE_ERRORS: dict[type[ServiceError], tuple[int, str]] = {
    Invalid: (400, ERR_INVALID),
    Forbidden: (403, ERR_FORBIDDEN),
    NotFound: (404, ERR_NOT_FOUND),
    Conflict: (409, ERR_DUPLICATE),
    NotSupported: (501, ERR_SERVER),
    Unavailable: (503, ERR_SERVER),
}


def api_error(exc: ServiceError) -> ApiError:
    """The HTTP answer to a use case's ``ServiceError`` (its own code when it has one)."""
    status, code = next((v for k, v in SERVICE_ERRORS.items() if isinstance(exc, k)), (500, ERR_SERVER))
    return ApiError(status, exc.code or code, exc.message)


def request_id_of(request: Request) -> str:
    """``X-Request-ID``, else ``X-msgId`` (as userorg-service), else a new UUID."""
    for name in ("x-request-id", "x-msgid"):
        value = request.headers.get(name, "").strip()
        if _REQUEST_ID.fullmatch(value):
            return value
    return uuid4()


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


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # made once: json.loads with an argument makes one a call


def decode_body(raw: bytes) -> Any:
    """JSON of at most ``MAX_DEPTH`` levels (NaN and Infinity are not JSON); 400 otherwise."""
    if not raw.strip():
        raise ApiError(400, ERR_INVALID, "Request body is empty.")
    try:
        text = raw.decode("utf-8")
        doc = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, ERR_INVALID, "Request body is not valid JSON.") from None
    except RecursionError:
        doc = None
        too_deep = True
    else:
        # no deeper than the brackets it has: the walk only for a body with more than MAX_DEPTH of them
        too_deep = text.count("[") + text.count("{") > MAX_DEPTH and depth_exceeds(doc, MAX_DEPTH)
    if too_deep:
        raise ApiError(400, ERR_INVALID, f"Request body is nested deeper than {MAX_DEPTH} levels.")
    # A NUL or a lone surrogate can only come from a \u escape: valid UTF-8 has no surrogates, and JSON no raw
    # control character in a string. The strings are looked at only when the body has such an escape (issue 15).
    bad = first_bad_string(doc) if "\\u" in text else None
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
    """The HTTP handlers of the transfer and status routes, bound to one wired ``App``: ``service`` is its
    ``TransferRequests``; ``call`` runs a use case and turns its ``ServiceError`` into the ``ApiError`` answer."""

    def __init__(self, app: App, parts: ApiParts, auth: JwtAuth | None, max_body_bytes: int) -> None:
        self.app = app
        self.parts = parts
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.service: TransferRequests = parts.service(app)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    async def in_thread(self, use_case: Callable[..., T], *args: Any) -> T:
        """``use_case(*args)`` in a thread of this API's pool (``API_THREADS``), in a copy of the caller's context
        as Starlette's ``run_in_threadpool``, which cost 40 µs of CPU a call against 15 µs (issue 15). The pool is
        made at the first call in each process (a forked process does not inherit the threads)."""
        pool = self._pool
        if pool is None or self._pool_pid != os.getpid():
            pool = self._pool = ThreadPoolExecutor(API_THREADS, thread_name_prefix="handover-api")
            self._pool_pid = os.getpid()
        call = contextvars.copy_context().run
        return await asyncio.get_running_loop().run_in_executor(pool, call, use_case, *args)

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
            result = await self.in_thread(self.submit, doc, request_id)
        except ApiError as exc:
            return envelope(API_TRANSFER, request_id, exc.status, None, exc.err, exc.errmsg, exc.headers)
        return envelope(API_TRANSFER, request_id, 200, result)

    def call(self, use_case: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``use_case(*args, **kwargs)``, its ``ServiceError`` as the ``ApiError`` the HTTP answer is."""
        try:
            return use_case(*args, **kwargs)
        except ServiceError as exc:
            raise api_error(exc) from None

    def submit(self, doc: Any, request_id: str) -> dict[str, Any]:
        result = self.call(self.service.submit, doc, request_id)
        api_events_published.inc(result["events"])
        return result

    async def status(self, request: Request, requestId: str) -> JSONResponse:
        request_id = request_id_of(request)
        try:
            user = self.authenticate(request)
            result = await self.in_thread(self.request_status, requestId, user)
        except ApiError as exc:
            return envelope(API_STATUS, request_id, exc.status, None, exc.err, exc.errmsg, exc.headers)
        return envelope(API_STATUS, request_id, 200, result)

    def request_status(self, request_id: str, user: str | None) -> dict[str, Any]:
        return self.call(self.service.status, request_id, user)

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


def page_parameters(maximum: int, default: int, unit: str) -> list[dict[str, Any]]:
    """The OpenAPI query parameters ``cursor`` and ``limit`` of a keyset-paged GET (read by hand in the route, so
    that a bad one gets its own message; documented for /docs): ``limit`` is 1..``maximum`` ``unit`` per page."""
    return [
        {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "The nextCursor of the previous page; absent for the first page."},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
         "description": f"{unit} per page."},
    ]
