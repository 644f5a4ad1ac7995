"""Fairness (issue 13 item 7), on SQLite and PostgreSQL: a request may name at most ``api.max_objects`` objects (a 400
naming the cap on the transfer, the preview and the console), and the embedded queue serves organisations in turn and
the requests of each organisation in turn, so a one-asset request of another organisation waits for one event of a
large request, not for all of them, and an organisation with two requests gets no more turns than one with one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from handover.adapters.sql import SqlStore
from handover.bootstrap import ApiParts, App
from handover.entrypoints.api import create_app
from tests.e2e.api_support import TRANSFER, assert_error, body, client, wired
from tests.e2e.console_support import ORG2, zoe_to_kim

INVALID = "UOS_UOWNTRANS0028"


def cap_message(n: int, cap: int) -> str:
    return (f"objects names {n} objects: a request may name at most {cap} (api.max_objects); "
            "split it into several requests.")


def with_objects(doc: dict[str, Any], n: int) -> dict[str, Any]:
    doc["request"]["objects"] = [{"identifier": f"do_{i:05d}", "objectType": "Question"} for i in range(n)]
    return doc


@pytest.fixture
def env(store_url: str) -> Iterator[tuple[TestClient, App, ApiParts]]:
    app, parts = wired(store_url, {"HANDOVER_API_MAX_OBJECTS": "40"})
    app.store.load(ORG2)  # type: ignore[attr-defined]
    with client(create_app(app, parts)) as http:
        yield http, app, parts


@pytest.mark.parametrize("endpoint", ["", "/preview"])
@pytest.mark.parametrize(("n", "status"), [(40, 200), (41, 400), (1000, 400)])
def test_objects_are_capped(env: tuple[TestClient, App, ApiParts], endpoint: str, n: int, status: int) -> None:
    http, _, parts = env
    response = http.post(TRANSFER + endpoint, json=with_objects(body(), n), headers={"X-Request-ID": f"r-{n}"})
    if status == 400:
        assert_error(response, 400, INVALID, cap_message(n, 40))
        assert parts.requests is not None and parts.requests.status(f"r-{n}") is None  # nothing queued
    else:
        assert response.status_code == 200, response.text


def test_the_console_names_the_cap(env: tuple[TestClient, App, ApiParts]) -> None:
    http = env[0]
    form = {"organisationId": "org-1", "actionBy": "u-admin", "fromUser": "u-ann", "toUser": "u-ravi",
            "objects": " ".join(f"do_{i}" for i in range(41)), "context": "User Deletion"}
    page = http.post("/admin/transfer/preview", data=form)
    # in the form's words (issue 14 point 4), next to the field
    assert page.status_code == 400 and "41 assets named: at most 40 per transfer" in page.text


def test_the_default_cap_is_1000(store_url: str) -> None:
    app, parts = wired(store_url)
    http = client(create_app(app, parts))
    assert_error(http.post(TRANSFER, json=with_objects(body(), 1001)), 400, INVALID, cap_message(1001, 1000))


def outcomes(http: TestClient, request_id: str) -> list[str]:
    return [e["outcome"] for e in http.get(f"{TRANSFER}/{request_id}").json()["result"]["events"]]


def test_requests_take_turns_in_the_queue(env: tuple[TestClient, App, ApiParts]) -> None:
    http, _, parts = env
    worker = parts.worker
    assert worker is not None
    big = with_objects(body(), 30)  # org-1: 30 events
    assert http.post(TRANSFER, json=big, headers={"X-Request-ID": "r-big"}).status_code == 200
    assert worker.run_once(1) == 1  # the big request is under way
    small = zoe_to_kim()  # org-2: one event, queued after the 30
    assert http.post(TRANSFER, json=small, headers={"X-Request-ID": "r-small"}).status_code == 200
    mid = with_objects(body(), 5)
    assert http.post(TRANSFER, json=mid, headers={"X-Request-ID": "r-mid"}).status_code == 200
    steps = 0
    while "pending" in outcomes(http, "r-small") + outcomes(http, "r-mid"):
        steps += worker.run_once(3)  # a micro-batch takes its events in the same turns as one at a time
        assert steps
    # turns: each request one event at a time, so r-small within 3 events, r-mid's 5 within 3 * 5
    assert steps <= 15, steps
    assert outcomes(http, "r-small") == ["applied"]
    assert outcomes(http, "r-big").count("pending") >= 30 - 1 - 15
    assert worker.drain() > 0 and "pending" not in outcomes(http, "r-big")


def test_organisations_take_turns_then_their_requests(env: tuple[TestClient, App, ApiParts]) -> None:
    """org-1 queues two requests of 10 events, then org-2 one of 10: org-2 gets every other turn (per request,
    it would get one turn in three)."""
    http, _, parts = env
    worker = parts.worker
    assert worker is not None
    queued = {"r-a1": with_objects(body(), 10), "r-a2": with_objects(body(), 10), "r-b": with_objects(zoe_to_kim(), 10)}
    for rid, doc in queued.items():
        assert http.post(TRANSFER, json=doc, headers={"X-Request-ID": rid}).status_code == 200
    assert worker.run_once(12) == 12  # one micro-batch: its events in the same turns as one at a time
    done = {rid: 10 - outcomes(http, rid).count("pending") for rid in queued}
    assert done == {"r-a1": 3, "r-a2": 3, "r-b": 6}
    assert worker.drain() == 18 and all("pending" not in outcomes(http, rid) for rid in queued)


def test_init_adds_the_organisation_column_to_a_queue_of_an_earlier_version(store_url: str) -> None:
    store = SqlStore(store_url)
    store.init_schema()
    with store.engine.begin() as conn:  # the queue table as an earlier version created it
        conn.execute(sa.text("DROP INDEX ix_event_queue_turns"))
        conn.execute(sa.text("ALTER TABLE event_queue DROP COLUMN organisation_id"))
    assert "organisation_id" not in {c["name"] for c in sa.inspect(store.engine).get_columns("event_queue")}
    app, parts = wired(store_url)  # init again, load the fixture
    assert "organisation_id" in {c["name"] for c in sa.inspect(store.engine).get_columns("event_queue")}
    http = client(create_app(app, parts))
    assert http.post(TRANSFER, json=body(), headers={"X-Request-ID": "r-1"}).status_code == 200
    assert parts.worker is not None and parts.worker.drain() == 1
    assert outcomes(http, "r-1") == ["applied"]
