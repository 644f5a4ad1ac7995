"""The admin console (SPEC 11) at ``/admin``: server-rendered pages over the HTTP API's own handlers.

Nothing here validates, previews, submits or undoes by itself: the pages call the use cases of
``service.requests.TransferRequests`` through ``Api`` (so the console answers what the API answers): the form's
problems, all at once and in the form's words, next to their fields (``form_problems``, then the API's validation),
names beside ids (``names``, ``record_names``), the user look-up (``find_users``), submit, preview, status, undo,
the history and the failed events (ports ``RequestHistory`` and ``FailedEvents``: the SQL store's request log and
queue, the Sunbird store's keyspace; with Kafka the failed events are on the failed topic, and the page says so).

Authentication as the API: with ``auth.mode = jwt`` the console asks once for a token, keeps it in an HttpOnly,
SameSite=Strict session cookie (``Secure`` by the request's scheme, or as ``auth.cookie.secure`` says behind a
TLS-terminating proxy) and checks it on every request with the API's ``JwtAuth``; the token's user is the admin.
The token is taken from ``x-authenticated-user-token`` when that header is sent, else from the session cookie,
else from ``Authorization: Bearer`` (so that a gateway's key in ``Authorization`` never hides the signed-in user).
With ``auth.mode = none`` a banner says so. Every form POST (sign-in and sign-out too) must come from the
console's own origin.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from handover import metrics
from handover.bootstrap import store_errors
from handover.domain.events import Reason
from handover.domain.transfer_request import CANNOT_TRANSFER_OWNERSHIP, RESTRICTED
from handover.entrypoints.api_audit import preview_request, undo_request
from handover.entrypoints.api_common import Api, ApiError
from handover.entrypoints.auth import USER_TOKEN_HEADER, AuthError, token_of
from handover.service.ports import STORE_ASSET, STORE_COURSE_BATCH
from handover.service.requests import person

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC_FILES = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}
COOKIE = "handover_console_token"
HISTORY_PAGE = 25
FAILED_PAGE = 200
PREVIEW_RECORDS = 20
OUTCOMES = ("applied", "undone", "rejected", "failed", "pending")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

REASONS = {
    Reason.MALFORMED_EVENT: "the event is not a valid BE_JOB_REQUEST",
    Reason.INVALID_FIELD: "a field holds a NUL, a lone surrogate, or an id longer than 255 characters",
    Reason.MISSING_FIELD: "a required field of the event is missing or blank",
    Reason.UNSUPPORTED_ACTION: "the event's action is not supported",
    Reason.INVALID_OBJECT_TYPE: "the event's object is not a user",
    Reason.SAME_USER: "the from-user and the to-user are the same user",
    Reason.UNKNOWN_USER: "a user is not in the user directory",
    Reason.USER_DELETED: "the to-user is deleted",
    Reason.ORG_MISMATCH: "a user does not belong to the organisation",
    Reason.USER_NOT_DELETED: "the user is not marked deleted",
    Reason.PROCESSING_FAILED: "processing failed after every retry",
    Reason.ROLE_NOT_ALLOWED: "the to-user has no role that may own assets, so assets were left alone",
    Reason.ASSET_NOT_FOUND: "the asset does not exist",
    Reason.ASSET_TYPE_NOT_CONFIGURED: "the asset's type or version is not one that is transferred",
    Reason.ASSET_NOT_OWNED: "the from-user does not own the asset",
}

router = APIRouter(prefix="/admin", include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.trim_blocks = templates.env.lstrip_blocks = True


def reason_text(code: str | None) -> str:
    """``USER_DELETED: the to-user is deleted`` (an unknown code as it is)."""
    if not code:
        return ""
    words = REASONS.get(code)  # type: ignore[call-overload]
    return f"{code}: {words}" if words else code


def when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return when(parsed)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def json_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(json_value(v) for v in value) or "(empty)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {json_value(v)}" for k, v in value.items()) or "(empty)"
    return str(value)


STORES = {STORE_COURSE_BATCH: "Course batch", STORE_ASSET: "Asset"}


def who(user_id: str | None, names: Mapping[str, str]) -> str:
    """``Ann Lee (u-ann)`` where the directory knows the user, else the id (``?`` when there is none)."""
    return names.get(user_id, user_id) if user_id else "?"


def record_label(store: str, key: str, names: Mapping[tuple[str, str], str]) -> str:
    """``Course batch do_course1/b-101 “Algebra, spring”`` / ``Question do_q1``: the type and the name where
    known (``TransferRequests.record_names``), else the store's kind and the key."""
    found = names.get((store, key))
    if store == STORE_COURSE_BATCH:
        return f"Course batch {key} “{found}”" if found else f"Course batch {key}"
    if found and "“" in found:
        kind, _, name = found.partition(" ")
        return f"{kind} {key} {name}"
    return f"{found or STORES.get(store, store)} {key}"


templates.env.filters.update(reason=reason_text, when=when, value=json_value, store=lambda s: STORES.get(s, s),
                             who=who, record=record_label)


# --- the transfer form --------------------------------------------------------------------------------


@dataclass
class TransferForm:
    organisationId: str = ""
    actionBy: str = ""
    fromUser: str = ""
    toUser: str = ""
    objects: str = ""
    context: str = "User Deletion"

    def identifiers(self) -> list[str]:
        return [i for i in re.split(r"[\s,]+", self.objects) if i]

    def request_doc(self, roles_of: Callable[[str], list[dict[str, Any]]]) -> dict[str, Any]:
        """The API's request body. Roles come from the user directory (the worker checks them there)."""
        doc: dict[str, Any] = {
            "context": self.context.strip(),
            "organisationId": self.organisationId.strip(),
            "actionBy": {"userId": self.actionBy.strip()},
            "fromUser": {"userId": self.fromUser.strip(), "roles": roles_of(self.fromUser.strip())},
            "toUser": {"userId": self.toUser.strip(), "roles": roles_of(self.toUser.strip())},
        }
        if self.identifiers():
            doc["objects"] = [{"identifier": i} for i in self.identifiers()]
        return {"request": doc}


def field_of(message: str) -> str | None:
    """Which form field an API error message is about (None: the request as a whole)."""
    if message.startswith("Organization"):
        return "organisationId"
    if message == RESTRICTED or "actionBy" in message:
        return "actionBy"
    if message.startswith("fromUser and toUser"):
        return "toUser"
    for name in ("fromUser", "toUser", "objects", "context"):
        if name in message:
            return name
    return None


def errors_of(exc: ApiError) -> dict[str, str]:
    """The error keyed by its form field (``""``: not about one field)."""
    return {field_of(exc.errmsg) or "": exc.errmsg}


# --- who is asking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    user: str | None  # the token's user; None when authentication is off
    auth_on: bool


class LoginNeeded(Exception):
    def __init__(self, rejected: bool) -> None:
        super().__init__("a token is needed" if not rejected else "the token was not accepted")
        self.rejected = rejected  # a token was sent and refused (expired, badly signed, ...)


AGAIN = "Your token was not accepted (it has expired or is not valid): please sign in again."


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


def console_token(request: Request) -> str | None:
    """``x-authenticated-user-token``, else the session cookie, else ``Authorization: Bearer`` (None: no token;
    ``AuthError`` for an empty user-token header or an ``Authorization`` that is not a bearer token)."""
    if USER_TOKEN_HEADER in request.headers:
        return token_of(request.headers)
    if request.cookies.get(COOKIE):
        return request.cookies[COOKIE]
    if request.headers.get("authorization"):
        return token_of(request.headers)
    return None


def caller_of(request: Request) -> Caller:
    """The token's user (``LoginNeeded`` without a good token); ``Caller(None, False)`` when auth is off."""
    auth = api_of(request).auth
    if auth is None:
        return Caller(None, False)
    try:
        token = console_token(request)
        if token is None:
            raise LoginNeeded(False)
        return Caller(auth.user_of_token(token), True)
    except AuthError:
        raise LoginNeeded(True) from None


def base_of(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + router.prefix


def same_origin(request: Request) -> bool:
    """Browsers send ``Origin`` with a form POST: a POST from another site's page is refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def render(
    request: Request, template: str, caller: Caller | None, status: int = 200, **context: Any
) -> HTMLResponse:
    page = templates.TemplateResponse(
        request,
        template,
        {"base": base_of(request), "caller": caller, "path": request.url.path, **context},
        status_code=status,
        headers=SECURITY_HEADERS,
    )
    return page


def to_login(request: Request, rejected: bool) -> RedirectResponse:
    query = {"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    if rejected:
        query["again"] = "1"
    return RedirectResponse(f"{base_of(request)}/login?{urlencode(query)}", status_code=303)


def see(request: Request, path: str, **query: Any) -> RedirectResponse:
    suffix = f"?{urlencode({k: v for k, v in query.items() if v is not None})}" if query else ""
    return RedirectResponse(f"{base_of(request)}{path}{suffix}", status_code=303)


def is_console_path(request: Request) -> bool:
    """The request is for an address under the console (``/admin``)."""
    base = base_of(request)
    return request.url.path == base or request.url.path.startswith(base + "/")


def no_such_page(request: Request) -> HTMLResponse:
    """A console address that names no page (a typo, an old link): a page saying so, not the API's JSON 404."""
    message = f"There is no console page at {request.url.path}."
    return render(request, "error.html", None, 404, title="Not found", message=message)


def cross_site(request: Request) -> HTMLResponse:
    message = "This form was sent from another site's page."
    return render(request, "error.html", None, 403, title="Refused", message=message)


def cookie_secure(request: Request) -> bool:
    """``auth.cookie.secure``, or (``auto``) whether the request came over https."""
    setting = api_of(request).app.settings["auth.cookie.secure"]
    return request.url.scheme == "https" if setting is None else bool(setting)


def page(request: Request, build: Callable[[Caller], Response], *, post: bool = False) -> Response:
    """Authenticate, refuse cross-site POSTs, then build the page."""
    if post and not same_origin(request):
        return cross_site(request)
    try:
        caller = caller_of(request)
    except LoginNeeded as exc:
        return to_login(request, exc.rejected)
    try:
        return build(caller)
    except ApiError as exc:
        return render(request, "error.html", caller, exc.status, title=_error_title(exc.status), message=exc.errmsg)
    except Exception as exc:
        log.exception("console page %s failed", request.url.path)
        if isinstance(exc, store_errors()):  # the store is down: say so, as the API does
            message = f"The store is unavailable ({type(exc).__name__}). Try again later."
            return render(request, "error.html", caller, 503, title=_error_title(503), message=message)
        message = f"The console failed on this page ({type(exc).__name__}); it is in the server's log."
        return render(request, "error.html", caller, 500, title=_error_title(500), message=message)


def _error_title(status: int) -> str:
    return {403: "Not allowed", 404: "Not found", 409: "Not yet", 501: "Not available"}.get(
        status, "Something went wrong" if status >= 500 else "Cannot do that"
    )


# --- sign in ------------------------------------------------------------------------------------------


def _safe_next(target: str | None, base: str) -> str:
    if target and target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/transfer"


@router.get("/login")
def login_form(request: Request, next: str = "", again: str = "") -> Response:
    base = base_of(request)
    if api_of(request).auth is None:
        return RedirectResponse(_safe_next(next, base), status_code=303)
    return render(request, "login.html", None, next=_safe_next(next, base), errors={"": AGAIN} if again else {})


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:
    base = base_of(request)
    auth = api_of(request).auth
    target = _safe_next(next, base)
    if auth is None:
        return RedirectResponse(target, status_code=303)
    if not same_origin(request):
        return cross_site(request)
    token = token.strip().removeprefix("Bearer ").strip()
    try:
        if not token:
            raise AuthError(401, "no token was given")
        auth.user_of_token(token)
    except AuthError as exc:
        return render(request, "login.html", None, 401, next=target, errors={"token": f"Not signed in: {exc.detail}."})
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path=base, secure=cookie_secure(request))
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    if not same_origin(request):
        return cross_site(request)
    response = see(request, "/login")
    response.delete_cookie(COOKIE, path=base_of(request), httponly=True, samesite="strict",
                           secure=cookie_secure(request))
    return response


# --- transfer: form, preview, submit ------------------------------------------------------------------


@router.get("")
@router.get("/")
def home(request: Request) -> Response:
    return see(request, "/transfer")


def _form_page(
    request: Request, caller: Caller, form: TransferForm, errors: Mapping[str, str], status: int,
    lookup: Mapping[str, Any] | None = None,
) -> Response:
    service = api_of(request).service
    names = service.names([form.actionBy, form.fromUser, form.toUser], form.organisationId.strip())
    return render(request, "transfer.html", caller, status, title="Transfer ownership", form=form,
                  errors=dict(errors), nav="transfer", names=names, lookup=lookup or {})


def _form_problems(api: Api, form: TransferForm) -> dict[str, str]:
    """Every problem of the form at once, in the form's words (``TransferRequests.form_problems``)."""
    problems: dict[str, str] = api.call(
        api.service.form_problems, organisation_id=form.organisationId, action_by=form.actionBy,
        from_user=form.fromUser, to_user=form.toUser, objects=form.identifiers(), context=form.context)
    return problems


@router.get("/transfer")
def transfer_form(request: Request) -> Response:
    def build(caller: Caller) -> Response:
        home = api_of(request).service.home_organisation(caller.user) if caller.user else ""
        return _form_page(request, caller, TransferForm(organisationId=home, actionBy=caller.user or ""), {}, 200)

    return page(request, build)


Text = Annotated[str, Form()]


class TransferFields:
    """The transfer form's fields as posted (one FastAPI dependency for the edit, preview and submit pages)."""

    def __init__(
        self, organisationId: Text = "", actionBy: Text = "", fromUser: Text = "", toUser: Text = "",
        objects: Text = "", context: Text = "User Deletion", lookup: Text = "", pick: Text = "",
    ) -> None:
        self.organisationId, self.actionBy, self.fromUser, self.toUser = organisationId, actionBy, fromUser, toUser
        self.objects, self.context = objects, context
        self.lookup, self.pick = lookup, pick  # the user look-up: what to look for; "fromUser:<id>" chosen

    def form(self, caller: Caller) -> TransferForm:
        # with a token, the admin is the token's user (the API refuses any other actionBy)
        return TransferForm(self.organisationId, caller.user or self.actionBy, self.fromUser, self.toUser,
                            self.objects, self.context)


Fields = Annotated[TransferFields, Depends()]


@router.get("/transfer/edit")
@router.get("/transfer/lookup")
@router.get("/transfer/preview")
def transfer_result_opened(request: Request) -> Response:
    """A form's result page opened again by its address (a new tab, a bookmark): the form, not a 405 in JSON."""
    return see(request, "/transfer")


@router.get("/failed/redrive")
def redrive_opened(request: Request) -> Response:
    return see(request, "/failed")


@router.post("/transfer/edit")
def transfer_edit(request: Request, fields: Fields) -> Response:
    def build(caller: Caller) -> Response:
        form = fields.form(caller)
        key, _, user_id = fields.pick.partition(":")
        if key in ("fromUser", "toUser") and user_id:  # a user chosen from the look-up
            setattr(form, key, user_id)
        return _form_page(request, caller, form, {}, 200)

    return page(request, build, post=True)


@router.post("/transfer/lookup")
def transfer_lookup(request: Request, fields: Fields) -> Response:
    """Find users of the form's organisation by id or name; each found user can be chosen as from- or to-user."""
    def build(caller: Caller) -> Response:
        api = api_of(request)
        form = fields.form(caller)
        try:
            found, by_name = api.call(api.service.find_users, form.actionBy, form.organisationId, fields.lookup)
        except ApiError as exc:
            if exc.status >= 500:
                raise
            return _form_page(request, caller, form, {"lookup": exc.errmsg}, 400, {"text": fields.lookup})
        users = [{"id": u.id, "label": person(u), "roles": ", ".join(u.roles)} for u in found]
        return _form_page(request, caller, form, {}, 200, {"text": fields.lookup, "users": users,
                                                          "by_name": by_name, "searched": True})

    return page(request, build, post=True)


@router.post("/transfer/preview")
def transfer_preview(request: Request, fields: Fields) -> Response:
    def build(caller: Caller) -> Response:
        api = api_of(request)
        form = fields.form(caller)
        problems = _form_problems(api, form)
        if problems:
            return _form_page(request, caller, form, problems, 400)
        try:
            result = preview_request(api, form.request_doc(api.service.roles_of), str(uuid.uuid4()),
                                     PREVIEW_RECORDS)
        except ApiError as exc:
            return _form_page(request, caller, form, errors_of(exc), exc.status)
        records = [(r["store"], r["key"]) for e in result["events"] for r in e["records"]]
        records += _assets_found(result["events"])
        return render(request, "preview.html", caller, title="Check the transfer", form=form, result=result,
                      all_rejected=result["allRejected"] and not result["nothingChanges"], nav="transfer",
                      names=api.service.names([form.actionBy, form.fromUser, form.toUser], form.organisationId),
                      records=api.service.record_names(records))

    return page(request, build, post=True)


@router.post("/transfer")
def transfer_submit(request: Request, fields: Fields) -> Response:
    def build(caller: Caller) -> Response:
        api = api_of(request)
        form = fields.form(caller)
        problems = _form_problems(api, form)
        if problems:
            return _form_page(request, caller, form, problems, 400)
        try:
            result = api.submit(form.request_doc(api.service.roles_of), str(uuid.uuid4()))
        except ApiError as exc:
            return _form_page(request, caller, form, errors_of(exc), exc.status)
        return see(request, f"/requests/{quote(result['requestId'], safe='')}", submitted=result["events"])

    return page(request, build, post=True)


# --- history and one request --------------------------------------------------------------------------


@router.get("/requests")
def history(request: Request, user: str = "", outcome: str = "") -> Response:
    def build(caller: Caller) -> Response:
        service = api_of(request).service
        number = _page_number(request.query_params.get("page"))
        errors = {}
        wanted = outcome if outcome in OUTCOMES else ""
        if outcome and not wanted:
            errors["outcome"] = f"Outcome must be one of {', '.join(OUTCOMES)}."
        found = service.history(user=user.strip() or None, outcome=wanted or None, action_by=caller.user,
                                limit=HISTORY_PAGE + 1, offset=(number - 1) * HISTORY_PAGE)
        rows = found or []
        names = service.names(i for r in rows[:HISTORY_PAGE] for i in (r.from_user, r.to_user, r.action_by) if i)
        more = len(rows) > HISTORY_PAGE
        query = {k: v for k, v in {"user": user.strip(), "outcome": wanted}.items() if v}
        return render(request, "history.html", caller, 400 if errors else 200, title="Request history",
                      rows=rows[:HISTORY_PAGE], kept=found is not None, user=user.strip(), outcome=wanted,
                      outcomes=OUTCOMES, errors=errors, nav="requests", page=number, names=names,
                      newer=urlencode({**query, "page": number - 1}) if number > 1 else None,
                      older=urlencode({**query, "page": number + 1}) if more else None)

    return page(request, build)


def _page_number(text: str | None) -> int:
    return int(text) if text and text.isdigit() and 0 < int(text) < 1_000_000 else 1


@dataclass
class UndoNote:
    reverted: int
    conflicts: int
    already: bool = False  # every event was undone before: nothing changed now


def _status(api: Api, request_id: str, caller: Caller) -> dict[str, Any]:
    return api.request_status(request_id, caller.user)  # 404 / 403 / 501 / 503 as the API


@router.get("/requests/{request_id}")
def request_detail(request: Request, request_id: str) -> Response:
    def build(caller: Caller) -> Response:
        api = api_of(request)
        status = _status(api, request_id, caller)
        summary = api.service.summary(request_id)
        errors = {f.mid: f.error for f in api.service.failed_events(caller.user, request_id=request_id) or []}
        events = status["events"]
        pending = any(e["outcome"] == "pending" for e in events)
        undoable = _undoable(events)
        undo = _undo_note(request.query_params)
        service = api.service
        names = service.names([summary.from_user or "", summary.to_user or "", summary.action_by or ""]
                              if summary is not None else [])
        records = [(c["store"], c["key"]) for e in events for c in e.get("changes", [])]
        records += _assets_found(events)
        title = summary.title if summary is not None else f"Request {request_id}"
        return render(request, "request.html", caller, title=title, request_id=request_id,
                      summary=summary, events=events, failures=errors, pending=pending, undoable=undoable,
                      submitted=request.query_params.get("submitted"), undo=undo, nav="requests", names=names,
                      records=service.record_names(records))

    return page(request, build)


def _assets_found(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The assets the events name that were found (an asset of another organisation answers as an absent one, so
    that it is not named either: no probing)."""
    not_found = Reason.ASSET_NOT_FOUND.value
    return [(STORE_ASSET, str(e["assetInformation"]["identifier"])) for e in events
            if e["assetInformation"].get("identifier") and e["outcome"] != "pending"
            and not_found not in e.get("skipped", ()) and e.get("reason") != not_found]


def _undoable(events: list[dict[str, Any]]) -> bool:
    """Every event processed, and one of them applied, with records changed (an event whose objects were all
    skipped changed none: nothing to revert), and not undone yet."""
    return not any(e["outcome"] == "pending" for e in events) and any(
        e["outcome"] == "applied" and any((e.get("changed") or {}).values()) and not e.get("undone") for e in events
    )


def _undo_note(query: Mapping[str, str]) -> UndoNote | None:
    reverted, conflicts = query.get("reverted", ""), query.get("conflicts", "")
    if reverted.isdigit() and conflicts.isdigit():
        return UndoNote(int(reverted), int(conflicts), query.get("already") == "1")
    return None


@router.get("/requests/{request_id}/undo")
def undo_confirm(request: Request, request_id: str) -> Response:
    def build(caller: Caller) -> Response:
        return _undo_page(request, caller, request_id, None, {}, 200)

    return page(request, build)


def _undo_page(request: Request, caller: Caller, request_id: str, admin: str | None, errors: Mapping[str, str],
               status: int) -> Response:
    api = api_of(request)
    found = _status(api, request_id, caller)  # its checks: the request exists and the caller may see it
    summary = api.service.summary(request_id)
    if admin is None:
        admin = caller.user or (summary.action_by if summary is not None else "") or ""
    events = found["events"]
    scope = api.service.undo_scope(request_id)  # the true counts, from the ledger
    names = api.service.names([summary.from_user or "", summary.to_user or "", caller.user or ""]
                              if summary is not None else [caller.user or ""])
    title = f"Undo “{summary.title}”?" if summary is not None else f"Undo request {request_id}?"
    return render(request, "undo.html", caller, status, title=title, request_id=request_id,
                  names=names, summary=summary, admin=admin, errors=dict(errors), scope=scope, nav="requests",
                  undoable=_undoable(events), undone=[e for e in events if e.get("undone")],
                  pending=any(e["outcome"] == "pending" for e in events))


@router.post("/requests/{request_id}/undo")
def undo(request: Request, request_id: str, actionBy: Text = "") -> Response:
    def build(caller: Caller) -> Response:
        api = api_of(request)
        admin = caller.user or actionBy.strip()
        if not admin:
            missing = {"actionBy": "actionBy key is not present in the data."}
            return _undo_page(request, caller, request_id, admin, missing, 400)
        try:
            result = undo_request(api, request_id, admin)
        except ApiError as exc:
            key = "actionBy" if exc.err == CANNOT_TRANSFER_OWNERSHIP else ""
            return _undo_page(request, caller, request_id, admin, {key: exc.errmsg}, exc.status)
        return see(request, f"/requests/{quote(request_id, safe='')}", reverted=result["reverted"],
                   conflicts=result["conflicts"], already="1" if result["alreadyUndone"] else None)

    return page(request, build, post=True)


# --- failed events ------------------------------------------------------------------------------------


@router.get("/failed")
def failed(request: Request) -> Response:
    def build(caller: Caller) -> Response:
        api = api_of(request)
        found = api.service.failed_events(caller.user, limit=FAILED_PAGE)
        q = request.query_params
        names = api.service.names(u for f in found or [] for u in (f.from_user, f.to_user) if u)
        return render(request, "failed.html", caller, title="Failed events", rows=found or [], names=names,
                      queue=found is not None, topic=api.app.settings["kafka.output.failed.topic"], nav="failed",
                      redriven=q.get("redriven"), missing=q.get("missing"))

    return page(request, build)


@router.post("/failed/redrive")
def redrive(request: Request, mid: Text = "") -> Response:
    def build(caller: Caller) -> Response:
        api = api_of(request)
        if not api.call(api.service.redrive, caller.user, mid):
            return see(request, "/failed", missing=mid)
        return see(request, "/failed", redriven=mid)

    return page(request, build, post=True)


# --- counters -----------------------------------------------------------------------------------------


@dataclass
class Counters:
    processed: int = 0
    applied_transfers: int = 0
    applied_cleanups: int = 0
    rejected: int = 0
    duplicates: int = 0
    failed: int = 0
    rejected_by_reason: list[tuple[str, int]] = field(default_factory=list)
    consumer_lag: int | None = None
    queue: dict[str, int] | None = None
    oldest_waiting_seconds: int | None = None
    ledger: list[tuple[str | None, str, str | None, int]] = field(default_factory=list)


def _samples(families: dict[str, Metric], metric: Any) -> list[Sample]:
    """The samples of ``metric`` in ``families``: a counter's ``_total`` ones, a gauge's own."""
    name = metric.describe()[0].name
    family = families.get(name)
    return [s for s in family.samples if s.name in (name, name + "_total")] if family is not None else []


def read_counters(api: Api) -> Counters:
    """The Prometheus counters (this process's, or every serving process's and the worker's with ``serve
    --workers N``: ``metrics.families``), the queue's backlog and the ledger's all-time outcomes."""
    families = metrics.families()

    def total(counter: Any) -> int:
        return int(sum(s.value for s in _samples(families, counter)))

    reasons: dict[str, int] = {}
    for sample in _samples(families, metrics.rejected_events):
        reason = sample.labels.get("reason", "")
        reasons[reason] = reasons.get(reason, 0) + int(sample.value)
    by_reason = sorted(reasons.items())
    lag_samples = [s.value for s in _samples(families, metrics.consumer_lag)]
    out = Counters(
        processed=total(metrics.total_events),
        applied_transfers=total(metrics.ownership_transfer_success),
        applied_cleanups=total(metrics.user_pii_update_success),
        rejected=sum(n for _, n in by_reason),
        duplicates=total(metrics.duplicate_events),
        failed=total(metrics.failed_events),
        rejected_by_reason=by_reason,
        consumer_lag=int(sum(lag_samples)) if lag_samples else None,
    )
    backlog = api.service.backlog
    if backlog is not None:
        out.queue = backlog.counts()
        oldest = backlog.oldest_pending_at()
        if oldest is not None:
            out.oldest_waiting_seconds = max(0, math.floor((datetime.now(UTC) - oldest).total_seconds()))
    out.ledger = api.service.processed_counts()
    return out


@router.get("/counters")
def counters(request: Request) -> Response:
    def build(caller: Caller) -> Response:
        numbers = read_counters(api_of(request))
        fragment = request.query_params.get("fragment") == "1"
        return render(request, "counters_fragment.html" if fragment else "counters.html", caller,
                      title="Counters", counters=numbers, nav="counters")

    return page(request, build)


# --- static files -------------------------------------------------------------------------------------


@router.get("/static/{name}")
def static(name: str) -> Response:
    media = STATIC_FILES.get(name)
    if media is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(HERE / "static" / name, media_type=media, headers={"Cache-Control": "no-cache"})
