"""The HTTP API on the embedded store (auth off): upstream's validation order, codes and messages, this
project's fixes, body limits, the events produced, the status endpoint, health and metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import SqlEventQueue, event_queue
from handover.bootstrap import ApiParts
from handover.entrypoints.api import create_app
from tests.e2e.api_support import BODY, GATEWAY, TRANSFER, assert_error, body, client, make_client, role, wired
from tests.e2e.console_support import delete_meera, ravi_to_meera

INVALID = "UOS_UOWNTRANS0028"
DATA_TYPE = "UOS_UOWNTRANS0003"
RESTRICTED = "UOS_UOWNTRANS0084"
RESTRICTED_MSG = "User is restricted from transfering the ownership based on roles!"
NO_FROM = "given user id under fromUser is not present or blank"
ROLES_LIST = "Data type of roles should be List."
NO_ORG = "Organization ID is mandatory in the request."
TOO_DEEP = "Request body is nested deeper than 64 levels."


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, ApiParts]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'handover.db'}"
    test_client, parts = make_client(url)
    with test_client:
        yield test_client, parts


@pytest.fixture
def http(api: tuple[TestClient, ApiParts]) -> TestClient:
    return api[0]


def queued(parts: ApiParts, request_id: str) -> list[dict[str, Any]]:
    assert isinstance(parts.sink, SqlEventQueue)
    engine = parts.sink._engine
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(event_queue.c.payload).where(event_queue.c.request_id == request_id).order_by(event_queue.c.id)
        ).all()
    return [json.loads(r.payload) for r in rows]


# --- upstream's checks, in upstream's order -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "err", "errmsg"),
    [
        ({"organisationId": ...}, INVALID, "Organization ID is mandatory in the request."),
        ({"organisationId": "  "}, INVALID, "Organization ID is mandatory in the request."),
        ({"organisationId": 42}, INVALID, "Organization ID is mandatory in the request."),
        ({"organisationId": "org-x"}, INVALID, "Organization with ID org-x does not exist."),
        ({"actionBy": ...}, INVALID, "actionBy key is not present in the data."),
        ({"actionBy": {}}, INVALID, "given user id under actionBy is not present or blank"),
        ({"actionBy": {"userId": " "}}, INVALID, "given user id under actionBy is not present or blank"),
        ({"actionBy": {"userId": "nobody"}}, INVALID, "given user id under actionBy is not present or blank"),
        ({"actionBy": {"userId": "u-ravi"}}, RESTRICTED, RESTRICTED_MSG),
        ({"fromUser": ...}, INVALID, "fromUser key is not present in the data."),
        ({"fromUser": {"userName": "x"}}, INVALID, "given user id under fromUser is not present or blank"),
        ({"fromUser": {"userId": "nobody", "roles": []}}, INVALID, NO_FROM),
        ({"fromUser": {"userId": "u-ann"}}, INVALID, "Roles key is not present for fromUser"),
        ({"fromUser": {"userId": "u-ann", "roles": "CONTENT_CREATOR"}}, DATA_TYPE, ROLES_LIST),
        ({"fromUser": {"userId": "u-ann", "roles": []}}, INVALID, "Roles are empty in fromUser details."),
        ({"toUser": ...}, INVALID, "toUser key is not present in the data."),
        ({"toUser": {"userId": ""}}, INVALID, "given user id under toUser is not present or blank"),
        ({"toUser": {"userId": "u-ravi"}}, INVALID, "Roles key is not present for toUser"),
        ({"toUser": {"userId": "u-ravi", "roles": {"role": "X"}}}, DATA_TYPE, "Data type of roles should be List."),
        ({"toUser": {"userId": "u-ravi", "roles": []}}, INVALID, "Roles are empty in toUser details."),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_upstream_errors(http: TestClient, changes: dict[str, Any], err: str, errmsg: str) -> None:
    assert_error(http.post(TRANSFER, json=body(**changes)), 400, err, errmsg)


@pytest.mark.parametrize(
    ("changes", "errmsg"),
    [
        # the organisation is checked before any user
        ({"organisationId": ..., "actionBy": ..., "fromUser": ...}, "Organization ID is mandatory in the request."),
        # actionBy (including its role) before fromUser, fromUser before toUser
        ({"actionBy": {"userId": "u-meera"}, "fromUser": ...}, RESTRICTED_MSG),
        ({"fromUser": {"userId": "u-ann", "roles": []}, "toUser": ...}, "Roles are empty in fromUser details."),
        ({"toUser": {"userId": "u-ravi", "roles": []}, "context": ...}, "Roles are empty in toUser details."),
    ],
)
def test_first_failing_check_wins(http: TestClient, changes: dict[str, Any], errmsg: str) -> None:
    response = http.post(TRANSFER, json=body(**changes))
    assert response.status_code == 400
    assert response.json()["params"]["errmsg"] == errmsg


def test_missing_request_is_an_empty_request_as_upstream(http: TestClient) -> None:
    assert_error(http.post(TRANSFER, json={}), 400, INVALID, "Organization ID is mandatory in the request.")
    assert_error(http.post(TRANSFER, json={"request": None}), 400, INVALID, NO_ORG)


# --- the fixes over upstream --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "err", "errmsg"),
    [
        ({"context": ...}, INVALID, "context key is not present in the data."),
        ({"context": None}, INVALID, "context key is not present in the data."),
        ({"context": 7}, DATA_TYPE, "Data type of context should be String."),
        ({"actionBy": "u-admin"}, DATA_TYPE, "Data type of actionBy should be Map."),
        ({"fromUser": ["u-ann"]}, DATA_TYPE, "Data type of fromUser should be Map."),
        ({"toUser": None}, DATA_TYPE, "Data type of toUser should be Map."),
        (
            {"toUser": {"userId": "u-ann", "roles": [role("CONTENT_CREATOR", "org-1")]}},
            INVALID,
            "fromUser and toUser must be different users.",
        ),
        ({"actionBy": {"userId": "u-admin2"}}, RESTRICTED, RESTRICTED_MSG),  # ORG_ADMIN, but of org-2
        ({"objects": {"identifier": "do_q1"}}, DATA_TYPE, "Data type of objects should be List of Map."),
        ({"objects": ["do_q1"]}, DATA_TYPE, "Data type of objects should be List of Map."),
        ({"objects": [{"objectType": "Question"}]}, INVALID, "given identifier under objects is not present or blank"),
        ({"objects": [{"identifier": " "}]}, INVALID, "given identifier under objects is not present or blank"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_fixes_are_client_errors(http: TestClient, changes: dict[str, Any], err: str, errmsg: str) -> None:
    assert_error(http.post(TRANSFER, json=body(**changes)), 400, err, errmsg)


def test_a_failed_publish_is_an_error_and_leaves_no_pending_events(tmp_path: Path) -> None:
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}")
    # a real queue whose database has no schema: every insert fails
    broken = SqlEventQueue(SqlStore(f"sqlite:///{tmp_path / 'empty.db'}"))
    with client(create_app(app, ApiParts(broken, parts.requests, None))) as http:
        response = http.post(TRANSFER, json=BODY, headers={"X-Request-ID": "req-broken"})
        assert response.status_code == 503
        doc = response.json()
        assert doc["responseCode"] == "SERVER_ERROR"
        assert doc["params"]["status"] == "FAILED"
        assert doc["params"]["err"] == "UOS_UOWNTRANS0069"
        assert doc["params"]["errmsg"].startswith("Ownership transfer could not be submitted: events not published")
        assert doc["result"] == {}
        # the request is not known as submitted
        assert http.get(f"{TRANSFER}/req-broken").status_code == 404


# --- bodies the API must refuse without a 500 ---------------------------------------------------------


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    app, parts = wired(f"sqlite:///{tmp_path / 'h.db'}", {"HANDOVER_API_MAX_BODY_BYTES": "2000"})
    with client(create_app(app, parts)) as http:
        big = body(objects=[{"identifier": f"do_{i}"} for i in range(200)])
        assert_error(http.post(TRANSFER, json=big), 413, INVALID, "Request body is larger than 2000 bytes.")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
            yield b'{"request": {"context": "'
            for _ in range(100):
                yield b"x" * 100
            yield b'"}}'

        assert_error(http.post(TRANSFER, content=chunks()), 413, INVALID, "Request body is larger than 2000 bytes.")
        assert http.post(TRANSFER, json=BODY).status_code == 200


@pytest.mark.parametrize(
    ("raw", "err", "errmsg"),
    [
        (b"", INVALID, "Request body is empty."),
        (b"{not json", INVALID, "Request body is not valid JSON."),
        (b"\xff\xfe{}", INVALID, "Request body is not valid JSON."),
        (b'{"request": {"context": NaN}}', INVALID, "Request body is not valid JSON."),
        (b"[" * 100 + b"]" * 100, INVALID, "Request body is nested deeper than 64 levels."),
        (b"[" * 200_000 + b"]" * 200_000, INVALID, "Request body is nested deeper than 64 levels."),
        (b'{"request": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}", INVALID, TOO_DEEP),
        (b"[1, 2]", DATA_TYPE, "Data type of request body should be Map."),
        (b'"text"', DATA_TYPE, "Data type of request body should be Map."),
        (b"null", DATA_TYPE, "Data type of request body should be Map."),
        (b'{"request": [1]}', DATA_TYPE, "Data type of request should be Map."),
    ],
    ids=lambda v: v.decode("latin-1")[:20] if isinstance(v, bytes) else None,
)
def test_bad_bodies_are_400(http: TestClient, raw: bytes, err: str, errmsg: str) -> None:
    response = http.post(TRANSFER, content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 400, err, errmsg)


# --- success: the envelope and the events -------------------------------------------------------------


def test_success_envelope_and_one_event_per_object(api: tuple[TestClient, ApiParts]) -> None:
    http, parts = api
    objects = [
        {"objectType": "Question", "identifier": "do_q1", "primaryCategory": "Multiple Choice", "name": "Q1"},
        {"objectType": "QuestionSet", "identifier": "do_qs1"},
    ]
    response = http.post(TRANSFER, json=body(objects=objects), headers={"X-Request-ID": "req-objects"})
    assert response.status_code == 200
    doc = response.json()
    assert doc["id"] == "api.user.ownership.transfer"
    assert doc["ver"] == "v1"
    assert doc["responseCode"] == "OK"
    assert doc["params"]["status"] == "SUCCESS"
    assert doc["params"]["err"] is None and doc["params"]["errmsg"] is None
    assert doc["params"]["msgid"] == "req-objects"
    assert doc["result"]["status"] == "Ownership transfer process is submitted successfully!"
    assert doc["result"]["requestId"] == "req-objects"
    assert response.headers["X-Request-ID"] == "req-objects"

    events = queued(parts, "req-objects")
    assert [e["edata"]["assetInformation"] for e in events] == objects
    for event in events:
        assert event["eid"] == "BE_JOB_REQUEST"
        assert event["mid"].startswith(f"LP.{event['ets']}.")
        assert event["object"] == {"id": "u-ann", "type": "user"}
        assert event["context"]["cdata"] == {"id": "req-objects", "type": "Request"}
        assert event["context"]["pdata"] == {"id": "org.sunbird.platform", "ver": "1.0"}
        edata = event["edata"]
        assert edata["action"] == "ownership-transfer"
        assert edata["organisationId"] == "org-1"
        assert edata["context"] == "User Deletion"
        assert edata["iteration"] == 1
        assert edata["actionBy"] == {"userId": "u-admin", "userName": "admin1"}
        assert edata["fromUserProfile"] == {"userId": "u-ann", "userName": "ann_lee", "roles": ["CONTENT_CREATOR"]}
        # roles scoped to the request's organisation only (BOOK_CREATOR is scoped to org-2)
        assert edata["toUserProfile"] == {
            "userId": "u-ravi",
            "userName": "ravi_k",
            "firstName": "Ravi",
            "lastName": "Kumar",
            "roles": ["CONTENT_CREATOR"],
        }
    assert len({e["mid"] for e in events}) == 2


def test_no_objects_is_one_event_for_everything(api: tuple[TestClient, ApiParts]) -> None:
    http, parts = api
    for objects, name in ((..., "req-none"), ([], "req-empty")):
        response = http.post(GATEWAY, json=body(objects=objects), headers={"X-msgId": name})
        assert response.status_code == 200, response.text
        assert response.json()["result"]["requestId"] == name
        events = queued(parts, name)
        assert len(events) == 1
        assert events[0]["edata"]["assetInformation"] == {}


def test_a_bad_request_id_header_is_replaced(http: TestClient) -> None:
    response = http.post(TRANSFER, json=BODY, headers={"X-Request-ID": "../../etc/passwd"})
    assert response.status_code == 200
    rid = response.json()["result"]["requestId"]
    assert rid != "../../etc/passwd" and len(rid) == 36


def test_status_pending_then_processed(api: tuple[TestClient, ApiParts]) -> None:
    http, parts = api
    assert parts.worker is not None
    objects = [{"objectType": "Question", "identifier": "do_q3"}]  # Ravi's, not Ann's
    assert http.post(TRANSFER, json=body(objects=objects), headers={"X-Request-ID": "req-status"}).status_code == 200
    doc = http.get(f"{TRANSFER}/req-status").json()
    assert doc["id"] == "api.user.ownership.transfer.status"
    (event,) = doc["result"]["events"]
    assert event["outcome"] == "pending"
    assert event["assetInformation"] == objects[0]
    parts.worker.drain()
    for path in (TRANSFER, GATEWAY):
        (event,) = http.get(f"{path}/req-status").json()["result"]["events"]
        assert event["outcome"] == "applied"
        assert event["skipped"] == ["ASSET_NOT_OWNED"]
        assert event["changed"] == {"course_batches": 0, "assets": 0}


def test_status_shows_a_rejection(api: tuple[TestClient, ApiParts]) -> None:
    http, parts = api
    assert parts.worker is not None
    # the to-user is deleted after the API accepted the request: the worker rejects the event
    assert http.post(TRANSFER, json=ravi_to_meera(), headers={"X-Request-ID": "req-rejected"}).status_code == 200
    delete_meera(SqlStore(str(parts.sink._engine.url)))  # type: ignore[attr-defined]
    parts.worker.drain()
    (event,) = http.get(f"{TRANSFER}/req-rejected").json()["result"]["events"]
    assert (event["outcome"], event["reason"]) == ("rejected", "USER_DELETED")


def test_unknown_request_and_unknown_route(http: TestClient) -> None:
    assert_error(
        http.get(f"{TRANSFER}/no-such-request"),
        404,
        "UOS_UOWNTRANS0013",
        "Requested no-such-request resource not found",
        "RESOURCE_NOT_FOUND",
    )
    assert_error(http.get("/v1/nothing"), 404, "NOT_FOUND", "Not Found", "RESOURCE_NOT_FOUND")
    assert_error(http.delete(TRANSFER), 405, "METHOD_NOT_ALLOWED", "Method Not Allowed")


def test_health_metrics_openapi(http: TestClient) -> None:
    health = http.get("/health")
    assert health.status_code == 200
    assert health.json()["result"]["healthy"] is True
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert "api_requests_total" in metrics.text
    assert "total_events_count_total" in metrics.text
    spec = http.get("/openapi.json").json()
    assert {TRANSFER, GATEWAY, f"{TRANSFER}/{{requestId}}", "/health", "/metrics"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
