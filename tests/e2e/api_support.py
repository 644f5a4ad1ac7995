"""Helpers of the API tests: a store loaded with the shared fixture, the wired app, request bodies."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

import handover.adapters.sql_queue  # noqa: F401  (the queue tables on the schema)
from handover.adapters.sql import SqlStore
from handover.bootstrap import ApiParts, App, api_parts
from handover.config import load_settings
from handover.entrypoints.api import create_app
from tests.conftest import EXAMPLES

TRANSFER = "/v1/user/ownership/transfer"
GATEWAY = "/api/user/v1/ownership/transfer"

# beyond the shared fixture: an org admin of another organisation
EXTRA_USERS = {
    "users": [
        {"id": "u-admin2", "userName": "admin2", "rootOrgId": "org-2", "roles": ["ORG_ADMIN"], "isDeleted": False},
    ]
}


def loaded_store(url: str) -> SqlStore:
    store = SqlStore(url)
    store.init_schema()
    store.load(json.loads((EXAMPLES / "fixture.json").read_text()))
    store.load(EXTRA_USERS)
    return store


def wired(url: str, env: Mapping[str, str] | None = None) -> tuple[App, ApiParts]:
    settings = load_settings(None, environ={"HANDOVER_AUTH_MODE": "none", **(env or {})})
    app = App(settings, url, loaded_store(url))
    return app, api_parts(app)


def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def make_client(url: str, env: Mapping[str, str] | None = None) -> tuple[TestClient, ApiParts]:
    app, parts = wired(url, env)
    return client(create_app(app, parts)), parts


def role(name: str, *orgs: str) -> dict[str, Any]:
    return {"role": name, "scope": [{"organisationId": o} for o in orgs]}


BODY: dict[str, Any] = {
    "request": {
        "context": "User Deletion",
        "organisationId": "org-1",
        "actionBy": {"userId": "u-admin"},
        "fromUser": {"userId": "u-ann", "roles": [role("CONTENT_CREATOR", "org-1")]},
        "toUser": {"userId": "u-ravi", "roles": [role("CONTENT_CREATOR", "org-1"), role("BOOK_CREATOR", "org-2")]},
    }
}


def body(**changes: Any) -> dict[str, Any]:
    """``BODY`` with ``request`` keys replaced (a value of ``...`` removes the key)."""
    doc = copy.deepcopy(BODY)
    for key, value in changes.items():
        if value is ...:
            doc["request"].pop(key, None)
        else:
            doc["request"][key] = value
    return doc


def assert_error(response: Any, status: int, err: str, errmsg: str, code: str = "CLIENT_ERROR") -> None:
    assert response.status_code == status, response.text
    doc = response.json()
    assert doc["params"]["err"] == err, doc
    assert doc["params"]["errmsg"] == errmsg, doc
    assert doc["params"]["status"] == "FAILED"
    assert doc["responseCode"] == code
    assert doc["result"] == {}
