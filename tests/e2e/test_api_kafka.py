"""End to end through Kafka (tansu): ``handover serve`` publishes the request's events to the
ownership-transfer topic, a ``handover worker`` process consumes and applies them to the same store, and the
status endpoint follows them from ``pending`` to ``applied``."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.e2e.api_support import (
    BODY,
    TRANSFER,
    Process,
    assert_transferred_ann_to_ravi,
    loaded_store,
    poll_until_processed,
    serving,
)
from tests.tansu import SESSION_TIMEOUT_MS, Tansu

pytestmark = pytest.mark.kafka


def wait_for_topic(bootstrap: str, topic: str, worker: Process, timeout: float = 30) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while topic not in admin.list_topics(timeout=5).topics:
        assert worker.process.poll() is None, worker.output()
        assert time.monotonic() < deadline, f"the worker did not create {topic}:\n{worker.output()}"
        time.sleep(0.1)


def messages_of(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[tuple[bytes | None, dict]]:
    """The first ``count`` messages of every partition of ``topic`` (key, decoded value), read without a group."""
    partitions = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=5).topics[topic].partitions
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    found: list[tuple[bytes | None, dict]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                found.append((msg.key(), json.loads(msg.value())))
    finally:
        consumer.close()
    return found


def test_serve_publishes_to_kafka_and_the_worker_applies(kafka_broker: Tansu, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'handover.db'}"
    loaded_store(url)
    env = {
        "HANDOVER_STORE": url,
        "HANDOVER_AUTH_MODE": "none",
        "HANDOVER_KAFKA_BROKER_SERVERS": kafka_broker.bootstrap,
        "HANDOVER_JOB_ENV": "api" + uuid.uuid4().hex[:8],
        "HANDOVER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "HANDOVER_METRICS_PORT": "0",
        "HANDOVER_KAFKA_TOPIC_CREATE": "true",
        "HANDOVER_KAFKA_AUTO_OFFSET_RESET": "earliest",  # fresh topics: the event may come before the group joins
    }
    worker = Process(["worker"], env, tmp_path / "worker.log")  # creates the topics, joins the group
    try:
        wait_for_topic(kafka_broker.bootstrap, f"{env['HANDOVER_JOB_ENV']}.user.ownership.transfer", worker)
        with serving(env, tmp_path / "serve.log") as server:
            response = httpx.post(f"{server.base}{TRANSFER}", json=BODY, timeout=30)
            assert response.status_code == 200, response.text
            request_id = response.json()["result"]["requestId"]
            (event,) = poll_until_processed(server.base, request_id, timeout=60)
            assert event["outcome"] == "applied", worker.output()
            assert event["changed"] == {"course_batches": 2, "assets": 4}
            assert "events go to Kafka" in server.output()
            topic = f"{env['HANDOVER_JOB_ENV']}.user.ownership.transfer"
            ((key, value),) = messages_of(kafka_broker.bootstrap, topic, 1)
            assert key == b"u-ann"  # the from-user
            assert value["mid"] == event["mid"]
            assert value["context"]["cdata"]["id"] == request_id
            assert "queue worker" not in server.output()
        assert_transferred_ann_to_ravi(url)
    finally:
        code = worker.stop()
    assert code == 0, worker.output()
