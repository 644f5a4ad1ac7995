"""The deleted-owner report (SPEC 12) on ``sunbird://`` against the test servers: deleted users from userorg's user
search (status 2, keyset pages on the id), their course batches from Elasticsearch and Cassandra, their assets
from the graph; the CLI's CSV, and the API's pages, give what a transfer would move, as on the SQL stores. A search
that ignores the id range is refused rather than giving a report that misses users."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from handover.bootstrap import ApiParts, bootstrap
from handover.domain.model import user_from_json
from handover.entrypoints.api import create_app
from handover.entrypoints.cli import app
from tests.integration.userorg_server import FakeUserOrg
from tests.report_fixture import expected_rows, report_fixture, row_key
from tests.sunbird_deployment import Deployment

DOC = report_fixture(owners=3, records=2)
REPORT = "/v1/user/ownership/report/deleted-owners"


@pytest.fixture
def seeded(deployment: Deployment, userorg: FakeUserOrg, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    userorg.add(*(user_from_json(u) for u in DOC["users"]))
    deployment.seed(DOC)
    for name, value in {**deployment.env, "HANDOVER_PAGE_SIZE": "2", "HANDOVER_AUTH_MODE": "none"}.items():
        monkeypatch.setenv(name, value)  # pages of 2: every keyset step of every store is taken
    return deployment


def test_cli_csv_and_jsonl(seeded: Deployment) -> None:
    result = CliRunner().invoke(app, ["report", "deleted-owners", "--store", "sunbird://"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(row_key(r) for r in rows) == expected_rows(DOC, None)
    assert "still owned by 4 deleted users (every organisation)" in " ".join(result.stderr.split())

    result = CliRunner().invoke(app, ["report", "deleted-owners", "-o", "org-s", "--format", "jsonl",
                                      "--store", "sunbird://"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row_key(r) for r in rows] == expected_rows(DOC, "org-s")  # a batch, then an image node
    assert rows[0] == {"userId": "s-gone", "username": "s_gone", "organisationId": "org-s",
                       "roles": ["CONTENT_CREATOR"], "assetIdentifier": "do_s/s1", "assetName": "S batch",
                       "assetStatus": "Upcoming Batch", "objectType": "Course Batch", "ownedAs": "createdBy"}

    result = CliRunner().invoke(app, ["report", "deleted-owners", "-o", "org-x", "--store", "sunbird://"])
    assert result.exit_code == 2 and "No organisation org-x in the user directory." in result.stderr


class NoSink:
    def publish(self, events: Any) -> None:
        raise AssertionError("the report publishes nothing")


@pytest.fixture
def http(seeded: Deployment) -> Iterator[TestClient]:
    handover = bootstrap("sunbird://")
    with TestClient(create_app(handover, ApiParts(NoSink(), None, None), auth=False)) as client:
        yield client
    handover.store.close()  # type: ignore[attr-defined]


def test_api_pages(http: TestClient, userorg: FakeUserOrg) -> None:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        params = {"organisationId": "org-r", "limit": "3", **({"cursor": cursor} if cursor else {})}
        result = http.get(REPORT, params=params)
        assert result.status_code == 200, result.text
        rows += result.json()["result"]["rows"]
        cursor = result.json()["result"]["nextCursor"]
        if cursor is None:
            break
    assert sorted(row_key(r) for r in rows) == expected_rows(DOC, "org-r")
    searches = [body for method, path, body in userorg.requests if path.endswith("/search") and
                body["request"]["filters"].get("status") == 2]
    assert searches and all(b["request"]["sort_by"] == {"id": "asc"} for b in searches)
    assert any(b["request"]["filters"].get("id") == {">": "r-gone-00000"} for b in searches)  # a keyset step


def test_a_search_that_ignores_the_range_is_refused(http: TestClient, userorg: FakeUserOrg) -> None:
    answer = userorg._search
    userorg._search = lambda body: answer({**body, "request": {  # type: ignore[method-assign]
        **body["request"], "filters": {k: v for k, v in body["request"]["filters"].items() if k != "id"}}})
    result = http.get(REPORT, params={"organisationId": "org-r"})
    assert result.status_code == 503, result.text
    assert result.json()["params"]["errmsg"] == "The store is unavailable (SunbirdStoreError)."
