"""No probing across organisations, no doomed request accepted (issue 13 item 9; SPEC 5 "More fixes"), on SQLite and
PostgreSQL: a user or an asset of another organisation answers exactly as an absent one on the API (transfer,
preview, status after the worker) and the console; a deleted to-user or a to/from-user of another organisation is a
400 ``UOS_UOWNTRANS0028`` up front, and nothing is queued for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from handover.bootstrap import ApiParts, App
from handover.entrypoints.api import create_app
from tests.e2e.api_support import TRANSFER, assert_error, body, client, role, wired
from tests.e2e.console_support import ORG2, zoe_to_kim

INVALID = "UOS_UOWNTRANS0028"

# org-2 beyond console_support.ORG2: an asset of u-kim (same organisation, not the from-user's)
MORE = {"assets": [{"identifier": "do_z2", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
                    "visibility": "Default", "createdBy": "u-kim", "creator": "Kim Park", "originData": None}]}


@pytest.fixture
def env(store_url: str) -> Iterator[tuple[TestClient, App, ApiParts]]:
    app, parts = wired(store_url)
    app.store.load(ORG2)  # type: ignore[attr-defined]
    app.store.load(MORE)  # type: ignore[attr-defined]
    with client(create_app(app, parts)) as http:
        yield http, app, parts


def as_org2(**users: str) -> dict[str, Any]:
    """org-2's transfer u-zoe -> u-kim with some users swapped (``fromUser="u-ann"``)."""
    doc = zoe_to_kim()
    for key, user_id in users.items():
        doc["request"][key] = {"userId": user_id, "roles": [role("CONTENT_CREATOR", "org-2")]}
    return doc


def answer(response: Any) -> tuple[int, str, str]:
    doc = response.json()
    return response.status_code, doc["params"]["err"], doc["params"]["errmsg"]


@pytest.mark.parametrize("endpoint", ["", "/preview"])
@pytest.mark.parametrize("key", ["fromUser", "toUser"])
@pytest.mark.parametrize("other_org_user", ["u-ann", "u-ravi", "u-admin"])  # deleted, creator, admin of org-1
def test_a_user_of_another_organisation_answers_as_an_unknown_one(
    env: tuple[TestClient, App, ApiParts], endpoint: str, key: str, other_org_user: str
) -> None:
    http, _, parts = env
    unknown = http.post(TRANSFER + endpoint, json=as_org2(**{key: "u-nobody"}))
    other = http.post(TRANSFER + endpoint, json=as_org2(**{key: other_org_user}), headers={"X-Request-ID": "r-x"})
    assert answer(other) == answer(unknown) == (400, INVALID, f"given user id under {key} is not present or blank")
    assert parts.requests is not None and parts.requests.status("r-x") is None  # nothing recorded, nothing queued


@pytest.mark.parametrize("endpoint", ["", "/preview"])
def test_a_deleted_to_user_is_refused_up_front(env: tuple[TestClient, App, ApiParts], endpoint: str) -> None:
    http, _, parts = env
    doomed = body(fromUser={"userId": "u-ravi", "roles": [role("CONTENT_CREATOR", "org-1")]},
                  toUser={"userId": "u-ann", "roles": [role("CONTENT_CREATOR", "org-1")]})
    response = http.post(TRANSFER + endpoint, json=doomed, headers={"X-Request-ID": "r-doomed"})
    assert_error(response, 400, INVALID, "given user id under toUser is a deleted user")
    assert parts.requests is not None and parts.requests.status("r-doomed") is None
    # a deleted from-user stays the normal case: everything of the deleted u-ann to u-ravi is accepted
    assert http.post(TRANSFER + endpoint, json=body()).status_code == 200


# org-1's assets as seen from org-2: configured and owned by u-ann, its image node, a type that is not configured,
# one of another owner; and ids that do not exist at all
OTHER_ORG_ASSETS = ["do_q1", "do_q1.img", "do_c1", "do_q2", "do_q3", "do_nothing", "do_nothing.img"]


def test_an_asset_of_another_organisation_answers_as_an_absent_one(env: tuple[TestClient, App, ApiParts]) -> None:
    http, app, parts = env
    objects = [{"identifier": i, "objectType": "Question"} for i in OTHER_ORG_ASSETS]
    doc = zoe_to_kim()
    doc["request"]["objects"] = objects
    preview = http.post(TRANSFER + "/preview", json=doc).json()["result"]
    assert [(e["skipped"], e["changed"]) for e in preview["events"]] == [
        (["ASSET_NOT_FOUND"], {"course_batches": 0, "assets": 0})
    ] * len(objects)
    assert http.post(TRANSFER, json=doc, headers={"X-Request-ID": "r-assets"}).status_code == 200
    assert parts.worker is not None
    parts.worker.drain()
    events = http.get(f"{TRANSFER}/r-assets").json()["result"]["events"]
    assert [(e["outcome"], e["skipped"]) for e in events] == [("applied", ["ASSET_NOT_FOUND"])] * len(objects)
    dump = {name: list(rows) for name, rows in app.store.dump_sections()}  # type: ignore[attr-defined]
    assert {a["identifier"]: a["createdBy"] for a in dump["assets"]}["do_q1"] == "u-ann"  # nothing changed


def test_within_the_organisation_the_reasons_stay(env: tuple[TestClient, App, ApiParts]) -> None:
    http = env[0]
    doc = zoe_to_kim()
    doc["request"]["objects"] = [{"identifier": i} for i in ("do_z1", "do_z2", "do_nothing")]
    events = http.post(TRANSFER + "/preview", json=doc).json()["result"]["events"]
    assert [e["skipped"] for e in events] == [[], ["ASSET_NOT_OWNED"], ["ASSET_NOT_FOUND"]]
    assert events[0]["changed"] == {"course_batches": 0, "assets": 1}


@pytest.mark.parametrize(("field", "value", "absent"), [
    ("fromUser", "u-ann", "u-nobody"), ("toUser", "u-ravi", "u-nobody"), ("objects", "do_q1", "do_nothing"),
])
def test_the_console_answers_as_for_an_absent_one(
    env: tuple[TestClient, App, ApiParts], field: str, value: str, absent: str
) -> None:
    http = env[0]
    form = {"organisationId": "org-2", "actionBy": "u-admin2", "fromUser": "u-zoe", "toUser": "u-kim",
            "objects": "", "context": "User Deletion"}

    def shown(text: str) -> str:
        page = http.post("/admin/transfer/preview", data={**form, field: text})
        assert page.status_code in (200, 400), page.text
        return page.text.replace(text, "<ID>")

    assert shown(value) == shown(absent)
