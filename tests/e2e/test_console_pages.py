"""The admin console's pages over the app (no browser): they answer what the API answers (the same validation
and messages, each shown next to its field), follow the API's authentication, and pass the HTML check of labels
and headings. The browser scenarios are in ``test_console_browser``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import SqlEventQueue
from handover.bootstrap import ApiParts
from handover.domain import transfer_request as tr
from handover.domain.events import Reason
from handover.entrypoints.api import create_app
from handover.entrypoints.console import COOKIE, REASONS, field_of
from tests.e2e.api_support import BODY, TRANSFER, client, wired
from tests.e2e.console_support import ORG2, accessibility_problems, delete_meera, ravi_to_meera, zoe_to_kim
from tests.e2e.test_api_auth import bearer, new_key, public_pem, token
from tests.tokens import user_token

FORM = {"organisationId": "org-1", "actionBy": "u-admin", "fromUser": "u-ann", "toUser": "u-ravi", "objects": "",
        "context": "User Deletion"}


class Console:
    def __init__(self, http: TestClient, parts: ApiParts) -> None:
        self.http, self.parts = http, parts

    def page(self, path: str, status: int = 200, **kwargs: Any) -> str:
        response = self.http.get(path, **kwargs)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert accessibility_problems(response.text) == [], path
        return str(response.text)

    def post(self, path: str, data: dict[str, str], status: int = 200, **kwargs: Any) -> str:
        response = self.http.post(path, data=data, **kwargs)
        assert response.status_code == status, response.text
        assert accessibility_problems(response.text) == [], path
        return str(response.text)

    def drain(self) -> None:
        assert self.parts.worker is not None
        self.parts.worker.drain()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}", {"HANDOVER_MAX_ATTEMPTS": "1"})
    app.store.load(ORG2)  # type: ignore[attr-defined]
    with client(create_app(app, parts)) as http:
        yield Console(http, parts)


def error_of(html: str, field: str) -> str | None:
    """The error text shown next to a form field (None when there is none)."""
    hidden = '<span class="visually-hidden">Error: </span>'
    found = re.search(rf'<p class="error" id="{field}-error">{hidden}(.*?)</p>', html)
    if found is None:
        return None
    assert re.search(rf'id="{field}"[^>]*aria-describedby="[^"]*{field}-error"[^>]*aria-invalid="true"', html), html
    return found.group(1).replace("&#39;", "'").replace("&amp;", "&")


# --- the same validation as the API, its errors next to their fields ----------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"organisationId": ""}, "organisationId", "Enter the organisation ID, for example org-1."),
        ({"organisationId": "org-9"}, "organisationId", "No organisation org-9."),
        ({"actionBy": ""}, "actionBy", "Enter the admin's user ID."),
        ({"actionBy": "u-ravi"}, "actionBy", "u-ravi is not an admin of org-1."),
        ({"actionBy": "u-meera"}, "actionBy", "u-meera is not an admin of org-1."),
        ({"actionBy": "u-admin2"}, "actionBy", "No user u-admin2 in org-1."),  # an admin of another organisation
        ({"fromUser": "u-nobody"}, "fromUser", "No user u-nobody in org-1."),
        ({"fromUser": "u-zoe"}, "fromUser", "No user u-zoe in org-1."),  # another organisation's: as unknown
        ({"toUser": ""}, "toUser", "Enter the to-user's user ID."),
        ({"toUser": "u-ann"}, "toUser", "Choose another user than the from-user."),
        ({"fromUser": "u-ravi", "toUser": "u-ann"}, "toUser", "u-ann is deleted: choose a user who is not."),
        ({"objects": "do_q1, do\x00x"}, "objects", "The asset ID 'do\\x00x' contains a NUL character."),
    ],
)
def test_form_errors_are_in_the_forms_words_next_to_their_field(
    console: Console, changes: dict[str, str], field: str, message: str
) -> None:
    form = {**FORM, **changes}
    for path in ("/admin/transfer/preview", "/admin/transfer"):
        html = console.post(path, form, status=400)
        assert error_of(html, field) == message, html
        assert 'role="alert"' in html and f'href="#{field}"' in html  # the summary links to the field
        if "\x00" not in form[field]:
            assert f'value="{form[field]}"' in html or f">{form[field]}</textarea>" in html  # what was typed is kept
    assert console.page("/admin/requests").count("<tbody>") == 0  # nothing was submitted


def test_a_blank_form_reports_every_problem_at_once(console: Console) -> None:
    blank = dict.fromkeys(FORM, "")
    html = console.post("/admin/transfer/preview", blank, status=400)
    assert {f: error_of(html, f) for f in ("organisationId", "actionBy", "fromUser", "toUser")} == {
        "organisationId": "Enter the organisation ID, for example org-1.",
        "actionBy": "Enter the admin's user ID.",
        "fromUser": "Enter the from-user's user ID.",
        "toUser": "Enter the to-user's user ID.",
    }
    assert html.count('<li><a href="#') == 4  # the summary lists each, linked to its field
    several = console.post("/admin/transfer", {**FORM, "actionBy": "u-meera", "fromUser": "u-nobody",
                                               "toUser": "u-zoe"}, status=400)
    assert error_of(several, "actionBy") == "u-meera is not an admin of org-1."
    assert several.index('href="#actionBy"') < several.index('href="#fromUser"') < several.index('href="#toUser"')
    assert error_of(several, "fromUser") == "No user u-nobody in org-1."
    assert error_of(several, "toUser") == "No user u-zoe in org-1."
    assert "given user id" not in several and "not present or blank" not in several  # no API words


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("Organization ID is mandatory in the request.", "organisationId"),
        ("Organization with ID o does not exist.", "organisationId"),
        ("actionBy key is not present in the data.", "actionBy"),
        (tr.RESTRICTED, "actionBy"),
        ("given user id under fromUser is not present or blank", "fromUser"),
        ("Roles key is not present for fromUser", "fromUser"),
        ("Roles are empty in toUser details.", "toUser"),
        ("fromUser and toUser must be different users.", "toUser"),
        ("given identifier under objects is not present or blank", "objects"),
        ("context key is not present in the data.", "context"),
        ("Request body is not valid JSON.", None),
    ],
)
def test_every_validation_message_has_a_field(message: str, field: str | None) -> None:
    assert field_of(message) == field


def test_every_reason_is_explained() -> None:
    assert set(REASONS) == set(Reason)


def test_preview_shows_what_would_change_and_changes_nothing(console: Console) -> None:
    html = console.post("/admin/transfer/preview", FORM)
    assert "2 course batches and 4 assets would change." in html
    assert "do_course1/b-101" in html and "Ravi Kumar" in html
    for name, value in FORM.items():  # the confirmation carries the form
        assert f'<input type="hidden" name="{name}" value="{value}">' in html
    assert "No requests." in console.page("/admin/requests")

    objects = console.post("/admin/transfer/preview", {**FORM, "objects": "do_q1, do_missing"})
    assert "Question do_q1" in objects and "Asset do_missing" in objects
    assert "ASSET_NOT_FOUND: the asset does not exist" in objects

    refused = console.post("/admin/transfer/preview", {**FORM, "fromUser": "u-ravi", "toUser": "u-ann"}, status=400)
    assert error_of(refused, "toUser") == "u-ann is deleted: choose a user who is not."

    edit = console.post("/admin/transfer/edit", {**FORM, "objects": "do_q1"})
    assert ">do_q1</textarea>" in edit and "<h1>Transfer ownership</h1>" in edit


def test_submit_history_detail_undo(console: Console) -> None:
    response = console.http.post("/admin/transfer", data=FORM, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    request_id = location.split("/admin/requests/")[1].split("?")[0]
    assert "data-pending" in console.page(location)
    console.drain()
    detail = console.page(f"/admin/requests/{request_id}")
    assert "data-pending" not in detail and "outcome-applied" in detail
    assert "Undo this request" in detail and "do_course1/b-102" in detail

    history = console.page("/admin/requests")
    assert request_id in history and "u-ann → u-ravi" in history
    assert request_id in console.page("/admin/requests?user=u-ravi&outcome=applied")
    assert request_id not in console.page("/admin/requests?outcome=rejected")
    assert "Outcome must be one of" in console.page("/admin/requests?outcome=nonsense", status=400)

    confirm = console.page(f"/admin/requests/{request_id}/undo")
    assert 'value="u-admin"' in confirm  # the request's admin, to confirm with
    refused = console.post(f"/admin/requests/{request_id}/undo", {"actionBy": "u-ravi"}, status=400)
    assert error_of(refused, "actionBy") == tr.RESTRICTED
    done = console.http.post(f"/admin/requests/{request_id}/undo", data={"actionBy": "u-admin"},
                             follow_redirects=False)
    assert done.status_code == 303 and "reverted=11" in done.headers["location"]
    undone = console.page(done.headers["location"])
    assert "11 changes reverted, 0 conflicts" in undone and "outcome-undone" in undone
    assert "Undo this request" not in undone

    assert "Requested nope resource not found" in console.page("/admin/requests/nope", status=404)


def test_a_request_that_changed_nothing_offers_no_undo(console: Console) -> None:
    # u-meera (COURSE_MENTOR only) may not receive a Question: the event is applied with its asset skipped
    response = console.http.post("/admin/transfer", data={**FORM, "toUser": "u-meera", "objects": "do_q2"},
                                 follow_redirects=False)
    assert response.status_code == 303
    request_id = response.headers["location"].split("/admin/requests/")[1].split("?")[0]
    console.drain()
    detail = console.page(f"/admin/requests/{request_id}")
    assert "ROLE_NOT_ALLOWED" in detail and "Undo this request" not in detail
    confirm = console.page(f"/admin/requests/{request_id}/undo")
    assert "No event of this request changed anything: there is nothing to undo." in confirm
    assert "Yes, undo this request" not in confirm


@pytest.mark.parametrize(("path", "page"), [("/admin/transfer/preview", "/admin/transfer"),
                                            ("/admin/transfer/edit", "/admin/transfer"),
                                            ("/admin/transfer/lookup", "/admin/transfer"),
                                            ("/admin/failed/redrive", "/admin/failed")])
def test_a_result_page_opened_by_its_address_leads_to_its_form(console: Console, path: str, page: str) -> None:
    response = console.http.get(path, follow_redirects=False)  # a new tab, a bookmark: no JSON 405
    assert response.status_code == 303 and response.headers["location"] == page


def test_an_address_under_the_console_that_names_no_page(console: Console) -> None:
    page = console.page("/admin/requets", status=404)  # a typo: a console page, not the API's JSON
    assert "<h1>Not found</h1>" in page and "There is no console page at /admin/requets." in page
    assert console.http.get("/v1/nope").json()["params"]["err"] == "NOT_FOUND"  # the API's own stay JSON


def test_the_undo_page_of_a_request_partly_undone_counts_what_is_left(console: Console) -> None:
    response = console.http.post("/admin/transfer", data={**FORM, "objects": "do_q1, do_q2"}, follow_redirects=False)
    request_id = response.headers["location"].split("/admin/requests/")[1].split("?")[0]
    console.drain()
    first, second = console.http.get(f"{TRANSFER}/{request_id}").json()["result"]["events"]
    console.http.app.state.api.app.undoer().undo_event(first["mid"])  # `handover undo MID`: one event of two
    confirm = console.page(f"/admin/requests/{request_id}/undo")
    left = second["changed"]["assets"]
    # not "The request changed 0 course batches and 1 asset" for a request that changed 3 assets
    assert (f"Its events not undone yet (1 of 2) changed <strong>0 course batches</strong> and <strong>{left} asset"
            in confirm), confirm
    assert "Yes, undo this request" in confirm


def test_failed_event_and_redrive(console: Console) -> None:
    queue = console.parts.sink
    assert isinstance(queue, SqlEventQueue)
    assert console.http.post(TRANSFER, json=ravi_to_meera()).status_code == 200
    delete_meera(SqlStore(str(queue._engine.url)))
    console.drain()
    assert "USER_DELETED" in console.page("/admin/requests?outcome=rejected")
    assert "No failed events." in console.page("/admin/failed")
    # a failure as the worker records it (the browser test makes one happen for real)
    console.http.post(TRANSFER, json=BODY)
    item = queue.claim_next()
    assert item is not None
    queue.finish(item.id, failed=True, attempts=5, error="OperationalError: database is locked")
    failed = console.page("/admin/failed")
    assert item.mid in failed and "database is locked" in failed and "(5 attempts)" in failed
    assert 'aria-label="Redrive event ' + item.mid in failed
    redriven = console.http.post("/admin/failed/redrive", data={"mid": item.mid})
    assert redriven.status_code == 200
    assert f'Event <span class="id">{item.mid}</span> is queued again' in redriven.text
    console.drain()
    assert "No failed events." in console.page("/admin/failed")
    again = console.post("/admin/failed/redrive", {"mid": item.mid})
    assert "it may have been redriven already" in again

    counters = console.page("/admin/counters")
    assert "USER_DELETED: the to-user is deleted" in counters and "Events waiting" in counters
    fragment = console.http.get("/admin/counters?fragment=1").text  # the part the page reloads every 5 s
    assert "<html" not in fragment and "Events processed" in fragment


def test_what_was_typed_is_shown_as_text(console: Console) -> None:
    typed = '"><script>alert(1)</script>'
    html = console.post("/admin/transfer/preview", {**FORM, "fromUser": typed}, status=400)
    assert "<script>alert" not in html and 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert "<script>alert" not in console.page("/admin/requests?user=" + typed)


def test_a_store_that_is_down_is_said_in_words(console: Console, tmp_path: Path) -> None:
    (tmp_path / "handover.db").unlink()
    (tmp_path / "handover.db").mkdir()  # no longer a database file
    console.http.app.state.api.app.store.engine.dispose()  # type: ignore[attr-defined]  # no open connection
    html = console.page("/admin/requests", status=503)
    assert "The store is unavailable (OperationalError)" in html


def test_a_fault_of_the_console_itself_is_not_blamed_on_the_store(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = console.http.app.state.api.service  # type: ignore[attr-defined]

    def broken(**_: object) -> None:
        raise TypeError("a programming error")

    monkeypatch.setattr(service, "history", broken)
    html = console.page("/admin/requests", status=500)
    assert "The console failed on this page (TypeError)" in html and "store is unavailable" not in html


def test_cross_site_posts_are_refused(console: Console) -> None:
    response = console.http.post("/admin/transfer", data=FORM, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and "another site" in response.text
    assert "No requests." in console.page("/admin/requests")


def test_static_files_and_banner(console: Console) -> None:
    assert console.http.get("/admin/static/console.css").headers["content-type"].startswith("text/css")
    assert "fetch(" in console.http.get("/admin/static/console.js").text
    assert console.http.get("/admin/static/../api.py").status_code == 404
    assert console.http.get("/admin/static/nope.js").status_code == 404
    assert "Authentication is off" in console.page("/admin/transfer")
    assert console.http.get("/admin", follow_redirects=False).headers["location"] == "/admin/transfer"


def test_without_the_embedded_queue_failed_events_point_to_kafka(tmp_path: Path) -> None:
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}")
    with client(create_app(app, ApiParts(parts.sink, parts.requests, None))) as http:
        html = Console(http, parts).page("/admin/failed")
    assert "handover.failed" in html and "handover redrive" in html


# --- authentication as the API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture
def secured(tmp_path: Path, key: rsa.RSAPrivateKey) -> Iterator[Console]:
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}",
                       {"HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": public_pem(key)})
    app.store.load(ORG2)  # type: ignore[attr-defined]
    with client(create_app(app, parts)) as http:
        yield Console(http, parts)


def test_with_jwt_the_console_asks_for_a_token_once(secured: Console, key: rsa.RSAPrivateKey) -> None:
    http = secured.http
    first = http.get("/admin/requests", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/admin/login?next=%2Fadmin%2Frequests")
    login = secured.page(first.headers["location"])
    assert 'type="password"' in login and "Authentication is off" not in login

    bad = secured.post("/admin/login", {"token": "nonsense", "next": "/admin/requests"}, status=401)
    assert (error_of(bad, "token") or "").startswith("Not signed in: the token is not valid")

    signed = http.post("/admin/login", data={"token": token(key), "next": "/admin/requests"}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/admin/requests"
    cookie = signed.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    form = secured.page("/admin/transfer")
    assert "Signed in as <strong>u-admin</strong>" in form and "Authentication is off" not in form
    assert re.search(r'id="actionBy"[^>]*value="u-admin"[^>]*readonly', form)
    assert 'id="organisationId" name="organisationId" type="text" value="org-1"' in form  # the admin's own

    # the admin is the token's user whatever the form says
    done = http.post("/admin/transfer", data={**FORM, "actionBy": "u-admin2"}, follow_redirects=False)
    assert done.status_code == 303
    secured.drain()
    mine = secured.page(done.headers["location"])
    assert "<dt>Admin</dt><dd>Org Admin (u-admin)</dd>" in mine
    confirm = secured.page(done.headers["location"].split("?")[0] + "/undo")  # titled and named as the request
    assert "<h1>Undo “u-ann → u-ravi: everything”?</h1>" in confirm
    assert "Undone by <strong>Org Admin (u-admin)</strong>" in confirm
    # the look-up is the token's user's too: another admin's id typed in the form opens no other organisation
    elsewhere = http.post("/admin/transfer/lookup", data={**FORM, "organisationId": "org-2", "actionBy": "u-admin2",
                                                          "lookup": "zo"})
    assert elsewhere.status_code == 400 and "Zoë" not in elsewhere.text
    assert error_of(elsewhere.text, "lookup") == "Look-ups are for the admins of org-2: u-admin is not one of them."
    assert "Ravi Kumar (u-ravi)" in http.post("/admin/transfer/lookup", data={**FORM, "lookup": "ravi"}).text

    # another organisation's admin (a bearer header works as the cookie does) sees only its own requests and
    # the failed events of its organisation
    as_admin2 = bearer(token(key, sub="u-admin2"))
    other = http.post(TRANSFER, json=zoe_to_kim(), headers=as_admin2)
    assert other.status_code == 200, other.text
    queue = secured.parts.sink
    assert isinstance(queue, SqlEventQueue)
    item = queue.claim_next()
    assert item is not None
    queue.finish(item.id, failed=True, attempts=1, error="OperationalError: database is locked")
    assert item.mid not in secured.page("/admin/failed")
    assert "Not allowed" in secured.post("/admin/failed/redrive", {"mid": item.mid}, status=403)
    http.cookies.clear()
    assert "u-ann → u-ravi" not in secured.page("/admin/requests", headers=as_admin2)
    assert "u-zoe → u-kim" in secured.page("/admin/requests", headers=as_admin2)
    assert item.mid in secured.page("/admin/failed", headers=as_admin2)
    path = done.headers["location"].split("?")[0]
    assert "not the actionBy user" in secured.page(path, status=403, headers=as_admin2)

    expired = secured.http.get("/admin/requests", headers=bearer(token(key, expires_in=-60)), follow_redirects=False)
    assert expired.status_code == 303 and expired.headers["location"].endswith("&again=1")
    assert "it has expired or is not valid" in secured.page(expired.headers["location"])
    logged_out = http.post("/admin/logout", follow_redirects=False)
    assert logged_out.status_code == 303 and f'{COOKIE}=""' in logged_out.headers["set-cookie"]


def test_login_goes_only_to_console_pages(secured: Console, key: rsa.RSAPrivateKey) -> None:
    for target in ("https://evil.example/", "//evil.example/admin/x", "/metrics"):
        response = secured.http.post("/admin/login", data={"token": token(key), "next": target},
                                     follow_redirects=False)
        assert response.headers["location"] == "/admin/transfer", target


def test_sign_in_refuses_loose_subjects_and_says_why(secured: Console, key: rsa.RSAPrivateKey) -> None:
    for sub in ("anything:u-admin", "f::u-admin", "a:b:c:d"):
        html = secured.post("/admin/login", {"token": token(key, sub), "next": "/admin/requests"}, status=401)
        assert (error_of(html, "token") or "").startswith(f"Not signed in: the token's subject (sub) '{sub}' is not")
    assert error_of(secured.post("/admin/login", {"token": " ", "next": ""}, status=401), "token") == (
        "Not signed in: no token was given."
    )
    assert COOKIE not in secured.http.cookies


def test_the_user_token_header_signs_in_as_behind_the_gateway(secured: Console, key: rsa.RSAPrivateKey) -> None:
    gateway = bearer("the-gateway-key")  # not a user token: never read while a user token or the session is there
    form = secured.page("/admin/transfer", headers={**gateway, **user_token(token(key))})
    assert "Signed in as <strong>u-admin</strong>" in form
    # the user token header wins over the session cookie, and a bad one is not replaced by it
    secured.http.post("/admin/login", data={"token": token(key, "u-admin2")})
    assert "Signed in as <strong>u-admin2</strong>" in secured.page("/admin/transfer", headers=gateway)
    assert "Signed in as <strong>u-admin</strong>" in secured.page("/admin/transfer",
                                                                     headers=user_token(token(key)))
    expired = secured.http.get("/admin/transfer", headers=user_token(token(key, expires_in=-60)),
                               follow_redirects=False)
    assert expired.status_code == 303 and expired.headers["location"].endswith("&again=1")
    # without a session, a gateway key alone signs nobody in
    secured.http.cookies.clear()
    alone = secured.http.get("/admin/transfer", headers=gateway, follow_redirects=False)
    assert alone.status_code == 303 and alone.headers["location"].endswith("&again=1")


def test_sign_out_from_another_site_is_refused(secured: Console, key: rsa.RSAPrivateKey) -> None:
    secured.http.post("/admin/login", data={"token": token(key)})
    refused = secured.http.post("/admin/logout", headers={"Origin": "http://evil.example"}, follow_redirects=False)
    assert refused.status_code == 403 and "another site" in refused.text
    assert "set-cookie" not in refused.headers
    assert "Signed in as <strong>u-admin</strong>" in secured.page("/admin/transfer")  # still signed in
    same = secured.http.post("/admin/logout", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert same.status_code == 303 and f'{COOKIE}=""' in same.headers["set-cookie"]


@pytest.mark.parametrize(
    ("setting", "scheme", "secure"),
    [(None, "http", False), (None, "https", True), ("auto", "https", True), ("true", "http", True),
     ("false", "https", False)],
)
def test_the_session_cookie_secure_flag(tmp_path: Path, key: rsa.RSAPrivateKey, setting: str | None, scheme: str,
                                        secure: bool) -> None:
    env = {"HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": public_pem(key)}
    if setting is not None:
        env["HANDOVER_AUTH_COOKIE_SECURE"] = setting
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}", env)
    with TestClient(create_app(app, parts), base_url=f"{scheme}://testserver") as http:
        signed = http.post("/admin/login", data={"token": token(key)}, follow_redirects=False)
        out = http.post("/admin/logout", follow_redirects=False)
    assert signed.status_code == 303 and out.status_code == 303
    for cookie in (signed.headers["set-cookie"], out.headers["set-cookie"]):
        assert ("; secure" in cookie.lower()) is secure, cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie


# --- issue 14: honest previews, names beside ids, undone requests ---------------------------------------


def test_a_preview_says_what_stays_and_names_people_and_records(console: Console) -> None:
    html = console.post("/admin/transfer/preview", FORM)
    assert "Ann Lee (u-ann, deleted)" in html and "Ravi Kumar (u-ravi)" in html and "Org Admin (u-admin)" in html
    assert "Course batch do_course1/b-101 “Algebra, spring”" in html and "Question do_q1" in html
    stays = re.search(r'<ul class="plain" id="stays">(.*?)</ul>', html, re.S)
    assert stays is not None, html
    items = [re.sub(r"\s+", " ", i).strip() for i in re.findall(r"<li>(.*?)</li>", stays.group(1), re.S)]
    assert items == ["1 completed course batch (only upcoming and ongoing batches are transferred)",
                     "1 asset of type Content (a type that is not transferred)"]
    assert ">Submit the transfer</button>" in html and "Nothing would change" not in html


def test_a_preview_that_changes_nothing_says_so(console: Console) -> None:
    html = console.post("/admin/transfer/preview", {**FORM, "fromUser": "u-admin"})  # owns nothing
    assert "Nothing would change." in html and "Would change nothing." in html
    assert "outcome-applied" not in html and ">Submit the transfer</button>" not in html
    assert "No event would change anything," in html and "Org Admin (u-admin) owns nothing that a transfer" in html
    assert 'id="stays">Nothing:' in html


def test_a_preview_flags_unknown_assets_and_offers_no_submit_when_all_would_be_rejected(console: Console) -> None:
    html = console.post("/admin/transfer/preview", {**FORM, "objects": "do_nope"})
    unknown = re.search(r'<p class="warning" role="alert" id="unknown-assets">(.*?)</p>', html, re.S)
    assert unknown is not None and "do_nope" in unknown.group(1) and "Unknown asset" in unknown.group(1)
    assert "No event would change anything," in html and "ASSET_NOT_FOUND: the asset does not exist" in html
    assert "Submit" not in html.split('id="all-rejected"')[1]  # no submit button at all
    assert 'formaction="/admin/transfer/edit">Change the details</button>' in html
    assert "Only the assets named move" in html

    mixed = console.post("/admin/transfer/preview", {**FORM, "objects": "do_q1, do_nope"})
    assert 'id="unknown-assets"' in mixed and 'id="all-rejected"' not in mixed
    assert ">Submit the transfer</button>" in mixed


def test_the_user_lookup_finds_by_id_or_name_within_the_organisation(console: Console) -> None:
    by_name = console.post("/admin/transfer/lookup", {**FORM, "fromUser": "", "lookup": "kumar"})
    assert "1 user found for “kumar”" in by_name and "Ravi Kumar (u-ravi)" in by_name
    assert 'value="fromUser:u-ravi"' in by_name and 'value="toUser:u-ravi"' in by_name
    by_id = console.post("/admin/transfer/lookup", {**FORM, "lookup": "u-meera"})
    assert "Meera (u-meera)" in by_id
    other_org = console.post("/admin/transfer/lookup", {**FORM, "lookup": "zo"})  # Zoë is in org-2
    assert "u-zoe" not in other_org and "No user of org-1 has the ID or a name like “zo”." in other_org
    deleted = console.post("/admin/transfer/lookup", {**FORM, "lookup": "ann"})  # Ann Lee is deleted
    assert "u-ann)" not in deleted.split("Look up a user")[1].split("</fieldset>")[0]
    elsewhere = console.post("/admin/transfer/lookup", {**FORM, "organisationId": "org-2", "lookup": "zo"},
                             status=400)  # u-admin may not look into org-2
    assert error_of(elsewhere, "lookup") == "Look-ups are for the admins of org-2: u-admin is not one of them."
    blank = console.post("/admin/transfer/lookup", {**FORM, "actionBy": "", "lookup": "ravi"}, status=400)
    assert error_of(blank, "lookup") == "Enter the admin's user ID first: look-ups are for the admins of org-1."
    assert "Zoë" not in elsewhere
    refused = console.post("/admin/transfer/lookup", {**FORM, "organisationId": "", "lookup": "x"}, status=400)
    assert error_of(refused, "lookup") == "Enter the organisation ID and an ID or a name to look for."
    picked = console.post("/admin/transfer/edit", {**FORM, "fromUser": "", "pick": "fromUser:u-ravi"})
    assert 'id="fromUser" name="fromUser" type="text" value="u-ravi"' in picked
    assert "Now: <strong>Ravi Kumar (u-ravi)</strong>." in picked


def test_history_and_detail_show_titles_names_and_undone(console: Console) -> None:
    response = console.http.post("/admin/transfer", data=FORM, follow_redirects=False)
    request_id = response.headers["location"].split("/admin/requests/")[1].split("?")[0]
    console.drain()
    history = console.page("/admin/requests")
    assert "u-ann → u-ravi: everything</a>" in history and request_id in history
    assert "Ann Lee (u-ann, deleted) → Ravi Kumar (u-ravi)" in history and "Org Admin (u-admin)" in history
    detail = console.page(f"/admin/requests/{request_id}")
    assert "<h1>u-ann → u-ravi: everything</h1>" in detail and "Everything of Ann Lee (u-ann, deleted)" in detail
    assert "Course batch do_course1/b-101 “Algebra, spring”" in detail

    done = console.http.post(f"/admin/requests/{request_id}/undo", data={"actionBy": "u-admin"},
                             follow_redirects=False)
    assert "already" not in done.headers["location"]
    detail = console.page(f"/admin/requests/{request_id}")
    assert "outcome-undone" in detail and "(applied, then undone)" in detail and "outcome-applied" not in detail
    history = console.page("/admin/requests")
    assert "outcome-undone" in history and "outcome-applied" not in history
    assert request_id in console.page("/admin/requests?outcome=undone")
    assert request_id not in console.page("/admin/requests?outcome=applied")
    confirm = console.page(f"/admin/requests/{request_id}/undo")
    assert "This request was already undone at" in confirm and "Yes, undo this request" not in confirm

    again = console.http.post(f"/admin/requests/{request_id}/undo", data={"actionBy": "u-admin"},
                              follow_redirects=False)
    assert again.status_code == 303 and "already=1" in again.headers["location"]
    page = console.page(again.headers["location"])
    assert "This request was already undone, 0 reverted: nothing changed." in page and "11 changes" not in page
    status = console.http.get(f"{TRANSFER}/{request_id}").json()["result"]["events"]
    assert [e["undone"] for e in status] == [True]
    api = console.http.post(f"{TRANSFER}/{request_id}/undo", json={"request": {"actionBy": {"userId": "u-admin"}}})
    assert api.json()["result"]["message"] == "already undone, 0 reverted"
