"""The console's deleted-owner page (SPEC 12) in a real browser (Debian's chromium driven by Playwright) against a
real ``handover serve``: with authentication off it asks for the organisation (an unknown one is shown next to its
field), lists the deleted users who still own records with counts and the first records, pages through many of
them, and "Transfer to…" opens the preview of that user's transfer; with a token it shows the admin's own
organisation and refuses a user who is not its admin. Screenshots at desktop and phone width go to
``test-artifacts/console`` (``deleted-owners-*``); axe-core checks the page where the set-up installed it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import Browser, Locator, Page, expect

from handover.adapters.sql import SqlStore
from tests.e2e.api_support import Server, loaded_store, serving, serving_with_tokens
from tests.e2e.test_api_auth import new_key, public_pem, token
from tests.e2e.test_console_browser import AXE, CHROMIUM, DESKTOP, browser, check, nav, page
from tests.e2e.test_people_browser import busy, hold
from tests.report_fixture import report_fixture

__all__ = ["browser", "page"]  # the browser and page fixtures of the console's browser tests

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package chromium)"),
]


def count(owner: Locator, name: str) -> Locator:
    """The figure next to ``name`` (Course batches, Assets) in a deleted owner's summary."""
    return owner.locator(f"dl.summary dt:text-is('{name}') + dd")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SqlStore:
    """The shared fixture (org-1: u-ann deleted, owning 2 batches and 4 assets) and the report fixture (org-r: 25
    deleted owners, more than one page of the console)."""
    loaded = loaded_store(f"sqlite:///{tmp_path_factory.mktemp('report') / 'handover.db'}")
    loaded.load(report_fixture(owners=25, records=2))
    return loaded


@pytest.fixture(scope="module")
def server(store: SqlStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"HANDOVER_STORE": store.url, "HANDOVER_AUTH_MODE": "none", "HANDOVER_KAFKA_BROKER_SERVERS": ""}
    with serving(env, tmp_path_factory.mktemp("serve") / "serve.log") as running:
        yield running


def test_deleted_owners_then_transfer_to(server: Server, page: Page) -> None:
    page.goto(f"{server.base}/admin/transfer")
    nav(page, "Deleted owners")
    expect(page.get_by_role("heading", level=1)).to_have_text("Deleted users who still own records")
    check(page, "deleted-owners-ask")

    page.get_by_label("Organisation ID", exact=True).fill("org-x")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("[data-error-summary]")).to_contain_text("No organisation org-x in the user directory.")
    expect(page.get_by_label("Organisation ID", exact=True)).to_have_attribute("aria-invalid", "true")
    check(page, "deleted-owners-unknown")

    page.get_by_label("Organisation ID", exact=True).fill("org-1")
    page.get_by_label("Admin user ID").fill("u-admin")  # the transfer form's words
    page.get_by_role("button", name="Show").click()
    ann = page.get_by_role("region", name="Ann Lee (u-ann)")
    expect(count(ann, "Course batches")).to_have_text("2")
    expect(count(ann, "Assets")).to_have_text("4")
    expect(ann).to_contain_text("The first 5 of 6:")
    expect(ann.get_by_role("listitem").first).to_have_text(
        "Course batch do_course1/b-101 “Algebra, spring”, Ongoing Batch")  # as the request and preview pages say
    expect(ann.get_by_role("listitem").nth(2)).to_have_text("Question do_q1, Live")
    expect(page.get_by_role("region")).to_have_count(1)  # no other deleted user of org-1 owns anything
    # the whole list elsewhere, each as it runs (with authentication off the API needs the organisation)
    expect(page.locator("main")).to_contain_text("handover report deleted-owners -o org-1 or "
                                                 "GET /v1/user/ownership/report/deleted-owners?organisationId=org-1")
    check(page, "deleted-owners")

    ann.get_by_label("Transfer to…").fill("u-ravi")
    form = "form[aria-label='Transfer what u-ann owns']"
    hold(page, form)  # the working state of the transfer form's preview (issue 14 point 5) here too
    ann.get_by_role("button", name="Preview the transfer of what u-ann owns").click()
    busy(page, form, "Working out the preview of what u-ann owns", "deleted-owners-working")
    expect(page.get_by_role("heading", level=1)).to_have_text("Check the transfer")
    expect(page.locator("#preview-total")).to_have_text("2 course batches and 4 assets would change.")
    check(page, "deleted-owners-transfer-preview")


def test_many_deleted_owners_page_by_page(server: Server, page: Page) -> None:
    page.goto(f"{server.base}/admin/deleted-owners?organisationId=org-r&actionBy=r-admin")
    regions = page.get_by_role("region")
    expect(regions).to_have_count(20)
    expect(regions.first).to_have_accessible_name("Gone0 (r-gone-00000)")
    expect(count(regions.first, "Course batches")).to_have_text("3")  # 2 created, 1 mentored
    expect(regions.first).to_contain_text("All of them:")
    page.get_by_role("link", name="Next deleted users").click()
    expect(regions).to_have_count(5)
    expect(regions.first).to_have_accessible_name("Gone20 (r-gone-00020)")
    expect(page.get_by_role("link", name="Next deleted users")).to_have_count(0)
    check(page, "deleted-owners-page-2")
    page.get_by_role("link", name="back to the start").click()
    expect(regions).to_have_count(20)


def test_the_page_passes_axe_core(server: Server, browser: Browser) -> None:
    if not AXE.exists():
        pytest.skip(f"axe-core not installed at {AXE} (npm install --prefix .venv/npm axe-core@4)")
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)  # axe goes in inline
    axe_page = context.new_page()
    for query in ("", "?organisationId=org-1&actionBy=u-admin", "?organisationId=org-x"):
        axe_page.goto(f"{server.base}/admin/deleted-owners{query}")
        axe_page.add_script_tag(path=str(AXE))
        result: dict[str, Any] = axe_page.evaluate(
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice']}})"
        )
        violations = [{"id": v["id"], "nodes": [n["html"] for n in v["nodes"]][:3]} for v in result["violations"]]
        assert violations == [], f"{query}: {json.dumps(violations, indent=1)}"
    context.close()


# --- with a token -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def secured(store: SqlStore, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving_with_tokens(store.url, public_pem(key), tmp_path_factory.mktemp("secured") / "serve.log") as running:
        yield running


def sign_in(page: Page, server: Server, key: rsa.RSAPrivateKey, user: str) -> None:
    page.goto(f"{server.base}/admin/deleted-owners")
    page.get_by_label("Token").fill(token(key, sub=user))
    page.get_by_role("button", name="Sign in").click()


def test_with_a_token_the_admins_own_organisation(secured: Server, key: rsa.RSAPrivateKey, page: Page) -> None:
    sign_in(page, secured, key, "u-admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Deleted users who still own records")
    expect(page.get_by_label("Organisation ID", exact=True)).to_have_count(0)  # the admin's own: not asked
    ann = page.get_by_role("region", name="Ann Lee (u-ann)")
    expect(count(ann, "Assets")).to_have_text("4")
    check(page, "deleted-owners-signed-in")
    ann.get_by_label("Transfer to…").fill("u-meera")
    ann.get_by_role("button", name="Preview the transfer of what u-ann owns").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check the transfer")
    expect(page.get_by_role("main")).to_contain_text("u-meera")


def test_with_a_token_of_someone_else(secured: Server, key: rsa.RSAPrivateKey, page: Page) -> None:
    sign_in(page, secured, key, "u-ravi")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("main")).to_contain_text("u-ravi is not an admin of org-1.")
    check(page, "deleted-owners-not-admin")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, secured, key, "u-admin")
    page.goto(f"{secured.base}/admin/deleted-owners?organisationId=org-r")
    expect(page.get_by_role("main")).to_contain_text("u-admin is not an admin of org-r.")
