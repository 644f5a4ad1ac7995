"""The console's deleted-owner page (SPEC 12) at ``/admin/deleted-owners``: the deleted users of the admin's
organisation who still own course batches or assets, with counts and their first records, each with a "Transfer
to…" form that opens the transfer preview (``/admin/transfer/preview``) for that user.

Same authentication and helpers as the rest of the console (``entrypoints.console``); the rows come from
``service.reports.DeletedOwnersReport.owners`` through the API's error mapping. With a token the organisation is
the admin's own (``ORG_ADMIN`` of it); with authentication off the page asks for the organisation and the admin.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from handover.entrypoints.api_common import ApiError
from handover.entrypoints.console import Caller, api_of, page, render

OWNERS_PAGE = 20  # deleted owners per page
FIRST_RECORDS = 5  # records shown per owner

router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("/deleted-owners")
def deleted_owners(request: Request, organisationId: str = "", actionBy: str = "", after: str = "") -> Response:
    def build(caller: Caller) -> Response:
        api = api_of(request)
        report = api.app.deleted_owners()
        admin = caller.user or actionBy.strip()
        context: dict[str, Any] = {
            "title": "Deleted users who still own records", "nav": "deleted-owners", "admin": admin,
            "organisation": organisationId.strip(), "owners": [], "errors": {}, "more": None, "after": after,
        }
        if caller.user is None and not organisationId.strip():  # authentication off: ask which organisation
            return render(request, "deleted_owners.html", caller, **context)
        try:
            org = api.call(report.organisation_for, caller.user, organisationId or None)
            found = api.call(report.owners, org, after, OWNERS_PAGE, FIRST_RECORDS)
        except ApiError as exc:
            if exc.status >= 500 or exc.status == 403:
                raise
            context["errors"] = {"organisationId": exc.errmsg}
            return render(request, "deleted_owners.html", caller, exc.status, **context)
        query = {k: v for k, v in {"organisationId": org, "actionBy": "" if caller.user else admin}.items() if v}
        more = urlencode({**query, "after": found.next_after}) if found.next_after else None
        context.update(organisation=org, owners=found.owners, more=more, after=after, first=urlencode(query))
        return render(request, "deleted_owners.html", caller, **context)

    return page(request, build)
