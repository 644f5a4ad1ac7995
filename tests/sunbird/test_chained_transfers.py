"""A user's batches are found by the next event whatever the timing (issue 11 item 11): chained transfers
u-c0 -> u-c1 -> ... -> u-c5, each event finding through an Elasticsearch search the batches the event before it
has just written, in one ``replay`` run and in one Kafka micro-batch of the worker.

The index's ``refresh_interval`` is set to 30 s, so that no scheduled refresh makes a write searchable during a
test: what is found is found because of ``es.refresh``, never because the clock happened to tick (on the
default 1 s interval the same fault shows up only when events follow each other within a second). The
expected end state is the embedded store's (SQLite) for the same fixture and events."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from handover.adapters.elasticsearch import CourseBatchIndex
from handover.domain.model import user_from_json
from handover.entrypoints.cli import app
from tests.integration.userorg_server import FakeUserOrg
from tests.servers.es_versions import VersionedElasticsearch, serve
from tests.servers.process import ServerProcess
from tests.sunbird.test_replay import assert_documents_equal_rows, cli, report_lines
from tests.sunbird_deployment import Deployment
from tests.tansu import SESSION_TIMEOUT_MS, Tansu

CHAIN = [f"u-c{i}" for i in range(6)]
ORG = "org-1"
SLOW_REFRESH = "30s"


def chain_fixture() -> dict[str, Any]:
    """Active batches created and/or mentored by u-c0 (some also mentored by u-c1, which the chain then passes
    through), completed ones that must not move, and batches of somebody else."""
    users = [
        {"id": u, "userName": u.replace("-", "_"), "firstName": "Chain", "lastName": u, "rootOrgId": ORG,
         "roles": ["CONTENT_CREATOR"], "isDeleted": False}
        for u in [*CHAIN, "u-other", "u-admin"]
    ]
    batches = []
    for i in range(24):
        mentors = ["u-c0", "u-m"] if i % 3 == 0 else (["u-m"] if i % 3 == 1 else [])
        batches.append({"courseid": f"do_course{i % 4}", "batchid": f"b-c0-{i:02d}", "name": f"Batch {i}",
                        "status": i % 2, "createdby": "u-c0", "mentors": mentors})
    for i in range(5):
        batches.append({"courseid": "do_course9", "batchid": f"b-other-{i}", "name": f"Other {i}", "status": 1,
                        "createdby": "u-other", "mentors": ["u-other", "u-c0"]})
    batches.append({"courseid": "do_course9", "batchid": "b-both", "name": "Both", "status": 1,
                    "createdby": "u-c0", "mentors": ["u-c0", "u-c1"]})
    for i in range(3):
        batches.append({"courseid": "do_course8", "batchid": f"b-done-{i}", "name": f"Done {i}", "status": 2,
                        "createdby": "u-c0", "mentors": ["u-c0"]})
    return {"users": users, "course_batches": batches, "assets": []}


def transfer(mid: str, from_user: str, to_user: str) -> dict[str, Any]:
    return {
        "eid": "BE_JOB_REQUEST",
        "ets": 1712750750956,
        "mid": mid,
        "actor": {"id": "ownership-transfer", "type": "System"},
        "context": {
            "pdata": {"id": "org.sunbird.platform", "ver": "1.0"},
            "cdata": {"id": "req-chain", "type": "Request"},
        },
        "object": {"id": from_user, "type": "user"},
        "edata": {
            "action": "ownership-transfer",
            "organisationId": ORG,
            "context": "User Deletion",
            "actionBy": {"userId": "u-admin"},
            "fromUserProfile": {"userId": from_user, "roles": ["CONTENT_CREATOR"]},
            "toUserProfile": {"userId": to_user, "roles": ["CONTENT_CREATOR"]},
            "assetInformation": {},
            "iteration": 1,
        },
    }


def chain_events(tag: str) -> list[dict[str, Any]]:
    return [transfer(f"LP.chain.{tag}.{i}", a, b) for i, (a, b) in enumerate(itertools.pairwise(CHAIN))]


def write_events(path: Path, events: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def reference(tmp_path: Path, fixture: dict[str, Any], events_file: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    """The course batches and the report the embedded store (SQLite) gives for the same fixture and events."""
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    (tmp_path / "fixture.json").write_text(json.dumps(fixture))
    runner = CliRunner()
    for args in (["init"], ["load", str(tmp_path / "fixture.json")],
                 ["replay", str(events_file), "--report", str(tmp_path / "reference.jsonl")]):
        result = runner.invoke(app, [*args, "--store", url], env={})
        assert result.exit_code == 0, result.output
    dumped = json.loads(runner.invoke(app, ["dump", "--store", url], env={}).stdout)
    return dumped["course_batches"], report_lines(tmp_path / "reference.jsonl")


def prepare(deployment: Deployment, userorg: FakeUserOrg, fixture: dict[str, Any]) -> None:
    userorg.add(*(user_from_json(u) for u in fixture["users"]))
    deployment.seed(fixture)
    deployment.es("PUT", f"/{deployment.index}/_settings", {"index": {"refresh_interval": SLOW_REFRESH}})


def sunbird_batches(deployment: Deployment) -> list[dict[str, Any]]:
    dumped: dict[str, list[dict[str, Any]]] = json.loads(cli(deployment.env, "dump"))
    return dumped["course_batches"]


def assert_chain_done(batches: Sequence[dict[str, Any]]) -> None:
    """Every active batch of u-c0's now names u-c5 where it named u-c0, and no one between; completed ones kept."""
    for b in batches:
        named = {b["createdby"], *b["mentors"]}
        if b["status"] == 2:
            assert b["createdby"] == "u-c0" and b["mentors"] == ["u-c0"], b
        else:
            assert not named & set(CHAIN[:-1]), b
    moved = [b for b in batches if b["batchid"].startswith(("b-c0-", "b-both"))]
    assert moved and all(b["createdby"] == "u-c5" for b in moved)


@pytest.mark.parametrize(
    ("refresh", "version"),
    [("before_search", None), ("wait_for", None), ("before_search", "6.8.22")],
    ids=["before_search", "wait_for", "before_search-6.8"],
)
def test_a_chain_in_one_replay(
    deployment: Deployment, userorg: FakeUserOrg, elasticsearch_server: ServerProcess, tmp_path: Path,
    refresh: str, version: str | None,
) -> None:
    fixture = chain_fixture()
    events = write_events(tmp_path / "chain.jsonl", chain_events(uuid.uuid4().hex[:6]))
    expected_batches, expected_report = reference(tmp_path, fixture, events)
    prepare(deployment, userorg, fixture)
    standin = VersionedElasticsearch(version, f"http://127.0.0.1:{elasticsearch_server.port}")
    report = tmp_path / "report.jsonl"
    with serve(standin) as es_url:
        # a page of 7: the search_after pages of one event interleave with its writes
        env = {**deployment.env, "HANDOVER_ES_REFRESH": refresh, "HANDOVER_PAGE_SIZE": "7",
               "HANDOVER_ES_BASEPATH": es_url}
        cli(env, "init")
        cli(env, "replay", str(events), "--report", str(report))
    got = report_lines(report)
    assert [line["changed"]["course_batches"] for line in got] == [30] * 5
    assert got == expected_report
    batches = sunbird_batches(deployment)
    assert batches == expected_batches
    assert_chain_done(batches)
    assert_documents_equal_rows(deployment)
    if refresh == "before_search":
        assert standin.count("POST", f"/{deployment.index}/_refresh") == len(CHAIN) - 1
    else:
        bulks = [r for r in standin.requests if r.path == "/_bulk"]
        assert bulks and all(r.query == "refresh=wait_for" for r in bulks)


def test_without_a_refresh_the_chain_breaks(
    deployment: Deployment, userorg: FakeUserOrg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fault on this server, for the record: with no refresh at all (as before), each event after the first
    finds none of the batches its from-user has just received: u-c0's 24 stay with u-c1. (The second event still
    finds ``b-both``, whose seeded document already named u-c1 as a mentor.)"""
    fixture = chain_fixture()
    events = write_events(tmp_path / "chain.jsonl", chain_events(uuid.uuid4().hex[:6]))
    prepare(deployment, userorg, fixture)
    monkeypatch.setattr(CourseBatchIndex, "refresh", lambda self: None)
    env = {**deployment.env, "HANDOVER_ES_REFRESH": "before_search"}
    cli(env, "init")
    report = tmp_path / "report.jsonl"
    cli(env, "replay", str(events), "--report", str(report))
    assert [line["changed"]["course_batches"] for line in report_lines(report)] == [30, 1, 0, 0, 0]
    stuck = [b for b in sunbird_batches(deployment) if b["status"] != 2 and b["createdby"] == "u-c1"]
    assert sorted(b["batchid"] for b in stuck) == [f"b-c0-{i:02d}" for i in range(24)]


@pytest.mark.kafka
@pytest.mark.parametrize("audit", ["true", "false"], ids=["audit", "no-audit"])
def test_a_chain_in_one_kafka_micro_batch(
    deployment: Deployment, userorg: FakeUserOrg, kafka_broker: Tansu, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    audit: str,
) -> None:
    """The worker takes the whole chain in one micro-batch (one unit of work): each event's search runs after
    the writes of the event before it in the same batch. Without the audit nothing else makes the held writes
    of an event before the next event's search: the search does."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    import handover.adapters.kafka_worker as worker_module
    from handover.adapters.kafka import KafkaEventSink
    from handover.bootstrap import bootstrap
    from handover.config import load_settings
    from handover.service.batch_delivery import deliver_batch

    fixture = chain_fixture()
    events = chain_events(uuid.uuid4().hex[:6])
    expected_batches, _ = reference(tmp_path, fixture, write_events(tmp_path / "chain.jsonl", events))
    prepare(deployment, userorg, fixture)
    env = {
        **deployment.env,
        "HANDOVER_KAFKA_BROKER_SERVERS": kafka_broker.bootstrap,
        "HANDOVER_JOB_ENV": "t" + uuid.uuid4().hex[:10],
        "HANDOVER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "HANDOVER_KAFKA_AUTO_OFFSET_RESET": "earliest",
        "HANDOVER_METRICS_PORT": "0",
        "HANDOVER_AUDIT_ENABLED": audit,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(environ=env)
    cli(env, "init")
    # one partition per topic, so that the chain stays in order; made here, whatever the worker would create
    topics = [settings["kafka.input.topic"], settings["kafka.input.user_pii_topic"],
              settings["kafka.output.failed.topic"]]
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics], operation_timeout=15).values():
        future.result(15)
    sink = KafkaEventSink(settings)
    sink.publish_raw([json.dumps(e).encode() for e in events])
    sink.close()

    sizes: list[int] = []

    def recording(engine: Any, items: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(items))
        return deliver_batch(engine, items, *args, **kwargs)

    monkeypatch.setattr(worker_module, "deliver_batch", recording)
    worker = worker_module.Worker(dataclasses.replace(bootstrap("sunbird://"), settings=settings), metrics_port=0)
    thread = threading.Thread(target=worker.run, name="worker")
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while worker.handled < len(events) and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.1)
        assert worker.handled == len(events), f"{worker.handled} of {len(events)} events handled"
    finally:
        worker.stop()
        thread.join(30)
    assert sizes == [len(events)], f"micro-batches of {sizes}"
    batches = sunbird_batches(deployment)
    assert batches == expected_batches
    assert_chain_done(batches)
    assert_documents_equal_rows(deployment)
