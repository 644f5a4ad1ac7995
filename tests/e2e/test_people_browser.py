"""The console and the first run in a real browser (Debian's chromium, Playwright), issue 14 points 5 and 6: the
preview, submit and undo forms show a working state once sent (the submission kept in the page by a test listener
while the state is checked, then sent on), the undo confirmation gives the true counts, ``/`` leads to the console and
``/docs`` works with every address outside the server blocked. Screenshots at desktop and phone width go to
``test-artifacts/console``."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from handover.adapters.sql import SqlStore
from handover.service.undo import undo_scope
from tests.e2e.api_support import Server
from tests.e2e.test_console_browser import (
    ARTIFACTS,
    CHROMIUM,
    DESKTOP,
    PHONE,
    browser,
    check,
    fill_transfer,
    page,
    request_id_of,
    server,
    store,
)

__all__ = ["browser", "page", "server", "store"]  # the fixtures: a served SQLite store, chromium, a page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package chromium)"),
]


HOLD = """form => {
  const f = document.querySelector(form);
  window.sent = 0;
  f.addEventListener("submit", e => { if (!e.defaultPrevented) { window.sent += 1; } e.preventDefault(); });
}"""
BUSY_STATE = """form => {
  const f = document.querySelector(form);
  return {busy: f.getAttribute("aria-busy"), status: f.querySelector("[role=status]").textContent,
          buttons: [...f.querySelectorAll("button")].map(b => b.getAttribute("aria-disabled")), sent: window.sent};
}"""
SEND = "form => HTMLFormElement.prototype.submit.call(document.querySelector(form))"


def hold(page: Page, form: str) -> None:
    """Keep the form's submission in the page (a listener after the console's own one prevents it and counts the
    submissions not already prevented), so that the working state can be seen as long as the server would work."""
    page.evaluate(HOLD, form)


def busy(page: Page, form: str, text: str, name: str) -> None:
    """The form is marked busy, its buttons too, the status region says ``text``, it was sent once; checked,
    screenshots at desktop and phone width; then it is sent on."""
    state = page.evaluate(BUSY_STATE, form)
    assert state["busy"] == "true" and state["sent"] == 1, state
    assert state["buttons"] and all(b == "true" for b in state["buttons"]), state
    assert text in state["status"], state
    expect(page.get_by_role("status")).to_contain_text(text)
    check(page, name)
    with page.expect_navigation():
        page.evaluate(SEND, form)


def test_preview_submit_and_undo_show_a_working_state_and_true_counts(
    server: Server, store: SqlStore, page: Page
) -> None:
    page.goto(f"{server.base}/admin/transfer")
    fill_transfer(page, "org-1", "u-admin", "u-ann", "u-ravi")
    form = "form[action$='/transfer/preview']"
    hold(page, form)
    page.get_by_role("button", name="Preview the transfer").click()
    page.get_by_role("button", name="Preview the transfer").click(force=True)  # a second click: nothing more sent
    busy(page, form, "Working out the preview", "working-preview")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check the transfer")

    form = "form[action$='/transfer']"
    hold(page, form)
    page.get_by_role("button", name="Submit the transfer").click()
    busy(page, form, "Sending the request", "working-submit")
    expect(page.locator(".outcome-applied")).to_be_visible()
    request_id = request_id_of(page)

    page.goto(f"{server.base}/admin/requests/{request_id}/undo")
    with store.read_only() as uow:
        scope = undo_scope(uow, request_id=request_id)
    assert (scope.course_batches, scope.assets) == (2, 4)  # the shared fixture: u-ann's 2 batches, 4 assets
    expect(page.locator("main")).to_contain_text("The request changed 2 course batches and 4 assets.")
    expect(page.locator("main")).not_to_contain_text("or more")
    check(page, "undo-true-counts")

    form = "form[action$='/undo']"
    hold(page, form)
    page.get_by_role("button", name="Yes, undo this request").click()
    busy(page, form, "Undoing 6 changed records", "working-undo")
    expect(page.get_by_role("status")).to_contain_text("reverted")

    page.goto(f"{server.base}/admin/requests/{request_id}/undo")  # once undone: no count of what is gone, no button
    expect(page.locator("main")).to_contain_text("This request was already undone")
    expect(page.locator("main")).to_contain_text("there is nothing left to undo")
    expect(page.get_by_role("button", name="Yes, undo this request")).to_have_count(0)


@pytest.fixture
def offline(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A page for which every address other than the test server's is refused (as on a machine offline)."""
    context = browser.new_context(viewport=DESKTOP)
    outside: list[str] = []

    def refuse(route: Route) -> None:
        outside.append(route.request.url)
        route.abort("internetdisconnected")

    context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*"), refuse)
    yield context.new_page(), outside
    context.close()


def test_home_leads_to_the_console_and_docs_work_offline(
    server: Server, offline: tuple[Page, list[str]]
) -> None:
    page, outside = offline
    page.goto(f"{server.base}/")
    assert page.url.startswith(f"{server.base}/admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Transfer ownership")

    page.goto(f"{server.base}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("handover")
    expect(page.get_by_text("Submit an ownership transfer").first).to_be_visible()
    page.goto(f"{server.base}/redoc")
    expect(page.get_by_text("Submit an ownership transfer").first).to_be_visible()
    page.goto(f"{server.base}/docs")
    expect(page.get_by_text("Submit an ownership transfer").first).to_be_visible()
    assert outside == [], f"the docs asked for addresses outside the server: {outside}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # Swagger UI's own page: screenshots, no checks of ours
    page.screenshot(path=str(ARTIFACTS / "docs-offline-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(ARTIFACTS / "docs-offline-phone.png"), full_page=True)
