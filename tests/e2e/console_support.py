"""Helpers of the console tests: data beyond the shared fixture (a second organisation whose transfer the tests
make fail for real with ``tests.store_faults``), request bodies, and an accessibility check of a page's HTML."""

from __future__ import annotations

import itertools
from html.parser import HTMLParser
from typing import Any

from tests.e2e.api_support import body, role

# org-2 (u-zoe and u-admin2 come from the shared fixture and api_support.EXTRA_USERS)
ORG2: dict[str, Any] = {
    "users": [
        {"id": "u-kim", "userName": "kim", "firstName": "Kim", "lastName": "Park", "rootOrgId": "org-2",
         "roles": ["CONTENT_CREATOR"], "isDeleted": False},
    ],
    "assets": [
        {"identifier": "do_z1", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-zoe", "creator": "Zoë Ünal", "originData": None},
    ],
}


def zoe_to_kim() -> dict[str, Any]:
    """An ownership transfer of everything of u-zoe to u-kim in org-2, by org-2's admin."""
    return body(
        organisationId="org-2",
        actionBy={"userId": "u-admin2"},
        fromUser={"userId": "u-zoe", "roles": [role("CONTENT_CREATOR", "org-2")]},
        toUser={"userId": "u-kim", "roles": [role("CONTENT_CREATOR", "org-2")]},
    )


def ravi_to_meera() -> dict[str, Any]:
    """A transfer u-ravi -> u-meera in org-1 that the API accepts; ``delete_meera`` before the worker takes it
    makes the worker reject it (USER_DELETED): the directory changed between acceptance and processing (a deleted
    to-user is refused up front, issue 13 item 9)."""
    return body(
        fromUser={"userId": "u-ravi", "roles": [role("CONTENT_CREATOR", "org-1")]},
        toUser={"userId": "u-meera", "roles": [role("CONTENT_CREATOR", "org-1")]},
    )


def delete_meera(store: Any) -> None:
    """Mark u-meera (shared fixture) deleted in the store's user directory."""
    store.load({"users": [{"id": "u-meera", "userName": "meera", "firstName": "Meera", "lastName": "",
                           "rootOrgId": "org-1", "roles": ["COURSE_MENTOR"], "isDeleted": True}]})


# --- an accessibility check of a page's HTML: labels and headings -------------------------------------

LABELLED = ("input", "select", "textarea")
NOT_LABELLED = ("hidden", "submit", "button", "reset", "image")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.headings: list[int] = []
        self.ids: list[str] = []
        self.label_for: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.described: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.named: list[tuple[str, dict[str, str | None], list[str]]] = []  # buttons and links, with their text
        self._open: list[tuple[str, dict[str, str | None], list[str]]] = []
        self._label_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if a.get("aria-describedby"):
            self.described.extend(str(a["aria-describedby"]).split())
        if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        if tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.add(str(a["for"]))
        if tag in LABELLED and (tag != "input" or (a.get("type") or "text") not in NOT_LABELLED):
            self.controls.append({**a, "tag": tag, "wrapped": "yes" if self._label_depth else None})
        if tag == "img":
            self.images.append(a)
        if tag in ("button", "a"):
            self._open.append((tag, a, []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth -= 1
        if tag in ("button", "a") and self._open and self._open[-1][0] == tag:
            self.named.append(self._open.pop())

    def handle_data(self, data: str) -> None:
        for _, _, text in self._open:
            text.append(data)


def accessibility_problems(html: str) -> list[str]:
    """What a page gets wrong about labels and headings: the ``lang`` attribute, one ``h1``, no skipped heading
    level, a label for every form control, a name for every button and link, ``alt`` on images, unique ids and
    ``aria-describedby`` pointing at elements that exist."""
    page = _Page()
    page.feed(html)
    problems = []
    if not page.lang:
        problems.append("<html> has no lang attribute")
    if page.headings.count(1) != 1:
        problems.append(f"{page.headings.count(1)} h1 headings (one expected)")
    if page.headings and page.headings[0] != 1:
        problems.append(f"the first heading is h{page.headings[0]}, not h1")
    for before, after in itertools.pairwise(page.headings):
        if after > before + 1:
            problems.append(f"heading level skipped: h{before} then h{after}")
    for control in page.controls:
        ident = control.get("id")
        if not (control.get("wrapped") or control.get("aria-label") or (ident and ident in page.label_for)):
            problems.append(f"<{control['tag']} name={control.get('name')!r}> has no label")
    for tag, attrs, text in page.named:
        if not ("".join(text).strip() or attrs.get("aria-label")):
            problems.append(f"<{tag}> without an accessible name: {attrs}")
    problems += [f"<img src={i.get('src')!r}> has no alt" for i in page.images if i.get("alt") is None]
    problems += [f"duplicate id {i!r}" for i in sorted({i for i in page.ids if page.ids.count(i) > 1})]
    problems += [f"aria-describedby names a missing id {i!r}" for i in page.described if i not in page.ids]
    return problems
