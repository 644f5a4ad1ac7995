"""``GET /v1/user/ownership/report/deleted-owners`` (SPEC 12) on the embedded store: the rows of the caller's
organisation in pages, the gateway path, and every refusal (no token, a token of a user who is not the
organisation's admin, another organisation, bad limit or cursor, authentication off without an organisation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from handover.entrypoints.api import create_app
from tests.e2e.api_support import assert_error, client, wired
from tests.e2e.test_api_auth import bearer, new_key, public_pem, token
from tests.report_fixture import expected_rows, report_fixture, row_key

REPORT = "/v1/user/ownership/report/deleted-owners"
GATEWAY_REPORT = "/api/user/v1/ownership/report/deleted-owners"
ERR_INVALID, ERR_FORBIDDEN, ERR_NOT_FOUND = "UOS_UOWNTRANS0028", "UOS_UOWNTRANS0071", "UOS_UOWNTRANS0013"
DOC = report_fixture(owners=3, records=2)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


def _client(path: Path, env: dict[str, str]) -> Iterator[TestClient]:
    app, parts = wired(f"sqlite:///{path / 'handover.db'}", env)
    assert hasattr(app.store, "load")
    app.store.load(DOC)
    with client(create_app(app, parts)) as http:
        yield http


@pytest.fixture(scope="module")
def http(key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    env = {"HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": public_pem(key)}
    yield from _client(tmp_path_factory.mktemp("report-jwt"), env)


@pytest.fixture(scope="module")
def open_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from _client(tmp_path_factory.mktemp("report-open"), {})


def all_pages(http: TestClient, path: str, limit: int, org: str | None = None, **headers: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        if org:
            params["organisationId"] = org
        response = http.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert result["organisationId"] == "org-r" and result["count"] == len(result["rows"]) <= limit
        rows.extend(result["rows"])
        cursor = result["nextCursor"]
        if cursor is None:
            return rows
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("path", [REPORT, GATEWAY_REPORT])
@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_the_admins_organisation_in_pages(http: TestClient, key: rsa.RSAPrivateKey, path: str, limit: int) -> None:
    rows = all_pages(http, path, limit, **bearer(token(key, sub="r-admin")))
    assert sorted(row_key(r) for r in rows) == expected_rows(DOC, "org-r")
    assert len(rows) == len({row_key(r) for r in rows})  # each once
    assert set(rows[0]) == {"userId", "username", "organisationId", "roles", "assetIdentifier", "assetName",
                            "assetStatus", "objectType", "ownedAs"}


def test_first_page_shape_and_default_limit(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    response = http.get(REPORT, headers=bearer(token(key, sub="s-admin")))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert (doc["id"], doc["responseCode"], doc["params"]["status"]) == (
        "api.user.ownership.report.deleted-owners", "OK", "SUCCESS")
    assert doc["result"]["organisationId"] == "org-s" and doc["result"]["nextCursor"] is None
    assert [row_key(r) for r in doc["result"]["rows"]] == expected_rows(DOC, "org-s")
    assert doc["result"]["columns"][:8] == ["userId", "username", "organisationId", "roles", "assetIdentifier",
                                            "assetName", "assetStatus", "objectType"]


def test_refusals(http: TestClient, key: rsa.RSAPrivateKey) -> None:
    response = http.get(REPORT)
    assert response.status_code == 401 and response.json()["params"]["errmsg"].startswith("You are not authorized")
    admin = bearer(token(key, sub="r-admin"))
    assert_error(http.get(REPORT, params={"organisationId": "org-s"}, headers=admin), 403, ERR_FORBIDDEN,
                 "r-admin is not an admin of org-s.", "FORBIDDEN")
    assert_error(http.get(REPORT, headers=bearer(token(key, sub="r-keeper"))), 403, ERR_FORBIDDEN,
                 "r-keeper is not an admin of org-r.", "FORBIDDEN")
    assert_error(http.get(REPORT, headers=bearer(token(key, sub="u-nobody"))), 403, ERR_FORBIDDEN,
                 "u-nobody is not an admin of any organisation.", "FORBIDDEN")
    for limit in ("0", "1001", "x", "-1", ""):
        assert_error(http.get(REPORT, params={"limit": limit}, headers=admin), 400, ERR_INVALID,
                     "limit must be an integer from 1 to 1000.")
    assert_error(http.get(REPORT, params={"cursor": "not-a-cursor"}, headers=admin), 400, ERR_INVALID,
                 "The cursor is not one this report gave: start again without it.")
    response = http.get(REPORT + "?organisationId=org%00", headers=admin)
    assert response.status_code == 400, response.text


def test_authentication_off_needs_an_organisation(open_http: TestClient) -> None:
    assert_error(open_http.get(REPORT), 400, ERR_INVALID,
                 "organisationId is required (authentication is off, so no admin names it).")
    assert_error(open_http.get(REPORT, params={"organisationId": "org-x"}), 404, ERR_NOT_FOUND,
                 "No organisation org-x in the user directory.", "RESOURCE_NOT_FOUND")
    rows = all_pages(open_http, REPORT, 5, "org-r")
    assert sorted(row_key(r) for r in rows) == expected_rows(DOC, "org-r")


def test_in_the_openapi_document(open_http: TestClient) -> None:
    paths = open_http.get("/openapi.json").json()["paths"]
    assert set(paths[REPORT]) == {"get"} and GATEWAY_REPORT in paths
