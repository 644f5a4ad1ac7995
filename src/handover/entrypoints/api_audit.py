"""The HTTP side of SPEC 10: preview of a transfer, undo of a request, and the changed records of its events.

- ``POST /v1/user/ownership/transfer/preview``: the transfer's body, validation and errors; answers with what
  each would-be event would change (counts and the first records), from the engine run inside the store's
  rolled-back preview. Nothing is published or changed.
- ``POST /v1/user/ownership/transfer/{requestId}/undo``: undo every processed event of the request (body
  ``{"request":{"actionBy":{"userId":...}}}``, optional when a token names the caller). Authorization as the
  transfer: the caller must be ``ORG_ADMIN`` of the request's organisation.
- ``GET /v1/user/ownership/transfer/{requestId}/changes?mid=..&cursor=..&limit=..``: further pages of one
  event's changed records (the status endpoint shows the first page of each event, see ``with_changes``).

Each route is also served under Sunbird's gateway prefix ``/api/user/v1/...``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from handover.bootstrap import App
from handover.domain.events import OWNERSHIP_TRANSFER
from handover.domain.text import text_problem
from handover.domain.transfer_request import (
    CANNOT_TRANSFER_OWNERSHIP,
    RESTRICTED,
    InvalidRequest,
    TransferRequest,
    build_events,
    is_org_admin_of,
    validate,
)
from handover.entrypoints.api import (
    ERR_FORBIDDEN,
    ERR_INVALID,
    ERR_NOT_FOUND,
    ERR_SERVER,
    SECURITY,
    TRANSFER_BODY_SCHEMA,
    TRANSFER_PATHS,
    Api,
    ApiError,
    Envelope,
    UnitOfWorkDirectory,
    claimed_action_by,
    decode_body,
    envelope,
    read_body,
    request_id_of,
)
from handover.service.audit_trail import event_changes
from handover.service.undo import NotUndoable, UnknownEvent

log = logging.getLogger(__name__)

API_PREVIEW = "api.user.ownership.transfer.preview"
API_UNDO = "api.user.ownership.transfer.undo"
API_CHANGES = "api.user.ownership.transfer.changes"
PREVIEW_PATHS = tuple(p + "/preview" for p in TRANSFER_PATHS)
UNDO_PATHS = tuple(p + "/{requestId}/undo" for p in TRANSFER_PATHS)
CHANGES_PATHS = tuple(p + "/{requestId}/changes" for p in TRANSFER_PATHS)
ERR_CONFLICT = "UOS_UOWNTRANS0029"

DEFAULT_RECORDS = 20  # changed records shown per event (preview, status)
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


def _store_down(exc: Exception) -> ApiError:
    log.error("store unavailable: %s", exc, exc_info=exc)
    return ApiError(503, ERR_SERVER, f"The store is unavailable ({type(exc).__name__}).")


# --- preview ----------------------------------------------------------------------------------------


async def preview(request: Request) -> JSONResponse:
    api = _api(request)
    msgid = request_id_of(request)
    try:
        user = api.authenticate(request)
        doc = decode_body(await read_body(request, api.max_body_bytes))
        if user is not None and claimed_action_by(doc) != user:
            raise ApiError(403, ERR_FORBIDDEN, "The token's user is not the actionBy user of the request.")
        result = await run_in_threadpool(preview_request, api.app, doc, msgid, _limit(request))
    except ApiError as exc:
        return envelope(API_PREVIEW, msgid, exc.status, None, exc.err, exc.errmsg, exc.headers)
    return envelope(API_PREVIEW, msgid, 200, result)


def validated(app: App, doc: Any) -> TransferRequest:
    """The transfer's validation, with the transfer's error answers."""
    try:
        with app.reader() as uow:
            return validate(doc, UnitOfWorkDirectory(uow.users), max_objects=app.settings["api.max_objects"])
    except InvalidRequest as exc:
        raise ApiError(400, exc.code, exc.message) from None
    except Exception as exc:
        raise _store_down(exc) from None


def preview_request(app: App, doc: Any, request_id: str, limit: int) -> dict[str, Any]:
    """Run the engine on the events the transfer would publish, inside the store's rolled-back preview."""
    valid = validated(app, doc)
    try:
        events = build_events(valid, request_id, int(time.time() * 1000), lambda: str(uuid.uuid4()))
    except InvalidRequest as exc:
        raise ApiError(400, exc.code, exc.message) from None
    open_preview = getattr(app.store, "preview", None)
    if open_preview is None:
        raise ApiError(501, ERR_SERVER, "This store cannot preview a transfer.")
    try:
        with open_preview() as factory:
            outcomes = app.engine(sample_limit=limit, uow_factory=factory).process_batch(events)
    except Exception as exc:
        raise _store_down(exc) from None
    per_event = []
    for event, outcome in zip(events, outcomes, strict=True):
        report = outcome.report(with_mid=False)
        per_event.append({"assetInformation": event["edata"]["assetInformation"], **report,
                          "records": outcome.samples})
    return {
        "events": per_event,
        "changed": {
            "course_batches": sum(o.changed_batches for o in outcomes),
            "assets": sum(o.changed_assets for o in outcomes),
        },
    }


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
    for name, value in (("The request id", request_id), ("actionBy.userId", caller)):
        problem = text_problem(value)
        if problem is not None:
            raise ApiError(400, ERR_INVALID, f"{name} contains {problem}.")
    pending = _pending_events(api, request_id)
    try:
        with api.app.reader() as uow:
            transfers = [e for e in uow.ledger.by_request(request_id) if e.action == OWNERSHIP_TRANSFER]
            from_user = uow.users.get(transfers[0].subject_user_id or "") if transfers else None
            admin = uow.users.get(caller)
    except Exception as exc:
        raise _store_down(exc) from None
    not_yet = ApiError(409, ERR_CONFLICT, f"{pending} event(s) of request {request_id} not processed yet: undo later.")
    if not transfers:
        raise not_yet if pending else ApiError(404, ERR_NOT_FOUND, f"Requested {request_id} resource not found")
    if admin is None or from_user is None or not is_org_admin_of(admin, from_user.rootOrgId):
        raise ApiError(400, CANNOT_TRANSFER_OWNERSHIP, RESTRICTED)
    if pending:
        raise not_yet
    try:
        result = api.app.undoer().undo_request(request_id)
    except UnknownEvent as exc:
        raise ApiError(404, ERR_NOT_FOUND, str(exc)) from None
    except NotUndoable as exc:
        raise ApiError(400, ERR_INVALID, str(exc)) from None
    except Exception as exc:
        raise _store_down(exc) from None
    return {"requestId": request_id, **result.to_json()}


def _pending_events(api: Api, request_id: str) -> int:
    """How many events of the request the request log lists as not yet processed (0 without a log)."""
    requests = api.parts.requests
    if requests is None:
        return 0
    try:
        found = requests.status(request_id)
    except Exception as exc:
        raise _store_down(exc) from None
    return 0 if found is None else sum(1 for e in found.events if e.get("outcome") == "pending")


# --- changed records --------------------------------------------------------------------------------


def with_changes(app: App, events: list[dict[str, Any]], limit: int = DEFAULT_RECORDS) -> list[dict[str, Any]]:
    """Each event of a status answer with the first page of its changed records and whether it was undone
    (``changes``, ``nextCursor`` for ``/changes``, ``undone``, ``undoneAt``); 503 when the store fails."""
    try:
        with app.reader() as uow:
            return [{**e, **event_changes(uow, str(e["mid"]), limit=limit)} for e in events]
    except Exception as exc:
        raise _store_down(exc) from None


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
    status = api.request_status(request_id, user)  # 404 / 403 / 501 as the status endpoint
    if mid not in {e["mid"] for e in status["events"]}:
        raise ApiError(404, ERR_NOT_FOUND, f"Request {request_id} has no event {mid!r}.")
    try:
        with api.app.reader() as uow:
            page = event_changes(uow, mid, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise ApiError(400, ERR_INVALID, str(exc)) from None
    except Exception as exc:
        raise _store_down(exc) from None
    return {"requestId": request_id, "mid": mid, **page}


# --- routes -----------------------------------------------------------------------------------------


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
        openapi_extra={"security": SECURITY},
    )
