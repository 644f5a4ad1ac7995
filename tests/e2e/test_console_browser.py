"""The admin console in a real browser (Debian's chromium driven by Playwright) against a real ``handover serve``
on a temporary SQLite store: preview then submit a transfer, see it applied in the history and undo it; a
rejected request's reason; an event that the database refuses to write fails for real, and is redriven once the
cause is gone; counters; signing in with a token. Every page is checked for labels and headings, and with
axe-core where the set-up installed it; screenshots at desktop and phone width go to ``test-artifacts/console``.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import SqlEventQueue
from handover.domain.transfer_request import TransferRequest, UserProfile, build_events
from tests.conftest import ROOT
from tests.e2e.api_support import Server, loaded_store, serving, serving_with_tokens
from tests.e2e.console_support import ORG2, accessibility_problems
from tests.e2e.test_api_auth import new_key, public_pem, token
from tests.store_faults import asset_writes_refused

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "console"
AXE = Path(os.environ.get("HANDOVER_AXE_JS", ROOT / ".venv" / "npm" / "node_modules" / "axe-core" / "axe.min.js"))
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
WAIT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package chromium)"),
]


# --- the server, the browser, the checks ----------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SqlStore:
    url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'handover.db'}"
    loaded = loaded_store(url)
    loaded.load(ORG2)
    return loaded


@pytest.fixture(scope="module")
def server(store: SqlStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"HANDOVER_STORE": store.url, "HANDOVER_AUTH_MODE": "none", "HANDOVER_MAX_ATTEMPTS": "2",
           "HANDOVER_KAFKA_BROKER_SERVERS": ""}
    with serving(env, tmp_path_factory.mktemp("serve") / "serve.log") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def check(page: Page, name: str) -> None:
    """The page's labels and headings, then a screenshot at desktop and at phone width."""
    assert accessibility_problems(page.content()) == [], page.url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page scrolls sideways on a phone ({width}px)"
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def fill_transfer(page: Page, org: str, admin: str, from_user: str, to_user: str) -> None:
    page.get_by_label("Organisation ID").fill(org)
    page.get_by_label("Admin user ID").fill(admin)
    page.get_by_label("From user ID").fill(from_user)
    page.get_by_label("To user ID").fill(to_user)


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()


def request_id_of(page: Page) -> str:
    found = re.search(r"/admin/requests/([^/?]+)", page.url)
    assert found, page.url
    return found.group(1)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# --- scenarios ------------------------------------------------------------------------------------------


def test_preview_submit_history_and_undo(server: Server, page: Page) -> None:
    page.goto(f"{server.base}/admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Transfer ownership")
    expect(page.get_by_role("note")).to_contain_text("Authentication is off")
    check(page, "transfer-form")

    # keyboard only: each field in turn, a visible focus ring, Enter submits
    page.get_by_label("Organisation ID").focus()
    for value in ("org-1", "u-admin", "u-ann", "u-ravi", ""):  # the last: the objects box, left empty
        page.keyboard.type(value)
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), "the focused field shows no focus ring"
        page.keyboard.press("Tab")
    expect(page.get_by_label("Context")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", level=1)).to_have_text("Check the transfer")
    expect(page.locator("#preview-total")).to_have_text("2 course batches and 4 assets would change.")
    expect(page.get_by_role("cell", name="Course batch do_course1/b-101 “Algebra, spring”").first).to_be_visible()
    expect(page.locator("#stays")).to_contain_text("1 completed course batch")
    expect(page.locator("#stays")).to_contain_text("1 asset of type Content")
    check(page, "transfer-preview")

    page.get_by_role("button", name="Submit the transfer").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("u-ann → u-ravi: everything")
    expect(page.locator(".outcome-applied")).to_be_visible()  # the page updates itself once processed
    request_id = request_id_of(page)
    expect(page.get_by_role("cell", name="Ravi Kumar").first).to_be_visible()
    check(page, "request-applied")

    nav(page, "History")
    row = page.get_by_role("row").filter(has_text=request_id)
    expect(row.get_by_role("link")).to_have_text("u-ann → u-ravi: everything")
    expect(row).to_contain_text("Ann Lee (u-ann, deleted) → Ravi Kumar (u-ravi)")
    expect(row).to_contain_text("applied")
    check(page, "history")

    row.get_by_role("link").click()
    page.get_by_role("link", name="Undo this request…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Undo “u-ann → u-ravi: everything”?")  # as titled
    expect(page.locator(".request-id")).to_have_text(f"Request {request_id}")
    check(page, "undo-confirm")
    second_tab = page.context.new_page()  # the same confirmation, open in another tab
    second_tab.goto(page.url)
    page.get_by_role("button", name="Yes, undo this request").click()
    expect(page.get_by_role("status")).to_contain_text("11 changes reverted, 0 conflicts")
    expect(page.locator(".outcome-undone")).to_be_visible()
    expect(page.locator(".event")).to_contain_text("(applied, then undone)")
    expect(page.get_by_role("link", name="Undo this request…")).to_have_count(0)
    check(page, "request-undone")

    # issue 14 point 1: undone everywhere, and a repeated undo says it reverted nothing
    second_tab.get_by_role("button", name="Yes, undo this request").click()
    repeated = "This request was already undone, 0 reverted: nothing changed."
    expect(second_tab.get_by_role("status")).to_have_text(repeated)
    check(second_tab, "request-undo-repeated")
    second_tab.close()
    page.goto(f"{server.base}/admin/requests/{request_id}/undo")
    expect(page.get_by_role("status")).to_contain_text("This request was already undone at")
    expect(page.get_by_role("button", name="Yes, undo this request")).to_have_count(0)
    check(page, "undo-already-undone")
    nav(page, "History")
    page.get_by_label("Outcome").select_option("undone")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row").filter(has_text=request_id)
    expect(row.locator(".outcome-undone")).to_have_text("undone")
    expect(row.locator(".outcome-applied")).to_have_count(0)
    check(page, "history-undone")


def test_api_errors_and_a_rejected_requests_reason(server: Server, store: SqlStore, page: Page) -> None:
    page.goto(f"{server.base}/admin/transfer")
    fill_transfer(page, "org-1", "u-admin", "u-ravi", "u-nobody")
    page.get_by_role("button", name="Preview the transfer").click()
    to_user = page.get_by_label("To user ID")
    expect(to_user).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#toUser-error")).to_have_text("Error: No user u-nobody in org-1.")
    expect(page.locator("[data-error-summary]")).to_be_focused()
    check(page, "transfer-error")

    to_user.fill("u-ann")  # exists but deleted: refused up front, as the API does (issue 13 item 9)
    page.get_by_role("button", name="Preview the transfer").click()
    expect(page.locator("#toUser-error")).to_have_text("Error: u-ann is deleted: choose a user who is not.")

    # an event the worker rejects: queued by another producer (the API refuses it), then shown by the console
    doomed = TransferRequest("org-1", "User Deletion", UserProfile("u-admin", "admin1"),
                             UserProfile("u-ravi", "ravi_k", ("CONTENT_CREATOR",)),
                             UserProfile("u-ann", "ann_lee", ("CONTENT_CREATOR",)), ())
    request_id = "req-browser-rejected"
    events = build_events(doomed, request_id, int(time.time() * 1000), lambda: uuid.uuid4().hex)
    SqlEventQueue(store).publish_request(request_id, "u-admin", events)
    deadline = time.monotonic() + 20
    while True:  # the server's in-process worker takes it within its poll interval
        page.goto(f"{server.base}/admin/requests/{request_id}")
        if page.locator(".outcome-rejected").count() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    expect(page.locator(".outcome-rejected")).to_be_visible()
    expect(page.locator(".event")).to_contain_text("USER_DELETED: the to-user is deleted")
    check(page, "request-rejected")

    nav(page, "History")
    page.get_by_label("Outcome").select_option("rejected")
    page.get_by_label("User ID").fill("u-ravi")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.history tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(request_id)
    expect(rows).to_contain_text("USER_DELETED: the to-user is deleted")
    check(page, "history-rejected")


def test_a_failed_event_is_redriven(server: Server, store: SqlStore, page: Page) -> None:
    page.goto(f"{server.base}/admin/transfer")
    fill_transfer(page, "org-2", "u-admin2", "u-zoe", "u-kim")
    page.get_by_role("button", name="Preview the transfer").click()
    expect(page.locator("#preview-total")).to_have_text("0 course batches and 1 asset would change.")
    with asset_writes_refused(store, "u-zoe"):  # the database refuses the writes: processing fails for real
        page.get_by_role("button", name="Submit the transfer").click()
        expect(page.locator(".outcome-failed")).to_be_visible()
        expect(page.locator(".event")).to_contain_text("refused by a test trigger")
        check(page, "request-failed")

        nav(page, "Failed events")
        row = page.get_by_role("row").filter(has_text="Zoë Ünal (u-zoe) → Kim Park (u-kim)")
        expect(row).to_contain_text("PROCESSING_FAILED: processing failed after every retry (2 attempts)")
        expect(row).to_contain_text("asset writes refused by a test trigger")
        check(page, "failed-events")
    redrive = row.get_by_role("button", name="Redrive")
    redrive.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("is queued again")
    expect(page.get_by_text("No failed events.")).to_be_visible()

    nav(page, "History")
    page.get_by_label("User ID").fill("u-kim")
    page.get_by_role("button", name="Filter").click()
    page.locator("table.history tbody tr a").first.click()
    expect(page.locator(".outcome-applied")).to_be_visible()
    expect(page.get_by_role("cell", name="Question do_z1").first).to_be_visible()

    nav(page, "Counters")
    expect(page.locator("#failed")).to_have_text("1")  # this server's only failure
    expect(page.locator("#waiting")).to_have_text("0")
    expect(page.get_by_role("table")).to_contain_text("ownership-transfer")
    check(page, "counters")


def test_every_form_problem_at_once_in_the_forms_words(server: Server, page: Page) -> None:
    """Issue 14 point 4: a blank form reports every missing field at once; wrong users in the form's words."""
    page.goto(f"{server.base}/admin/transfer")
    for label in ("Organisation ID", "Admin user ID", "From user ID", "To user ID"):
        page.get_by_label(label).fill("")
    page.get_by_role("button", name="Preview the transfer").click()
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link")).to_have_text([
        "Organisation ID: Enter the organisation ID, for example org-1.", "Admin user ID: Enter the admin's user ID.",
        "From user ID: Enter the from-user's user ID.", "To user ID: Enter the to-user's user ID."])
    for field in ("organisationId", "actionBy", "fromUser", "toUser"):
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
    check(page, "transfer-blank")

    fill_transfer(page, "org-1", "u-meera", "u-nobody", "u-zoe")
    page.get_by_role("button", name="Preview the transfer").click()
    expect(page.locator("#actionBy-error")).to_have_text("Error: u-meera is not an admin of org-1.")
    expect(page.locator("#fromUser-error")).to_have_text("Error: No user u-nobody in org-1.")
    expect(page.locator("#toUser-error")).to_have_text("Error: No user u-zoe in org-1.")  # another organisation's
    expect(page.locator("#organisationId-error")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("given user id")
    summary.get_by_role("link", name="From user ID: No user u-nobody in org-1.").click()
    expect(page.get_by_label("From user ID")).to_be_focused()  # the summary leads to the field
    check(page, "transfer-errors-words")


def test_honest_previews(server: Server, page: Page) -> None:
    """Issue 14 point 2: nothing would change, an unknown asset, what stays with the old owner."""
    page.goto(f"{server.base}/admin/transfer")
    fill_transfer(page, "org-1", "u-admin", "u-admin", "u-ravi")  # the admin owns nothing
    page.get_by_role("button", name="Preview the transfer").click()
    expect(page.locator("#preview-total")).to_have_text("Nothing would change.")
    expect(page.locator("#all-rejected")).to_contain_text("No event would change anything, so there is nothing")
    expect(page.locator(".outcome-applied")).to_have_count(0)
    expect(page.get_by_role("button", name="Submit the transfer")).to_have_count(0)
    expect(page.get_by_role("button", name="Change the details")).to_be_visible()
    check(page, "preview-nothing")

    page.get_by_role("button", name="Change the details").click()
    page.get_by_label("From user ID").fill("u-ann")
    page.get_by_label("Objects").fill("do_nope")
    page.get_by_role("button", name="Preview the transfer").click()
    expect(page.locator("#unknown-assets")).to_contain_text("Unknown asset: do_nope")
    expect(page.locator("#all-rejected")).to_contain_text("ASSET_NOT_FOUND: the asset does not exist")
    expect(page.get_by_role("button", name="Submit the transfer")).to_have_count(0)
    check(page, "preview-unknown-asset")

    page.get_by_role("button", name="Change the details").click()
    page.get_by_label("Objects").fill("do_q1, do_nope")
    page.get_by_role("button", name="Preview the transfer").click()
    expect(page.locator("#unknown-assets")).to_contain_text("do_nope")
    expect(page.locator("#preview-total")).to_have_text("0 course batches and 2 assets would change.")  # and its image
    expect(page.get_by_role("heading", name="Question do_q1")).to_be_visible()
    expect(page.get_by_role("button", name="Submit the transfer")).to_be_visible()
    expect(page.locator("#stays")).to_have_text(
        "Only the assets named move; everything else of Ann Lee (u-ann, deleted) stays.")
    check(page, "preview-some-unknown")


def test_names_beside_ids_and_the_user_lookup(server: Server, page: Page) -> None:
    """Issue 14 point 3: find users by name within the organisation, pick them; names in the preview."""
    page.goto(f"{server.base}/admin/transfer")
    fill_transfer(page, "org-1", "u-admin", "", "")
    page.get_by_label("Find a user").fill("kumar")
    page.get_by_role("button", name="Find").click()
    found = page.locator("ul.found li")
    expect(found).to_have_count(1)
    expect(found).to_contain_text("Ravi Kumar (u-ravi)")
    check(page, "transfer-lookup")
    page.get_by_role("button", name="Ravi Kumar (u-ravi) as the to-user").click()
    expect(page.get_by_label("To user ID")).to_have_value("u-ravi")
    expect(page.locator("#toUser-hint")).to_contain_text("Now: Ravi Kumar (u-ravi).")

    page.get_by_label("Find a user").fill("zo")  # Zoë Ünal is in org-2: not found from org-1
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("status")).to_contain_text("No user of org-1 has the ID or a name like “zo”.")
    page.get_by_label("Find a user").fill("u-meera")
    page.get_by_label("Find a user").press("Enter")  # Enter in the look-up looks up
    page.get_by_role("button", name="Meera (u-meera) as the from-user").click()
    expect(page.get_by_label("From user ID")).to_have_value("u-meera")
    page.get_by_role("button", name="Preview the transfer").click()
    summary = page.locator("dl.summary")
    expect(summary).to_contain_text("Org Admin (u-admin)")
    expect(summary).to_contain_text("Meera (u-meera)")
    expect(summary).to_contain_text("Ravi Kumar (u-ravi)")
    expect(page.get_by_role("cell", name="Course batch do_course1/b-101 “Algebra, spring”").first).to_be_visible()
    check(page, "preview-names")


def test_pages_pass_axe_core(server: Server, browser: Browser) -> None:
    if not AXE.exists():
        pytest.skip(f"axe-core not installed at {AXE} (npm install --prefix .venv/npm axe-core@4)")
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)  # axe goes in inline
    page = context.new_page()
    paths = ["/admin/transfer", "/admin/requests", "/admin/failed", "/admin/counters", "/admin/requests?outcome=undone"]
    page.goto(f"{server.base}/admin/requests")
    if page.locator("table.history tbody a").count() == 0:  # run alone: a request of its own to look at
        page.goto(f"{server.base}/admin/transfer")
        fill_transfer(page, "org-1", "u-admin", "u-meera", "u-ravi")
        page.get_by_role("button", name="Preview the transfer").click()
        page.get_by_role("button", name="Submit the transfer").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("u-meera")
        page.goto(f"{server.base}/admin/requests")
    first = str(page.locator("table.history tbody a").first.get_attribute("href"))
    paths += [first, first + "/undo"]

    def axe(where: str) -> None:
        page.add_script_tag(path=str(AXE))
        result: dict[str, Any] = page.evaluate(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']}})"
        )
        violations = [{"id": v["id"], "nodes": [n["html"] for n in v["nodes"]][:3]} for v in result["violations"]]
        assert violations == [], f"{where}: {json.dumps(violations, indent=1)}"

    for path in paths:
        page.goto(f"{server.base}{path}")
        axe(path)
    # the pages a form post answers: every problem at once, a user look-up, previews
    page.goto(f"{server.base}/admin/transfer")
    page.get_by_label("Admin user ID").fill("")
    page.get_by_role("button", name="Preview the transfer").click()
    axe("the form's problems")
    fill_transfer(page, "org-1", "u-admin", "u-admin", "")
    page.get_by_label("Find a user").fill("r")
    page.get_by_role("button", name="Find").click()
    axe("a user look-up")
    page.get_by_label("To user ID").fill("u-ravi")
    page.get_by_role("button", name="Preview the transfer").click()
    axe("a preview that changes nothing")
    page.get_by_role("button", name="Change the details").click()
    page.get_by_label("From user ID").fill("u-ann")
    page.get_by_label("Objects").fill("do_q1, do_nope")
    page.get_by_role("button", name="Preview the transfer").click()
    axe("a preview with an unknown asset")
    context.close()


# --- signing in with a token -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def secured(store: SqlStore, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving_with_tokens(store.url, public_pem(key), tmp_path_factory.mktemp("secured") / "serve.log") as running:
        yield running


def test_with_jwt_the_console_asks_for_a_token_once(secured: Server, key: rsa.RSAPrivateKey, page: Page) -> None:
    page.goto(f"{secured.base}/admin/requests")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.get_by_text("Authentication is off")).to_have_count(0)
    page.get_by_label("Token").fill("not a token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#token-error")).to_contain_text("Not signed in: the token is not valid")
    check(page, "sign-in")

    page.get_by_label("Token").fill(token(key, sub="u-admin"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Request history")  # back where it started
    expect(page.get_by_text("Signed in as u-admin")).to_be_visible()
    nav(page, "Transfer")
    expect(page.get_by_label("Admin user ID")).to_have_value("u-admin")
    expect(page.get_by_label("Admin user ID")).not_to_be_editable()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
