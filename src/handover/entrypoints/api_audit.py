"""The HTTP side of SPEC 10: preview of a transfer, undo of a request, and the changed records of its events.

- ``POST /v1/user/ownership/transfer/preview``: the transfer's body, validation and errors; answers with what
  each would-be event would change (counts and the first records), from the engine run inside the store's
  rolled-back preview. Nothing is published or changed.
- ``POST /v1/user/ownership/transfer/{requestId}/undo``: undo every processed event of the request (body
  ``{"request":{"actionBy":{"userId":...}}}``, optional when a token names the caller). Authorization as the
  transfer: the caller must be ``ORG_ADMIN`` of the request's organisation.
- ``GET /v1/user/ownership/transfer/{requestId}/changes?mid=..&cursor=..&limit=..``: further pages of one
  event's changed records (the status endpoint shows the first page of each event, see
  ``TransferRequests.with_changes``).

Each route is also served under Sunbird's gateway prefix ``/api/user/v1/...``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from handover.entrypoints.api_common import (
    ERR_FORBIDDEN,
    ERR_INVALID,
    SECURITY,
    TRANSFER_BODY_SCHEMA,
    TRANSFER_PATHS,
    Api,
    ApiError,
    Envelope,
    claimed_action_by,
    decode_body,
    envelope,
    page_parameters,
    read_body,
    request_id_of,
)
from handover.service.requests import DEFAULT_RECORDS

log = logging.getLogger(__name__)

API_PREVIEW = "api.user.ownership.transfer.preview"
API_UNDO = "api.user.ownership.transfer.undo"
API_CHANGES = "api.user.ownership.transfer.changes"
PREVIEW_PATHS = tuple(p + "/preview" for p in TRANSFER_PATHS)
UNDO_PATHS = tuple(p + "/{requestId}/undo" for p in TRANSFER_PATHS)
CHANGES_PATHS = tuple(p + "/{requestId}/changes" for p in TRANSFER_PATHS)
ERR_CONFLICT = "UOS_UOWNTRANS0029"

MAX_RECORDS = 200

_STATUS_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": Envelope, "description": d}
    for s, d in {
        400: "Invalid request (params.err, params.errmsg)",
        401: "No token, or a token refused (params.errmsg says why)",
        403: "The token's user is not actionBy",
        404: "Unknown request id or event",
        409: "Events of the request are not processed yet",
        503: "Store unavailable",
    }.items()
}

UNDO_BODY_SCHEMA = {
    "type": "object",
    "properties": {
        "request": {
            "type": "object",
            "properties": {
                "actionBy": {"type": "object", "required": ["userId"], "properties": {"userId": {"type": "string"}}}
            },
        }
    },
}

router = APIRouter()


def _api(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


def _limit(request: Request) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return DEFAULT_RECORDS
    if not text.isdigit() or not 1 <= int(text) <= MAX_RECORDS:
        raise ApiError(400, ERR_INVALID, f"limit must be an integer from 1 to {MAX_RECORDS}.")
    return int(text)


# --- preview ----------------------------------------------------------------------------------------


async def preview(request: Request) -> JSONResponse:
    api = _api(request)
    msgid = request_id_of(request)
    try:
        user = api.authenticate(request)
        doc = decode_body(await read_body(request, api.max_body_bytes))
        if user is not None and claimed_action_by(doc) != user:
            raise ApiError(403, ERR_FORBIDDEN, "The token's user is not the actionBy user of the request.")
        result = await run_in_threadpool(preview_request, api, doc, msgid, _limit(request))
    except ApiError as exc:
        return envelope(API_PREVIEW, msgid, exc.status, None, exc.err, exc.errmsg, exc.headers)
    return envelope(API_PREVIEW, msgid, 200, result)


def preview_request(api: Api, doc: Any, request_id: str, limit: int) -> dict[str, Any]:
    """``TransferRequests.preview``, its refusals as HTTP answers."""
    return api.call(api.service.preview, doc, request_id, limit)


# --- undo -------------------------------------------------------------------------------------------


async def undo(request: Request, requestId: str) -> JSONResponse:
    api = _api(request)
    msgid = request_id_of(request)
    try:
        user = api.authenticate(request)
        raw = await read_body(request, api.max_body_bytes)
        claimed = claimed_action_by(decode_body(raw)) if raw.strip() else None
        if user is not None and claimed is not None and claimed != user:
            raise ApiError(403, ERR_FORBIDDEN, "The token's user is not the actionBy user of the request.")
        caller = user or claimed
        if not caller:
            raise ApiError(400, ERR_INVALID, "actionBy key is not present in the data.")
        result = await run_in_threadpool(undo_request, api, requestId, caller)
    except ApiError as exc:
        return envelope(API_UNDO, msgid, exc.status, None, exc.err, exc.errmsg, exc.headers)
    return envelope(API_UNDO, msgid, 200, result)


def undo_request(api: Api, request_id: str, caller: str) -> dict[str, Any]:
    """``TransferRequests.undo``, its refusals as HTTP answers."""
    return api.call(api.service.undo, request_id, caller)


# --- changed records --------------------------------------------------------------------------------


async def changes(request: Request, requestId: str) -> JSONResponse:
    api = _api(request)
    msgid = request_id_of(request)
    try:
        user = api.authenticate(request)
        mid = request.query_params.get("mid", "")
        cursor = request.query_params.get("cursor") or None
        result = await run_in_threadpool(changes_page, api, requestId, user, mid, cursor, _limit(request))
    except ApiError as exc:
        return envelope(API_CHANGES, msgid, exc.status, None, exc.err, exc.errmsg, exc.headers)
    return envelope(API_CHANGES, msgid, 200, result)


def changes_page(
    api: Api, request_id: str, user: str | None, mid: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    """``TransferRequests.changes`` (404 / 403 / 501 as the status endpoint), its refusals as HTTP answers."""
    return api.call(api.service.changes, request_id, user, mid, cursor, limit)


# --- routes -----------------------------------------------------------------------------------------


# the query parameters, read by hand (so that a bad one gets its own message): documented here for /docs
CHANGES_PARAMETERS = [
    {"name": "mid", "in": "query", "required": True, "schema": {"type": "string"},
     "description": "The event (its mid) whose changed records to list."},
    *page_parameters(MAX_RECORDS, DEFAULT_RECORDS, "Changed records"),
]


def _gateway(path: str) -> str:
    return "_gateway" if path.startswith("/api") else ""


for _path in PREVIEW_PATHS:
    router.add_api_route(
        _path,
        preview,
        methods=["POST"],
        response_model=Envelope,
        responses={k: v for k, v in _STATUS_ERRORS.items() if k != 409},
        summary="What a transfer would change (nothing is published or changed)",
        operation_id="preview" + _gateway(_path),
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": TRANSFER_BODY_SCHEMA}}},
            "security": SECURITY,
        },
    )
for _path in UNDO_PATHS:
    router.add_api_route(
        _path,
        undo,
        methods=["POST"],
        response_model=Envelope,
        responses=_STATUS_ERRORS,
        summary="Undo the events of a request (changes still in place are reverted; others are conflicts)",
        operation_id="undo" + _gateway(_path),
        openapi_extra={
            "requestBody": {"required": False, "content": {"application/json": {"schema": UNDO_BODY_SCHEMA}}},
            "security": SECURITY,
        },
    )
for _path in CHANGES_PATHS:
    router.add_api_route(
        _path,
        changes,
        methods=["GET"],
        response_model=Envelope,
        responses={k: v for k, v in _STATUS_ERRORS.items() if k != 409},
        summary="A page of the changed records of one event of a request",
        operation_id="changes" + _gateway(_path),
        openapi_extra={"security": SECURITY, "parameters": CHANGES_PARAMETERS},
    )
