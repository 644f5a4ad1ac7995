"""Topic creation: only when ``kafka.topic.create`` says so, with the configured partitions and replication
factor; an error the broker answers is reported as itself (not as "broker not reachable"). The broker's
answers come from a stand-in AdminClient: the test broker (tansu) accepts every creation, so it cannot refuse
one (real ``KafkaError`` values as a Kafka broker returns them)."""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.cimpl import NewTopic

from handover.adapters import kafka
from handover.adapters.kafka import TopicCreationError, ensure_topics
from handover.adapters.kafka_worker import Worker
from handover.bootstrap import bootstrap
from handover.config import load_settings

REFUSED = KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, "Replication factor: 3 larger than available brokers: 1")
TIMED_OUT = KafkaError(KafkaError.REQUEST_TIMED_OUT, "Timed out", retriable=True)


class StandInAdmin:
    """``list_topics`` knows ``existing``; ``create_topics`` records the NewTopics and answers ``error``."""

    def __init__(self, existing: tuple[str, ...] = (), error: KafkaError | None = None) -> None:
        self.existing = existing
        self.error = error
        self.created: list[NewTopic] = []

    def list_topics(self, timeout: float) -> Any:
        return SimpleNamespace(topics=dict.fromkeys(self.existing))

    def create_topics(self, topics: list[NewTopic], operation_timeout: float) -> dict[str, Future[None]]:
        out: dict[str, Future[None]] = {}
        for topic in topics:
            self.created.append(topic)
            future: Future[None] = Future()
            if self.error is None:
                future.set_result(None)
            else:
                future.set_exception(KafkaException(self.error))
            out[topic.topic] = future
        return out


def settings(**env: str) -> Any:
    return load_settings(None, environ={"HANDOVER_KAFKA_BROKER_SERVERS": "127.0.0.1:9", "HANDOVER_JOB_ENV": "t",
                                        **{f"HANDOVER_{k.upper()}": v for k, v in env.items()}})


NAMES = ["t.user.ownership.transfer", "t.delete.user", "t.handover.failed"]


def test_missing_topics_are_not_created_by_default() -> None:
    admin = StandInAdmin(existing=("t.delete.user",))
    assert ensure_topics(settings(), NAMES, admin=admin) == ["t.user.ownership.transfer", "t.handover.failed"]
    assert admin.created == []


def test_topics_are_created_with_the_configured_partitions_and_replication_factor() -> None:
    admin = StandInAdmin(existing=("t.delete.user",))
    s = settings(kafka_topic_create="true", kafka_topic_partitions="6", kafka_topic_replication_factor="3")
    assert ensure_topics(s, NAMES, admin=admin) == []
    assert [(t.topic, t.num_partitions, t.replication_factor) for t in admin.created] == [
        ("t.user.ownership.transfer", 6, 3), ("t.handover.failed", 6, 3)
    ]
    admin = StandInAdmin()
    ensure_topics(settings(kafka_topic_create="true"), NAMES[:1], admin=admin)
    assert [(t.num_partitions, t.replication_factor) for t in admin.created] == [(4, -1)]  # -1: broker default


def test_a_refused_creation_is_a_topic_creation_error() -> None:
    admin = StandInAdmin(error=REFUSED)
    with pytest.raises(TopicCreationError) as info:
        ensure_topics(settings(kafka_topic_create="true"), NAMES, admin=admin)
    assert str(info.value) == ("cannot create topic t.user.ownership.transfer: INVALID_REPLICATION_FACTOR: "
                               "Replication factor: 3 larger than available brokers: 1")
    assert info.value.retriable is False


def test_a_topic_another_worker_created_meanwhile_is_fine() -> None:
    admin = StandInAdmin(error=KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, "exists"))
    assert ensure_topics(settings(kafka_topic_create="true"), NAMES, admin=admin) == []


def worker_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, admin: StandInAdmin, **env: str) -> Worker:
    monkeypatch.setattr(kafka, "AdminClient", lambda _config: admin)
    app = dataclasses.replace(bootstrap(f"sqlite:///{tmp_path / 'h.db'}"), settings=settings(**env))
    return Worker(app, metrics_port=0)


def test_the_worker_ends_with_the_creation_error_as_it_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = worker_with(monkeypatch, tmp_path, StandInAdmin(error=REFUSED), kafka_topic_create="true")
    with caplog.at_level(logging.INFO, logger="handover.worker"):
        assert worker.run() == 1
    assert "cannot create topic t.user.ownership.transfer: INVALID_REPLICATION_FACTOR" in caplog.text
    assert "broker not reachable" not in caplog.text


def test_the_worker_retries_a_retriable_creation_error_and_says_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = worker_with(monkeypatch, tmp_path, StandInAdmin(error=TIMED_OUT), kafka_topic_create="true")
    thread = threading.Thread(target=worker.run)
    with caplog.at_level(logging.INFO, logger="handover.worker"):
        thread.start()
        try:
            for _ in range(100):
                if worker.health()[1]["status"] == "waiting":
                    break
                threading.Event().wait(0.05)
            ok, doc = worker.health()
            assert not ok and doc["waitingFor"] == "topic t.user.ownership.transfer (REQUEST_TIMED_OUT)"
        finally:
            worker.stop()
            thread.join(10)
    assert not thread.is_alive()
    assert "cannot create topic t.user.ownership.transfer: REQUEST_TIMED_OUT: Timed out; retrying" in caplog.text
    assert "broker not reachable" not in caplog.text


def test_the_worker_waits_for_missing_topics_it_may_not_create(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    admin = StandInAdmin(existing=("t.delete.user",))
    worker = worker_with(monkeypatch, tmp_path, admin)
    thread = threading.Thread(target=worker.run)
    with caplog.at_level(logging.INFO, logger="handover.worker"):
        thread.start()
        try:
            for _ in range(100):
                if worker.health()[1]["status"] == "waiting":
                    break
                threading.Event().wait(0.05)
            assert worker.health()[1]["waitingFor"] == "topics t.user.ownership.transfer, t.handover.failed"
        finally:
            worker.stop()
            thread.join(10)
    assert admin.created == []
    assert "kafka.topic.create is true" in caplog.text
