"""The HTTP API on ``sunbird://`` (test servers: real Cassandra 2.1, ArcadeDB's Bolt, the noida-db Elasticsearch
emulator; Kafka: tansu): ``handover serve`` and ``handover worker`` as real processes. Preview changes nothing;
a submitted request is published, applied by the worker and followed by the status endpoint (request log in
handover's Cassandra keyspace); undo puts every record back."""

from __future__ import annotations

import copy
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from handover.bootstrap import bootstrap
from handover.entrypoints.api import create_app
from handover.entrypoints.cli import app
from tests.e2e.api_support import BODY, TRANSFER, Process, poll_until_processed, serving
from tests.sunbird.conftest import FIXTURE
from tests.sunbird_deployment import Deployment
from tests.tansu import SESSION_TIMEOUT_MS, Tansu

ADMIN = {"request": {"actionBy": {"userId": "u-admin"}}}


def test_preview_submit_status_undo(deployment: Deployment, kafka_broker: Tansu, tmp_path: Path) -> None:
    deployment.seed(FIXTURE)
    env = {
        **deployment.env,
        "HANDOVER_STORE": "sunbird://",
        "HANDOVER_AUTH_MODE": "none",
        "HANDOVER_KAFKA_BROKER_SERVERS": kafka_broker.bootstrap,
        "HANDOVER_JOB_ENV": "api" + deployment.tag,
        "HANDOVER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "HANDOVER_KAFKA_AUTO_OFFSET_RESET": "earliest",
        "HANDOVER_KAFKA_TOPIC_CREATE": "true",
        "HANDOVER_METRICS_PORT": "0",
    }
    assert CliRunner().invoke(app, ["init"], env=env).exit_code == 0
    original = (deployment.rows(), deployment.documents(), deployment.nodes())

    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        with serving(env, tmp_path / "serve.log") as server:
            preview = httpx.post(f"{server.base}{TRANSFER}/preview", json=BODY, timeout=60)
            assert preview.status_code == 200, preview.text
            assert preview.json()["result"]["changed"] == {"course_batches": 2, "assets": 4}
            assert (deployment.rows(), deployment.documents(), deployment.nodes()) == original

            submitted = httpx.post(f"{server.base}{TRANSFER}", json=BODY, timeout=60)
            assert submitted.status_code == 200, submitted.text
            request_id = submitted.json()["result"]["requestId"]
            (event,) = poll_until_processed(server.base, request_id, timeout=90)
            assert event["outcome"] == "applied", worker.output()
            assert event["changed"] == {"course_batches": 2, "assets": 4}
            status = httpx.get(f"{server.base}{TRANSFER}/{request_id}", timeout=30).json()["result"]
            (listed,) = status["events"]
            assert listed["undone"] is False
            changed_keys = {c["key"] for c in listed["changes"]}
            assert {"do_course1/b-101", "do_q1"} <= changed_keys, listed["changes"]

            rows = deployment.rows()
            assert rows[("do_course1", "b-101")]["createdby"] == "u-ravi"
            assert rows[("do_course1", "b-102")]["mentors"] == ["u-ravi"]
            assert deployment.nodes()["do_q1"]["creator"] == "Ravi Kumar"
            assert deployment.documents()["b-101"]["createdBy"] == "u-ravi"

            undo = httpx.post(f"{server.base}{TRANSFER}/{request_id}/undo", json=ADMIN, timeout=60)
            assert undo.status_code == 200, undo.text
            assert undo.json()["result"]["reverted"] > 0 and undo.json()["result"]["conflicts"] == 0
            # as before, except that u-ann is deleted: her name is not written back (SPEC 10, issue 13 item 10)
            nodes = copy.deepcopy(original[2])
            for node in nodes.values():
                configured = node.get("IL_FUNC_OBJECT_TYPE") in ("Question", "QuestionImage", "QuestionSet")
                if configured and node.get("createdBy") == "u-ann" and node.get("creator") == "Ann Lee":
                    node["creator"] = "Deleted User"
            assert (deployment.rows(), deployment.documents(), deployment.nodes()) == (original[0], original[1], nodes)
            (after,) = httpx.get(f"{server.base}{TRANSFER}/{request_id}", timeout=30).json()["result"]["events"]
            assert after["undone"] is True
    finally:
        assert worker.stop() == 0, worker.output()


def test_unknown_organisation_is_upstreams_0028(
    deployment: Deployment, kafka_broker: Tansu, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **deployment.env,
        "HANDOVER_AUTH_MODE": "none",
        "HANDOVER_KAFKA_BROKER_SERVERS": kafka_broker.bootstrap,
        "HANDOVER_JOB_ENV": "org" + deployment.tag,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    http = TestClient(create_app(bootstrap("sunbird://")))
    doc = copy.deepcopy(BODY)
    doc["request"]["organisationId"] = "org-nope"
    response = http.post(TRANSFER, json=doc)
    assert response.status_code == 400, response.text
    assert response.json()["params"]["err"] == "UOS_UOWNTRANS0028"
    assert response.json()["params"]["errmsg"] == "Organization with ID org-nope does not exist."


def test_a_reused_request_id_is_refused_and_the_first_request_kept(deployment: Deployment) -> None:
    """The request log in handover's keyspace claims a request id with a lightweight transaction."""
    from handover.adapters.sunbird import SunbirdRequestLog, SunbirdStore
    from handover.config import load_settings
    from handover.service.ports import DuplicateRequest

    assert CliRunner().invoke(app, ["init"], env={**deployment.env, "HANDOVER_STORE": "sunbird://"}).exit_code == 0
    store = SunbirdStore(load_settings(environ=deployment.env))
    try:
        log = SunbirdRequestLog(store)
        first = [{"mid": "LP.1", "edata": {"assetInformation": {}}}]
        log.record("req-same", "u-admin", first)
        with pytest.raises(DuplicateRequest):
            log.record("req-same", "u-other", [{"mid": "LP.2", "edata": {}}, {"mid": "LP.3", "edata": {}}])
        status = log.status("req-same")
        assert status is not None and status.action_by == "u-admin"
        assert [e["mid"] for e in status.events] == ["LP.1"]
    finally:
        store.close()
