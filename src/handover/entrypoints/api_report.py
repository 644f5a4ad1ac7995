"""The HTTP side of SPEC 12: ``GET /v1/user/ownership/report/deleted-owners?organisationId=..&cursor=..&limit=..``.

A page of the deleted-owner report (``service.reports.DeletedOwnersReport.page``): the course batches and assets
that users marked deleted still own, in the columns of Lern's "Deleted Users Assets Report". Organisation-scoped
as the other endpoints: with a token, the token's user must be ``ORG_ADMIN`` of ``organisationId`` (default: the
user's root organisation), else 403; with authentication off, ``organisationId`` is required. ``limit``: 1 to
1000 rows (default 100); ``result.nextCursor`` (null on the last page) is the ``cursor`` of the next page. Also
served under Sunbird's gateway prefix (``/api/user/v1/ownership/report/deleted-owners``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from handover.entrypoints.api_common import (
    ERR_INVALID,
    SECURITY,
    Api,
    ApiError,
    Envelope,
    envelope,
    page_parameters,
    request_id_of,
)
from handover.service.reports import MAX_LIMIT

API_REPORT = "api.user.ownership.report.deleted-owners"
REPORT_PATHS = ("/v1/user/ownership/report/deleted-owners", "/api/user/v1/ownership/report/deleted-owners")
DEFAULT_LIMIT = 100

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": Envelope, "description": d}
    for s, d in {
        400: "Bad organisationId, cursor or limit; organisationId missing with authentication off",
        401: "No token, or a token refused (params.errmsg says why)",
        403: "The token's user is not ORG_ADMIN of the organisation",
        404: "Unknown organisation (authentication off)",
        501: "The store cannot list deleted users",
        503: "Store or user directory unavailable",
    }.items()
}


def _limit(request: Request) -> int:
    text = request.query_params.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ApiError(400, ERR_INVALID, f"limit must be an integer from 1 to {MAX_LIMIT}.")
    return int(text)


async def deleted_owners(request: Request) -> JSONResponse:
    api: Api = request.app.state.api
    msgid = request_id_of(request)
    try:
        user = api.authenticate(request)
        organisation = request.query_params.get("organisationId")
        cursor = request.query_params.get("cursor") or None
        result = await run_in_threadpool(report_page, api, user, organisation, cursor, _limit(request))
    except ApiError as exc:
        return envelope(API_REPORT, msgid, exc.status, None, exc.err, exc.errmsg, exc.headers)
    return envelope(API_REPORT, msgid, 200, result)


def report_page(api: Api, user: str | None, organisation: str | None, cursor: str | None, limit: int) -> dict[str, Any]:
    """One page of the caller's organisation's report as the answer's ``result``; refusals as HTTP answers."""
    report = api.app.deleted_owners()
    org = api.call(report.organisation_for, user, organisation)
    return api.call(report.page, org, cursor, limit).to_json()


# the query parameters, read by hand (so that a bad one gets its own message): documented here for /docs
REPORT_PARAMETERS = [
    {"name": "organisationId", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "The root organisation (default: the token's user's; required with authentication off)."},
    *page_parameters(MAX_LIMIT, DEFAULT_LIMIT, "Rows"),
]

for _path in REPORT_PATHS:
    router.add_api_route(
        _path,
        deleted_owners,
        methods=["GET"],
        response_model=Envelope,
        responses=_ERRORS,
        summary="Deleted users who still own course batches or assets (a page of rows)",
        operation_id="deleted_owners" + ("_gateway" if _path.startswith("/api") else ""),
        openapi_extra={"security": SECURITY, "parameters": REPORT_PARAMETERS},
    )
