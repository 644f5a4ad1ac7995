"""The request use cases on ``sunbird://`` (the session's Cassandra 2.1, ArcadeDB and noida-db servers): the request
log and the history in handover's keyspace (``request_log``, ``request_by_day``, ``request_days``), and the
console's history, request and failed-events pages through the app ``bootstrap`` wires (Kafka: tansu)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from handover.adapters.sunbird import SunbirdRequestLog, SunbirdStore
from handover.bootstrap import ApiParts, App, bootstrap
from handover.entrypoints.api import create_app
from handover.entrypoints.cli import app as cli
from handover.service.requests import NotSupported
from tests.e2e.api_support import BODY, TRANSFER
from tests.integration.userorg_server import FakeUserOrg
from tests.request_use_cases import RecordingSink, exercise, ids
from tests.sunbird.conftest import FIXTURE
from tests.sunbird_deployment import Deployment
from tests.tansu import Tansu


@pytest.fixture
def sunbird_app(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """``bootstrap("sunbird://")`` over the deployment, seeded with the example fixture, after ``handover init``."""
    deployment.seed(FIXTURE)
    for name, value in {**deployment.env, "HANDOVER_AUTH_MODE": "none"}.items():
        monkeypatch.setenv(name, value)
    assert CliRunner().invoke(cli, ["init", "--store", "sunbird://"]).exit_code == 0
    app = bootstrap("sunbird://")
    try:
        yield app
    finally:
        assert isinstance(app.store, SunbirdStore)
        app.store.close()


def test_the_request_use_cases(sunbird_app: App, userorg: FakeUserOrg) -> None:
    assert isinstance(sunbird_app.store, SunbirdStore)
    log, sink = SunbirdRequestLog(sunbird_app.store), RecordingSink()
    service = ApiParts(sink, log, None, history=log).service(sunbird_app)
    engine = sunbird_app.engine()
    def delete_meera() -> None:
        userorg.add(dataclasses.replace(userorg.users["u-meera"], isDeleted=True))

    exercise(service, lambda: len(engine.process_batch(sink.take())), delete_meera)
    assert service.failed_events(None) is None  # on the Kafka failed topic
    with pytest.raises(NotSupported, match="handover redrive"):
        service.redrive(None, "LP.1")


def test_history_pages_read_only_up_to_the_page(sunbird_app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests over three UTC days, newest first across the day partitions and the chunks within a day; a page
    reads the chunks up to it, not the whole history; a request whose events were all forgotten (not published)
    leaves the history."""
    store = sunbird_app.store
    assert isinstance(store, SunbirdStore)
    log = SunbirdRequestLog(store)
    monkeypatch.setattr(SunbirdRequestLog, "HISTORY_CHUNK", 2)
    start = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    made = []
    for n in range(7):  # 2026-03-01: h0, h1; 2026-03-02: h2..h5; 2026-03-03: h6
        at = start + timedelta(seconds=n) + timedelta(days=1 if n >= 2 else 0) + timedelta(days=1 if n >= 6 else 0)
        store.clock = lambda at=at: at  # type: ignore[misc]
        event = {"mid": f"LP.h{n}", "edata": {"organisationId": "org-1", "fromUserProfile": {"userId": f"u-{n}"},
                                              "toUserProfile": {"userId": "u-to"}, "assetInformation": {}}}
        log.record(f"h{n}", "u-admin", [event])
        made.append(f"h{n}")
    newest_first = made[::-1]
    assert ids(log.history(limit=10)) == newest_first
    assert ids(log.history(limit=3, offset=2)) == newest_first[2:5]
    assert ids(log.history(user="u-3")) == ["h3"]
    assert ids(log.history(outcome="pending", limit=2, offset=4)) == newest_first[4:6]
    assert ids(log.history(outcome="applied")) == []
    one = log.summary("h2")
    assert one is not None and (one.from_user, one.to_user, one.organisation_id) == ("u-2", "u-to", "org-1")
    assert one.created_at == start + timedelta(days=1, seconds=2)

    reads: list[str] = []
    days = store.cassandra.requests_of_day

    def counted(day: str, before: tuple[datetime, str] | None, limit: int) -> list[object]:
        reads.append(day)
        return days(day, before, limit)  # type: ignore[return-value]

    monkeypatch.setattr(store.cassandra, "requests_of_day", counted)
    assert ids(log.history(limit=1)) == ["h6"]
    assert reads == ["2026-03-03"]  # one chunk of the newest day
    reads.clear()
    assert ids(log.history(limit=2, offset=1)) == ["h5", "h4"]
    assert reads == ["2026-03-03", "2026-03-02"]  # the second day's first chunk holds the page

    log.forget("h4", ["LP.h4"])
    assert log.status("h4") is None and log.summary("h4") is None
    assert "h4" not in ids(log.history(limit=10))


def test_a_keyspace_from_before_the_history_tables(sunbird_app: App, deployment: Deployment) -> None:
    """Before ``handover init`` has made the history tables, recording fails (the API answers 503) and leaves the
    request id free; after ``init`` the same request records."""
    store = sunbird_app.store
    assert isinstance(store, SunbirdStore)
    deployment.cql().execute(f"DROP TABLE {deployment.handover_keyspace}.request_by_day")
    log = SunbirdRequestLog(store)
    event = {"mid": "LP.old", "edata": {"assetInformation": {}}}
    with pytest.raises(Exception, match="request_by_day"):
        log.record("req-old", "u-admin", [event])
    assert log.status("req-old") is None
    assert CliRunner().invoke(cli, ["init", "--store", "sunbird://"]).exit_code == 0
    log.record("req-old", "u-admin", [event])
    assert ids(log.history()) == ["req-old"]


def test_the_console_and_the_status_endpoint(sunbird_app: App, kafka_broker: Tansu,
                                             monkeypatch: pytest.MonkeyPatch, deployment: Deployment) -> None:
    """History, request and failed-events pages on sunbird:// (they were empty before the history port): a
    submitted request is listed, its page shows its event, and the failed-events page points to the topic."""
    for name, value in {"HANDOVER_KAFKA_BROKER_SERVERS": kafka_broker.bootstrap,
                        "HANDOVER_JOB_ENV": "uc" + deployment.tag, "HANDOVER_KAFKA_TOPIC_CREATE": "true"}.items():
        monkeypatch.setenv(name, value)
    wired = bootstrap("sunbird://")
    try:
        http = TestClient(create_app(wired))
        submitted = http.post(TRANSFER, json=BODY, headers={"X-Request-ID": "req-console"})
        assert submitted.status_code == 200, submitted.text
        status = http.get(f"{TRANSFER}/req-console")
        assert status.status_code == 200, status.text
        assert [e["outcome"] for e in status.json()["result"]["events"]] == ["pending"]

        history = http.get("/admin/requests")
        assert history.status_code == 200 and "req-console" in history.text
        assert "keeps no request history" not in history.text
        assert "req-console" in http.get("/admin/requests", params={"user": "u-ann"}).text
        assert "req-console" not in http.get("/admin/requests", params={"user": "u-nobody"}).text
        page = http.get("/admin/requests/req-console")
        assert page.status_code == 200 and "u-ann" in page.text and re.search(r"pending", page.text)
        assert http.get("/admin/requests/req-nope").status_code == 404
        confirm = http.get("/admin/requests/req-console/undo")
        assert confirm.status_code == 200 and "req-console" in confirm.text
        assert http.post("/admin/requests/req-console/undo", data={"actionBy": "u-admin"}).status_code == 409
        assert http.get("/admin/counters").status_code == 200

        failed = http.get("/admin/failed")
        assert failed.status_code == 200 and "handover redrive" in failed.text
        assert f"{wired.settings['kafka.output.failed.topic']}" in failed.text
        redrive = http.post("/admin/failed/redrive", data={"mid": "LP.1"})
        assert redrive.status_code == 501 and "handover redrive" in redrive.text
    finally:
        assert isinstance(wired.store, SunbirdStore)
        wired.store.close()
