"""The long-running Kafka consumer behind ``handover worker`` that replaces the two upstream Flink jobs (SPEC 6).

At-least-once with effects exactly once: events are taken in micro-batches, processed with
``service.batch_delivery.deliver_batch`` (one store transaction per batch, ``deliver``'s retries as the
fall-back), rejections and failures are written to the failed topic and acknowledged, and only then do the
batch's offsets count as done. Done offsets are committed at most every ``kafka.commit.interval.ms``, never
ahead of the done ones. A crash at any point re-delivers the events whose offsets were not committed; the
ledger turns them into duplicates, so nothing is lost and nothing applies twice.

A micro-batch ends at ``worker.batch.size`` events or after ``worker.batch.max.ms`` (the event in hand is
finished; the events not reached are fetched again), whichever comes first, so that the consumer polls well
within ``kafka.max.poll.interval.ms`` however slow the store is and the group never evicts it.

Topics are created only when ``kafka.topic.create`` is true; otherwise a missing topic is reported and waited
for, and a creation the broker refuses ends the worker with that error (``TopicCreationError``). A partition
the group has no committed offset for starts at the committed offset of the upstream job's group
(``kafka.upstream.*.groupIds``, the cut-over), else at ``kafka.auto.offset.reset``.

SIGTERM/SIGINT finish the event in hand, commit and exit 0. A rebalance commits what is done before the
partitions go. ``/metrics`` (Prometheus) and ``/health`` are served on ``metrics.port``; logs are JSON lines
and every line about an event carries its ``mid``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST

from handover import metrics
from handover.adapters.kafka import (
    FailedRecord,
    FailedTopic,
    TopicCreationError,
    Topics,
    consumer_config,
    ensure_topics,
    upstream_offsets,
)
from handover.config import Settings
from handover.domain.events import Reason, parse_event
from handover.service.batch_delivery import deliver_batch
from handover.service.delivery import Delivery
from handover.service.engine import Engine
from handover.service.ports import Outcome, UnitOfWorkFactory

log = logging.getLogger("handover.worker")

POLL_TIMEOUT_S = 0.5
LAG_INTERVAL_S = 5.0
STALLED_AFTER_S = 60.0
SEEN_MIDS = 100_000

Partition = tuple[str, int]


class Wired(Protocol):
    """What the consumers need of ``bootstrap.App``: the settings, the store and an engine over it."""

    settings: Settings
    store: object

    def engine(self) -> Engine: ...


# --- JSON logs ----------------------------------------------------------------------------------------

# --- /metrics and /health -----------------------------------------------------------------------------


class StatusServer:
    """A small HTTP server in a daemon thread: ``GET /metrics`` and ``GET /health``."""

    def __init__(self, port: int, health: Any, host: str = "0.0.0.0") -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path == "/health":
                    ok, doc = outer.health()
                    self._send(200 if ok else 503, json.dumps(doc).encode(), "application/json")
                else:
                    self._send(404, b'{"error":"not found"}', "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.health = health
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the worker ---------------------------------------------------------------------------------------


class Worker:
    """Consume the input topics until ``stop()``; ``run()`` returns the exit code."""

    def __init__(self, app: Wired, *, metrics_port: int | None = None) -> None:
        self._app = app
        settings = app.settings
        self._settings = settings
        self.topics = Topics.from_settings(settings)
        self._engine = app.engine()
        self._max_attempts: int = settings["max_attempts"]
        self._batch_size: int = settings["worker.batch.size"]
        self._batch_max_s: float = settings["worker.batch.max.ms"] / 1000
        self._metrics_port: int = settings["metrics.port"] if metrics_port is None else metrics_port
        self._commit_interval: float = settings["kafka.commit.interval.ms"] / 1000
        self._next_commit = 0.0
        self._stop = threading.Event()
        self._done: dict[Partition, int] = {}  # next offset to commit: every event before it has an outcome
        self._committed: dict[Partition, int] = {}
        self._assigned: set[Partition] = set()
        self._last_poll = time.monotonic()
        self._waiting: str | None = None  # what the worker waits for before it can consume
        self._takeover: dict[Partition, tuple[int, str]] = {}  # upstream groups' offsets (cut-over)
        self.cuts = 0  # micro-batches ended by worker.batch.max.ms
        self._consumer: Consumer | None = None
        self._failed: FailedTopic | None = None
        self.server: StatusServer | None = None
        self.handled = 0
        self._seen: OrderedDict[str, None] = OrderedDict()  # mids this process applied or rejected, newest last

    # --- control

    def stop(self, *_: object) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        age = time.monotonic() - self._last_poll
        status = "stopping" if self.stopping else "stalled" if age > STALLED_AFTER_S else "ok"
        if self._waiting is not None and not self.stopping:
            status = "waiting"
        doc: dict[str, Any] = {
            "status": status,
            "assignedPartitions": len(self._assigned),
            "lastPollSecondsAgo": round(age, 3),
            "eventsHandled": self.handled,
        }
        if status == "waiting":
            doc["waitingFor"] = self._waiting
        return status == "ok", doc

    # --- main loop

    def run(self) -> int:
        self.server = StatusServer(self._metrics_port, self.health)
        self.server.start()
        log.info("metrics and health listening", extra={"port": self.server.port})
        try:
            if not self._connect():
                return 0
            assert self._consumer is not None
            log.info(
                "worker started",
                extra={"topics": self.topics.inputs, "group": self._settings["kafka.groupId"],
                       "failedTopic": self.topics.failed, "batchSize": self._batch_size},
            )
            ok = self._loop(self._consumer)
            return 0 if ok else 1
        except TopicCreationError as exc:  # refused by the broker: retrying will not help
            log.error("%s", exc, extra={"topic": exc.topic, "error": exc.error.name()})
            return 1
        except KafkaException as exc:  # a fatal consumer error: the process must restart
            log.error("fatal Kafka error: %s", exc)
            return 1
        finally:
            self._shutdown()

    def _connect(self) -> bool:
        """Check the topics (create the missing ones when ``kafka.topic.create``), read the upstream groups'
        offsets, then subscribe. Waits for the broker and for missing topics (False when stopped while waiting);
        raises ``TopicCreationError`` when the broker refuses to create a topic for good."""
        names = [*self.topics.inputs, self.topics.failed]
        wait = 1.0
        while not self.stopping:
            try:
                missing = ensure_topics(self._settings, names)
                if not missing:
                    self._takeover = upstream_offsets(self._settings, self.topics)
                    break
                self._waiting = f"topics {', '.join(missing)}"
                log.error(
                    "topics %s do not exist; the worker creates topics only when kafka.topic.create is true "
                    "(then with kafka.topic.partitions and kafka.topic.replication.factor); checking again in %.0fs",
                    ", ".join(missing), wait, extra={"missingTopics": missing},
                )
            except TopicCreationError as exc:
                if not exc.retriable:
                    raise
                self._waiting = f"topic {exc.topic} ({exc.error.name()})"
                log.error("%s; retrying in %.0fs", exc, wait)
            except KafkaException as exc:
                self._waiting = "the broker"
                log.error("broker not reachable (%s); retrying in %.0fs", exc, wait)
            self._stop.wait(wait)
            wait = min(wait * 2, 30.0)
        if self.stopping:
            return False
        self._waiting = None
        if self._takeover:
            log.info(
                "cut-over: partitions this group has no committed offset for start at the upstream groups' offsets",
                extra={"upstreamOffsets": {f"{t}[{p}]": f"{o} ({g})" for (t, p), (o, g) in self._takeover.items()}},
            )
        config = consumer_config(self._settings)
        config["on_commit"] = self._on_commit
        self._consumer = Consumer(config)
        self._failed = FailedTopic(self._settings)
        self._consumer.subscribe(
            self.topics.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        return True

    def _loop(self, consumer: Consumer) -> bool:
        next_lag = time.monotonic() + LAG_INTERVAL_S
        while not self.stopping:
            first = consumer.poll(POLL_TIMEOUT_S)
            self._last_poll = time.monotonic()
            if first is not None:
                batch = [first]
                if self._batch_size > 1:
                    batch += consumer.consume(self._batch_size - 1, 0)
                messages = [m for m in batch if self._usable(m)]
                if messages and not self._handle(consumer, messages):
                    return False
            elif time.monotonic() >= self._next_commit:  # idle: commit what waits for the interval
                self._commit(consumer, asynchronous=True)
            if time.monotonic() >= next_lag:
                self._update_lag(consumer)
                next_lag = time.monotonic() + LAG_INTERVAL_S
        return True

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.fatal():
            raise KafkaException(err)
        log.warning("consumer: %s", err.str(), extra={"topic": msg.topic(), "partition": msg.partition()})
        return False

    def _handle(self, consumer: Consumer, messages: Sequence[Message]) -> bool:
        """Process, write the failures, then mark done and commit. False when stopped before the failures
        could be written (their offsets stay uncommitted)."""
        started = time.perf_counter()
        deadline = time.monotonic() + self._batch_max_s
        values = [m.value() or b"" for m in messages]
        deliveries = deliver_batch(
            self._engine, values, self._max_attempts,
            should_stop=lambda: self.stopping or time.monotonic() >= deadline,
        )
        per_event = (time.perf_counter() - started) / max(len(deliveries), 1)
        if len(deliveries) < len(messages) and not self.stopping:
            self._fetch_again(consumer, messages[len(deliveries):], time.perf_counter() - started)
        failures: list[tuple[bytes | None, FailedRecord]] = []
        processed: list[Outcome] = []
        lines: list[dict[str, Any]] = []
        for msg, delivery in zip(messages, deliveries, strict=False):
            record = self._account(msg, delivery, processed, lines)
            if record is not None:
                failures.append((msg.key(), record))
        metrics.observe_many(processed, per_event)
        if lines:  # one line per event (``lines``: the JSON log writes each), handled once per micro-batch
            log.info("%d events processed", len(lines), extra={"lines": lines})
        if failures:
            assert self._failed is not None
            if not self._failed.send(failures, give_up=lambda: self.stopping):
                log.error("stopped before %d failed events reached the failed topic; not committed", len(failures))
                return False
        for msg in messages[: len(deliveries)]:
            self._done[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
        self.handled += len(deliveries)
        if time.monotonic() >= self._next_commit:
            self._commit(consumer, asynchronous=True)
            self._next_commit = time.monotonic() + self._commit_interval
        return True

    def _fetch_again(self, consumer: Consumer, rest: Sequence[Message], seconds: float) -> None:
        """A micro-batch cut by time: each partition goes back to its first event not reached, which the next
        polls fetch again (the consumer polls in between, so the group keeps it)."""
        self.cuts += 1
        first: dict[Partition, int] = {}
        for msg in rest:
            first.setdefault((msg.topic() or "", msg.partition() or 0), msg.offset() or 0)
        for (topic, partition), offset in first.items():
            consumer.seek(TopicPartition(topic, partition, offset))
        log.info(
            "micro-batch cut after %.1fs (worker.batch.max.ms); %d events fetched again", seconds, len(rest),
            extra={"partitions": [f"{t}[{p}]" for t, p in first]},
        )

    def _account(
        self, msg: Message, delivery: Delivery, processed: list[Outcome], lines: list[dict[str, Any]]
    ) -> FailedRecord | None:
        """An event's outcome (to ``processed``, for the metrics) and its log line (to ``lines``), or, for a
        failure, its metrics and log line at once; its failed-topic record when it needs one."""
        outcome = delivery.outcome
        if outcome is None:
            metrics.observe_failure(msg.value())
            mid = _mid_of(msg.value())
            log.error("event failed", extra={"mid": mid, "outcome": "failed", "attempts": delivery.attempts,
                                             "error": delivery.error, "topic": msg.topic(),
                                             "partition": msg.partition(), "offset": msg.offset()})
            return self._record(msg, Reason.PROCESSING_FAILED.value, delivery.error or "", mid, delivery.attempts)
        processed.append(outcome)
        lines.append({"msg": "event processed", "mid": outcome.mid, "outcome": outcome.outcome,
                      "reason": outcome.reason, "skipped": outcome.skipped, "topic": msg.topic(),
                      "partition": msg.partition(), "offset": msg.offset()})
        if outcome.mid is not None and outcome.outcome != "duplicate":
            self._seen[outcome.mid] = None
            if len(self._seen) > SEEN_MIDS:
                self._seen.popitem(last=False)
        if outcome.outcome == "rejected":
            return self._record(msg, outcome.reason or "", outcome.detail, outcome.mid, delivery.attempts)
        if outcome.outcome == "duplicate" and outcome.mid is not None and outcome.mid not in self._seen:
            return self._rejected_before(msg, outcome.mid)
        return None

    def _rejected_before(self, msg: Message, mid: str) -> FailedRecord | None:
        """A re-delivered event that was rejected before this process started: its failed record may not have
        been written (a crash between the store commit and the failed topic), so it is written again (the failed
        topic is at-least-once, like every Kafka topic)."""
        try:
            with self._uow_factory() as uow:
                entry = uow.ledger.get(mid)
        except Exception as exc:
            log.warning("ledger not read for a duplicate: %s", exc, extra={"mid": mid})
            return None
        if entry is None or entry.outcome != "rejected":
            return None
        return self._record(msg, entry.reason or "", entry.detail, mid, 1)

    @property
    def _uow_factory(self) -> UnitOfWorkFactory:
        return self._app.store  # type: ignore[return-value]

    def _record(self, msg: Message, reason: str, detail: str, mid: str | None, attempts: int) -> FailedRecord:
        return FailedRecord(
            event=msg.value() or b"",
            reason=reason,
            detail=detail,
            mid=mid,
            attempts=attempts,
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
        )

    # --- offsets

    def _commit(self, consumer: Consumer, *, asynchronous: bool, only: set[Partition] | None = None) -> None:
        offsets = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in self._done.items()
            if self._committed.get((topic, partition)) != offset and (only is None or (topic, partition) in only)
        ]
        if not offsets:
            return
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed: %s", exc)
            return
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is None:
            return
        log.warning("offset commit failed: %s", err.str())
        for tp in partitions:  # commit them again next time
            self._committed.pop((tp.topic, tp.partition), None)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        if self._takeover:
            self._start_from_upstream(consumer, partitions)
        log.info("partitions assigned", extra={"partitions": _names(partitions),
                                               "assignedPartitions": len(self._assigned)})

    def _start_from_upstream(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions this group never committed start at the upstream group's committed offset."""
        candidates = [tp for tp in partitions if (tp.topic, tp.partition) in self._takeover]
        if not candidates:
            return
        own = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(candidates, timeout=15)}
        starts: list[TopicPartition] = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key in own and own[key] < 0:
                offset, group = self._takeover[key]
                starts.append(TopicPartition(tp.topic, tp.partition, offset))
                log.info("partition starts at the upstream group's committed offset",
                         extra={"partition": f"{tp.topic}[{tp.partition}]", "offset": offset, "group": group})
            else:
                starts.append(tp)
        if any(a.offset != b.offset for a, b in zip(starts, partitions, strict=True)):
            consumer.assign(starts)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._commit(consumer, asynchronous=False, only=gone)
        self._forget(gone)
        log.info("partitions revoked", extra={"partitions": _names(partitions)})

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({(tp.topic, tp.partition) for tp in partitions})
        log.warning("partitions lost", extra={"partitions": _names(partitions)})

    def _forget(self, gone: set[Partition]) -> None:
        self._assigned -= gone
        for key in gone:
            self._done.pop(key, None)
            self._committed.pop(key, None)
            with contextlib.suppress(KeyError):
                metrics.consumer_lag.remove(key[0], str(key[1]))

    def _update_lag(self, consumer: Consumer) -> None:
        try:
            assigned = consumer.assignment()
            if not assigned:
                return
            for tp in consumer.position(assigned):
                if tp.offset < 0:
                    continue
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                        max(high - tp.offset, 0)
                    )
        except KafkaException as exc:
            log.debug("consumer lag not updated: %s", exc)

    def _shutdown(self) -> None:
        committed: dict[str, int] = {}
        if self._consumer is not None:
            self._commit(self._consumer, asynchronous=False)
            committed = _offsets(self._committed)
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer close: %s", exc)
        if self._failed is not None:
            self._failed.close()
        if self.server is not None:
            self.server.stop()
        log.info("worker stopped", extra={"eventsHandled": self.handled, "committed": committed})


def _names(partitions: Sequence[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]


def _offsets(offsets: dict[Partition, int]) -> dict[str, int]:
    return {f"{topic}[{partition}]": offset for (topic, partition), offset in sorted(offsets.items())}


def _mid_of(value: bytes | None) -> str | None:
    return parse_event(value or b"").mid
