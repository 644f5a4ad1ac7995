"""Kafka on confluent-kafka: topic names, client settings, the ``EventSink`` that publishes events, and the
failed-event topic and its record format.

Topics (SPEC 6, 7): ownership transfers on ``kafka.input.topic``, delete-user events on
``kafka.input.user_pii_topic``, failures on ``kafka.output.failed.topic``. An event's key is the user it is
about (the from-user of a transfer, the user of a delete-user), so that one user's events stay in order.

Failed-topic record: one JSON object per failed event, keyed like the event::

    {"event": "<the original message value, as text>",      # null when it was not UTF-8 ...
     "eventBase64": "<...>",                                # ... and then this holds the bytes
     "reason": "MISSING_FIELD", "detail": "edata.userId is missing or blank",
     "mid": "LP.1..." | null, "attempts": 1, "failedAt": "2024-04-10T12:05:50.956000+00:00",
     "topic": "local.delete.user", "partition": 0, "offset": 42}

``reason`` is a validation reason (SPEC 2.1) or ``PROCESSING_FAILED`` (the store or an HTTP service still
failed after ``max_attempts``; ``detail`` names the error). ``handover redrive`` processes ``event`` again.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from handover.config import ConfigError, Settings
from handover.domain.events import OWNERSHIP_TRANSFER, Rejection, decode, routing
from handover.service.ports import PublishError

log = logging.getLogger(__name__)

PRODUCE_TIMEOUT_S = 15.0
UNKNOWN_TIME = datetime.fromtimestamp(0, UTC)  # the failedAt of a record that has none


# --- topics and client settings ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topics:
    transfer: str
    delete_user: str
    failed: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls(*settings.topic_names())

    @property
    def inputs(self) -> list[str]:
        return [self.transfer, self.delete_user]

    def for_action(self, action: str | None) -> str | None:
        """The input topic of an action; None for an action the worker does not handle."""
        if action == OWNERSHIP_TRANSFER:
            return self.transfer
        if action == "delete-user":
            return self.delete_user
        return None


def bootstrap_servers(settings: Settings) -> str:
    servers: str | None = settings["kafka.broker-servers"]
    if not servers:
        raise ConfigError("kafka.broker-servers is not set (config file or HANDOVER_KAFKA_BROKER_SERVERS)")
    return servers


def client_id(role: str) -> str:
    return f"handover-{role}-{socket.gethostname()}-{os.getpid()}"


def consumer_config(settings: Settings, group_id: str | None = None, role: str = "worker") -> dict[str, Any]:
    """At-least-once: offsets are committed by the caller, never automatically. A partition the group has no
    committed offset for starts at ``kafka.auto.offset.reset`` (``latest`` by default, as Kafka's: a new group
    does not replay the topics' retention). ``kafka.max.poll.interval.ms``: the longest the caller may go
    without polling before the group evicts it (the worker cuts micro-batches to stay below it)."""
    return {
        "bootstrap.servers": bootstrap_servers(settings),
        "group.id": group_id or settings["kafka.groupId"],
        "client.id": client_id(role),
        "enable.auto.commit": False,
        "auto.offset.reset": settings["kafka.auto.offset.reset"],
        "session.timeout.ms": settings["kafka.session.timeout.ms"],
        "heartbeat.interval.ms": max(1000, settings["kafka.session.timeout.ms"] // 3),
        "max.poll.interval.ms": settings["kafka.max.poll.interval.ms"],
        "enable.partition.eof": False,
    }


def producer_config(settings: Settings, role: str = "producer") -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers(settings),
        "client.id": client_id(role),
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(PRODUCE_TIMEOUT_S * 1000),
    }


class TopicCreationError(Exception):
    """The broker answered a topic creation with an error (a policy, an authorisation, a replication factor
    larger than the brokers, ...): not a connection problem. ``retriable`` as Kafka classifies the error."""

    def __init__(self, topic: str, error: KafkaError) -> None:
        super().__init__(f"cannot create topic {topic}: {error.name()}: {error.str()}")
        self.topic = topic
        self.error = error
        self.retriable = bool(error.retriable())


def ensure_topics(
    settings: Settings,
    names: Sequence[str],
    timeout: float = 15.0,
    *,
    create: bool | None = None,
    admin: AdminClient | None = None,
) -> list[str]:
    """The topics of ``names`` that still do not exist on return. Missing topics are created only when
    ``create`` (default: ``kafka.topic.create``) is true, with ``kafka.topic.partitions`` partitions and
    ``kafka.topic.replication.factor`` replicas (-1: the broker's default). Raises ``KafkaException`` when the
    broker cannot be reached and ``TopicCreationError`` when it refuses a creation."""
    admin = admin or AdminClient({"bootstrap.servers": bootstrap_servers(settings)})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [n for n in dict.fromkeys(names) if n not in existing]
    if not missing or not (settings["kafka.topic.create"] if create is None else create):
        return missing
    partitions: int = settings["kafka.topic.partitions"]
    replicas: int = settings["kafka.topic.replication.factor"]
    futures = admin.create_topics([NewTopic(n, partitions, replicas) for n in missing], operation_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            log.info("topic %s created (%d partitions, replication factor %d)", name, partitions, replicas)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another worker was quicker
                raise TopicCreationError(name, error) from exc
    return []


def upstream_offsets(
    settings: Settings, topics: Topics, timeout: float = 15.0
) -> dict[tuple[str, int], tuple[int, str]]:
    """Cut-over: per ``(topic, partition)``, the committed offset of the upstream jobs' consumer groups
    (``kafka.upstream.transfer.groupIds`` for the transfer topic, ``kafka.upstream.user_pii.groupIds`` for the
    delete-user topic) and the group it is from; the lowest when several groups consume a topic (so that
    nothing one of them had not processed is skipped). Partitions no such group committed are absent.
    Reading a group's offsets does not join the group. Raises ``KafkaException`` when the broker cannot be
    reached."""
    wanted = {
        topics.transfer: tuple(settings["kafka.upstream.transfer.groupIds"]),
        topics.delete_user: tuple(settings["kafka.upstream.user_pii.groupIds"]),
    }
    out: dict[tuple[str, int], tuple[int, str]] = {}
    for topic, groups in wanted.items():
        for group in groups:
            reader = Consumer(consumer_config(settings, group, role="offsets"))
            try:
                info = reader.list_topics(topic, timeout=timeout).topics.get(topic)
                if info is None or info.error is not None:
                    continue
                committed = reader.committed([TopicPartition(topic, p) for p in sorted(info.partitions)], timeout)
            finally:
                reader.close()
            for tp in committed:
                key = (topic, tp.partition)
                if tp.offset >= 0 and (key not in out or tp.offset < out[key][0]):
                    out[key] = (tp.offset, group)
    return out


# --- producing ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes


def produce_all(producer: Producer, records: Sequence[Record], timeout: float = PRODUCE_TIMEOUT_S + 5) -> list[str]:
    """Produce and wait for every acknowledgement; the errors (empty when all records are durable)."""
    errors: list[str] = []
    acked = 0

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        nonlocal acked
        if err is not None:
            errors.append(str(err))
        else:
            acked += 1

    for record in records:
        while True:
            try:
                producer.produce(record.topic, record.value, record.key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.1)
            except KafkaException as exc:
                errors.append(str(exc))
                break
        producer.poll(0)
    remaining = producer.flush(timeout)
    if remaining:
        errors.append(f"{remaining} messages not acknowledged within {timeout:.0f}s")
    if not errors and acked != len(records):  # pragma: no cover - librdkafka calls back for every message
        errors.append(f"only {acked} of {len(records)} messages acknowledged")
    return errors


def route(value: bytes | str, topics: Topics) -> Record:
    """Topic by ``edata.action`` and key by the user the event is about. A line that names no action the
    worker handles (not JSON, no ``edata``) goes to the ownership-transfer topic, as upstream's single input
    topic would take it; the worker then rejects it into the failed topic with its reason."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    doc = decode(data)
    action, user = (None, None) if isinstance(doc, Rejection) else routing(doc)
    topic = topics.for_action(action) or topics.transfer
    return Record(topic, user.encode("utf-8") if user else None, data)


class KafkaEventSink:
    """``EventSink`` on Kafka: each event to its action's topic, keyed by its user; ``publish`` returns only
    when every event is acknowledged by the broker (``acks=all``) and raises ``PublishError`` otherwise."""

    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.topics = Topics.from_settings(settings)
        self._producer = producer or Producer(producer_config(settings, "publisher"))

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None:
        records = []
        for event in events:
            action, user = routing(event)
            topic = self.topics.for_action(action)
            if topic is None:
                raise PublishError(f"event with edata.action {action!r} has no topic")
            value = json.dumps(event, ensure_ascii=False, allow_nan=False).encode("utf-8")
            records.append(Record(topic, user.encode("utf-8") if user else None, value))
        self._send(records)

    def publish_raw(self, values: Iterable[bytes | str]) -> dict[str, int]:
        """Publish message values as they are (``handover publish``); how many went to each topic."""
        records = [route(v, self.topics) for v in values]
        self._send(records)
        counts: dict[str, int] = {}
        for record in records:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        return counts

    def _send(self, records: Sequence[Record]) -> None:
        if not records:
            return
        errors = produce_all(self._producer, records)
        if errors:
            raise PublishError(f"{len(errors)} of {len(records)} events not published: {errors[0]}")

    def close(self) -> None:
        self._producer.flush(5)


# --- the failed-event topic --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailedRecord:
    """One failed event as the failed topic holds it (format in the module docstring)."""

    event: bytes
    reason: str
    detail: str = ""
    mid: str | None = None
    attempts: int = 1
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    def to_json(self) -> bytes:
        try:
            text: str | None = self.event.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        doc: dict[str, Any] = {"event": text}
        if text is None:
            doc["eventBase64"] = base64.b64encode(self.event).decode("ascii")
        doc.update(
            reason=self.reason,
            detail=self.detail,
            mid=self.mid,
            attempts=self.attempts,
            failedAt=self.failed_at.isoformat(),
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
        )
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> FailedRecord:
        """Raises ``ValueError`` for anything that is not a failed-topic record."""
        doc = json.loads(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("reason"), str):
            raise ValueError("not a failed-event record (no reason)")
        if isinstance(doc.get("event"), str):
            event = doc["event"].encode("utf-8")
        elif isinstance(doc.get("eventBase64"), str):
            try:
                event = base64.b64decode(doc["eventBase64"], validate=True)
            except binascii.Error as exc:
                raise ValueError(f"eventBase64: {exc}") from None
        else:
            raise ValueError("not a failed-event record (no event)")
        try:
            failed_at = datetime.fromisoformat(doc["failedAt"])
            if failed_at.tzinfo is None:
                failed_at = failed_at.replace(tzinfo=UTC)
        except (KeyError, TypeError, ValueError):
            failed_at = UNKNOWN_TIME
        attempts, detail = doc.get("attempts"), doc.get("detail")
        return cls(
            event=event,
            reason=doc["reason"],
            detail=detail if isinstance(detail, str) else "",
            mid=doc.get("mid") if isinstance(doc.get("mid"), str) else None,
            attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 1,
            failed_at=failed_at,
            topic=doc.get("topic") if isinstance(doc.get("topic"), str) else None,
            partition=doc.get("partition") if isinstance(doc.get("partition"), int) else None,
            offset=doc.get("offset") if isinstance(doc.get("offset"), int) else None,
        )


class FailedTopic:
    """Writes failed records durably. ``send`` keeps trying while the broker is unavailable, because the
    offsets of these events must not be committed before their records are in the topic."""

    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.topic: str = settings["kafka.output.failed.topic"]
        self._producer = producer or Producer(producer_config(settings, "failed"))

    def send(self, items: Sequence[tuple[bytes | None, FailedRecord]], give_up: Callable[[], bool]) -> bool:
        """``(key, record)`` pairs; True once all are acknowledged, False if ``give_up()`` became true first."""
        records = [Record(self.topic, key, rec.to_json()) for key, rec in items]
        wait = 0.5
        while records:
            errors = produce_all(self._producer, records)
            if not errors:
                return True
            log.error("failed topic %s not written (%s); retrying in %.1fs", self.topic, errors[0], wait)
            if give_up():
                return False
            time.sleep(wait)
            wait = min(wait * 2, 10.0)
        return True

    def close(self) -> None:
        self._producer.flush(5)
