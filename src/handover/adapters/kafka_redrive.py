"""Behind ``handover redrive``: process failed events again, from the failed topic or from a file.

From the topic, a consumer group of its own (``<kafka.groupId>-redrive``) reads what was added since the last
redrive, up to the end of each partition or the first record that failed after the redrive started, and
commits as it goes; so each failure is re-driven once, and failures it writes itself wait for the next one.
An event that fails again (reason ``PROCESSING_FAILED``) is written to the failed topic again with its attempts
added up; an event rejected again is not (its record is already there). Events whose ``mid`` was processed
meanwhile are duplicates.

A file holds one JSON object per line: failed-topic records (the format of ``adapters.kafka``) or plain
events. Events that fail again are counted and left in the file; nothing is written to Kafka.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from handover.adapters.kafka import FailedRecord, FailedTopic, consumer_config
from handover.adapters.kafka_worker import Wired
from handover.domain.events import Reason
from handover.service.batch_delivery import deliver_batch
from handover.service.delivery import Delivery
from handover.service.engine import Engine

log = logging.getLogger("handover.redrive")

CHUNK = 200
IDLE_GIVE_UP_S = 30.0


class RedriveError(RuntimeError):
    """Events that failed again could not be written back to the failed topic (nothing was committed)."""


def tally(counts: Counter[str], delivery: Delivery) -> None:
    if delivery.outcome is None:
        counts["failed again"] += 1
        return
    counts[delivery.outcome.outcome] += 1
    if delivery.outcome.outcome == "rejected":
        counts[f"rejected: {delivery.outcome.reason}"] += 1


def record_of_line(line: bytes) -> FailedRecord:
    """A failed-topic record as it is, or a plain event wrapped in one."""
    try:
        return FailedRecord.from_json(line)
    except ValueError:
        return FailedRecord(event=line, reason=Reason.PROCESSING_FAILED.value, attempts=0)


def redrive_file(app: Wired, lines: Iterable[bytes]) -> Counter[str]:
    engine = app.engine()
    counts: Counter[str] = Counter()
    chunk: list[FailedRecord] = []

    def flush() -> None:
        for delivery in deliver_batch(engine, [r.event for r in chunk], app.settings["max_attempts"]):
            tally(counts, delivery)
        chunk.clear()

    for line in lines:
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        chunk.append(record_of_line(line))
        if len(chunk) >= CHUNK:
            flush()
    flush()
    return counts


def redrive_path(app: Wired, path: Path) -> Counter[str]:
    with path.open("rb") as source:
        return redrive_file(app, source)


def redrive_topic(app: Wired, stop: threading.Event | None = None) -> Counter[str]:
    """Re-drive the failed topic's records from this redrive group's committed offsets to the end of each
    partition, leaving records that failed after the redrive started (its own included) for the next one.
    Raises ``KafkaException`` when the broker cannot be reached."""
    settings = app.settings
    stop = stop or threading.Event()
    started = datetime.now(UTC)
    topic: str = settings["kafka.output.failed.topic"]
    counts: Counter[str] = Counter()
    config = consumer_config(settings, f"{settings['kafka.groupId']}-redrive", role="redrive")
    config["enable.partition.eof"] = True  # the end of a partition is an event: no offsets queries
    consumer = Consumer(config)
    failed = FailedTopic(settings)
    try:
        active = _assign_from_committed(consumer, topic)
        engine = app.engine()
        idle_since = time.monotonic()
        while active and not stop.is_set():
            todo: list[tuple[Message, FailedRecord | None]] = []
            for msg in consumer.consume(CHUNK, 1.0):
                partition = msg.partition() or 0
                if partition not in active:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        active.discard(partition)
                    else:
                        log.warning("redrive consumer: %s", err.str())
                    continue
                record = _record_of(msg, counts)
                if record is not None and record.failed_at >= started:
                    active.discard(partition)  # failed after this redrive started
                    continue
                todo.append((msg, record))
            if not todo:
                if time.monotonic() - idle_since > IDLE_GIVE_UP_S:
                    log.warning("redrive: partitions %s gave neither records nor their end; stopping", active)
                    break
                continue
            idle_since = time.monotonic()
            _redrive_records(engine, settings["max_attempts"], failed, todo, counts)
            consumer.commit(
                offsets=[TopicPartition(topic, m.partition() or 0, (m.offset() or 0) + 1) for m in _lasts(todo)],
                asynchronous=False,
            )
    finally:
        consumer.close()
        failed.close()
    return counts


def _assign_from_committed(consumer: Consumer, topic: str) -> set[int]:
    """Assign every partition of ``topic`` from the group's committed offset (else the beginning)."""
    metadata = consumer.list_topics(topic, timeout=10)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        return set()
    tps = [TopicPartition(topic, p) for p in sorted(info.partitions)]
    starts = [
        TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
        for tp in consumer.committed(tps, timeout=10)
    ]
    consumer.assign(starts)
    return {tp.partition for tp in starts}


def _record_of(msg: Message, counts: Counter[str]) -> FailedRecord | None:
    try:
        return FailedRecord.from_json(msg.value() or b"")
    except ValueError as exc:
        counts["unreadable"] += 1
        log.warning(
            "redrive: skipped a record that is not a failed event (%s)", exc,
            extra={"partition": msg.partition(), "offset": msg.offset()},
        )
        return None


def _lasts(todo: Sequence[tuple[Message, FailedRecord | None]]) -> list[Message]:
    last: dict[int, Message] = {}
    for msg, _ in todo:
        last[msg.partition() or 0] = msg
    return list(last.values())


def _redrive_records(
    engine: Engine,
    max_attempts: int,
    failed: FailedTopic,
    todo: Sequence[tuple[Message, FailedRecord | None]],
    counts: Counter[str],
) -> None:
    records = [(msg, record) for msg, record in todo if record is not None]
    deliveries = deliver_batch(engine, [r.event for _, r in records], max_attempts)
    again: list[tuple[bytes | None, FailedRecord]] = []
    for (msg, record), delivery in zip(records, deliveries, strict=True):
        tally(counts, delivery)
        if delivery.outcome is None:
            again.append(
                (
                    msg.key(),
                    replace(
                        record,
                        reason=Reason.PROCESSING_FAILED.value,
                        detail=delivery.error or "",
                        attempts=record.attempts + delivery.attempts,
                        failed_at=datetime.now(UTC),
                    ),
                )
            )
    if again and not failed.send(again, give_up=lambda: True):
        raise RedriveError(f"{len(again)} events that failed again could not be written to the failed topic")
