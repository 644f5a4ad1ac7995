"""Generated event streams on ``sunbird://`` (test servers: real Cassandra 2.1, ArcadeDB's Bolt, the noida-db
Elasticsearch emulator) end as the embedded store ends them: by ``replay``, and through the Kafka worker (tansu)
killed with SIGKILL mid-stream and restarted (nothing lost, nothing applied twice, one email per deletion)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from handover.adapters.kafka import KafkaEventSink
from handover.adapters.sql import SqlStore
from handover.bootstrap import bootstrap
from handover.config import load_settings
from handover.domain.model import user_from_json
from handover.entrypoints.cli import app
from tests.integration.userorg_server import FakeUserOrg
from tests.streams import mixed_stream
from tests.sunbird_deployment import Deployment
from tests.tansu import SESSION_TIMEOUT_MS, Tansu
from tests.worker_process import WorkerProcess

MODEL_KEYS = ("identifier", "objectType", "schemaVersion", "status", "visibility", "createdBy", "creator", "originData")


def sunbird_stream(groups: int) -> tuple[dict[str, Any], list[bytes]]:
    """``tests.streams.mixed_stream`` with batch ids unique across groups (Sunbird's are: the search document's id
    is the batch id)."""
    fixture, events = mixed_stream(groups)
    for batch in fixture["course_batches"]:
        batch["batchid"] = f"{batch['courseid']}-{batch['batchid']}"
    return fixture, events


def embedded_replay(path: Path, fixture: dict[str, Any], events: Sequence[bytes]) -> tuple[list[Any], dict[str, Any]]:
    """The report lines and dump the embedded store gives for the events one after the other."""
    url = f"sqlite:///{path}"
    store = SqlStore(url)
    store.init_schema()
    store.load(fixture)
    engine = bootstrap(url).engine()
    report = [engine.process(value).report(n) for n, value in enumerate(events, 1)]
    return report, {name: list(records) for name, records in store.dump_sections()}


def sunbird_dump(env: dict[str, str]) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["dump", "--store", "sunbird://"], env=env)
    assert result.exit_code == 0, result.output
    dumped = json.loads(result.stdout)
    dumped["assets"] = [{k: a.get(k) for k in MODEL_KEYS} for a in dumped["assets"]]
    return dumped


def comparable(dump: dict[str, Any]) -> dict[str, Any]:
    return {key: dump[key] for key in ("course_batches", "assets", "notifications")}


def prepare(deployment: Deployment, userorg: FakeUserOrg, fixture: dict[str, Any], **settings: str) -> dict[str, str]:
    userorg.add(*(user_from_json(u) for u in fixture["users"]))
    deployment.seed(fixture)
    env = {**deployment.env, **{f"HANDOVER_{k.upper()}": v for k, v in settings.items()}}
    result = CliRunner().invoke(app, ["init", "--store", "sunbird://"], env=env)
    assert result.exit_code == 0, result.output
    return env


def test_generated_stream_replays_as_on_the_embedded_store(
    deployment: Deployment, userorg: FakeUserOrg, tmp_path: Path
) -> None:
    fixture, events = sunbird_stream(30)
    # pages of 2 hits / nodes and Cassandra batches of 2 statements: every paging path is taken
    env = prepare(deployment, userorg, fixture, page_size="2", threshold_batch_write_size="2")
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(events) + b"\n")
    report = tmp_path / "report.jsonl"
    result = CliRunner().invoke(app, ["replay", str(source), "--report", str(report), "--store", "sunbird://"], env=env)
    assert result.exit_code == 0, result.output

    expected_report, expected_dump = embedded_replay(tmp_path / "embedded.db", fixture, events)
    assert [json.loads(line) for line in report.read_text().splitlines()] == expected_report
    assert comparable(sunbird_dump(env)) == comparable(expected_dump)
    assert len(userorg.notifications) == 30  # one email per deletion


# --- the Kafka worker ----------------------------------------------------------------------------------


def ledger_count(deployment: Deployment) -> int:
    return int(deployment.cql().execute(f"SELECT count(*) FROM {deployment.handover_keyspace}.ledger").one()[0])


def wait_until(check: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail()}")


def test_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    deployment: Deployment,
    userorg: FakeUserOrg,
    kafka_broker: Tansu,
    processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    groups = 40
    fixture, events = sunbird_stream(groups)
    env = prepare(
        deployment,
        userorg,
        fixture,
        store="sunbird://",  # HANDOVER_STORE, for the worker processes
        kafka_broker_servers=kafka_broker.bootstrap,
        job_env="sb" + deployment.tag,
        kafka_session_timeout_ms=str(SESSION_TIMEOUT_MS),
        kafka_auto_offset_reset="earliest",
        kafka_topic_create="true",
        metrics_port="0",
        worker_batch_size="3",
        # no offset commit before the kill (only at a clean stop): everything the first worker applied comes again
        kafka_commit_interval_ms="600000",
    )
    sink = KafkaEventSink(load_settings(environ=env))
    sink.publish_raw(events)
    sink.close()
    distinct = len({json.loads(v)["mid"] for v in events})

    first = WorkerProcess(env, tmp_path / "first.log")
    processes.append(first)
    wait_until(lambda: ledger_count(deployment) >= distinct // 4, 120, "a quarter of the stream", first.tail)
    first.stop(signal.SIGKILL)
    assert ledger_count(deployment) < distinct, "the worker finished before it could be killed"

    second = WorkerProcess(env, tmp_path / "second.log")
    processes.append(second)
    wait_until(lambda: ledger_count(deployment) == distinct, 180, "the whole stream", second.tail)
    assert second.stop(signal.SIGTERM, timeout=30) == 0

    _, expected = embedded_replay(tmp_path / "embedded.db", fixture, events)
    assert comparable(sunbird_dump(env)) == comparable(expected)
    # one email per deleted user although events were delivered twice
    mails = [n["request"]["recipientUserIds"] for n in userorg.notifications]
    assert len(mails) == groups
    before, after = first.outcomes(), second.outcomes()
    assert before.total() + after.total() > len(events)  # some events came twice
    assert 3 * groups - 3 <= before["applied"] + after["applied"] <= 3 * groups  # none applied twice
