"""Stream throughput: ``handover worker`` on the SQLite store against a bare confluent-kafka consume loop, on the
same topics of one tansu broker, in the same run.

N mixed events (transfers of one asset and of everything, delete-user clean-ups with an admin email,
redeliveries, a few rejections; see ``tests/streams.py``) are published once. A bare consumer (its own group,
no processing) reads them all; then one ``handover worker`` process (another group) processes them all. Each
rate counts from the first event to the last (group joins and start-up excluded); the worker's is read from
its ``/metrics``. Prints events/s for both and their ratio, and checks the store afterwards.

    .venv/bin/python bench/stream_throughput.py                 # N = 100,000
    .venv/bin/python bench/stream_throughput.py --events 10000

Target (issue 3): at least 2,000 events/s for one worker. Measured at N = 100,002 on the shared 2-core machine
(default settings, batches of 500): bare loop 152,925 events/s, worker 2,477 events/s (ratio 0.016): met.
(Before the SQL store compiled its per-event statements once, the same run gave 395 events/s.)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.tansu and tests.streams, shared with the tests

from confluent_kafka import Consumer  # noqa: E402
from tests.streams import groups_for, mixed_stream  # noqa: E402
from tests.tansu import SESSION_TIMEOUT_MS, Tansu, free_port  # noqa: E402

from handover.adapters.kafka import KafkaEventSink, Topics, ensure_topics  # noqa: E402
from handover.adapters.sql import SqlStore  # noqa: E402
from handover.config import load_settings  # noqa: E402


def bare_consume(bootstrap: str, topics: list[str], total: int, timeout: float) -> tuple[float, float]:
    """(seconds from the first message to the last, seconds to join and get the first)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bare-" + uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
        }
    )
    consumer.subscribe(topics)
    started = time.monotonic()
    first = None
    seen = 0
    try:
        while seen < total and time.monotonic() - started < timeout:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    continue
                if first is None:
                    first = time.monotonic()
                seen += 1
        if seen < total:
            raise SystemExit(f"bare consumer read only {seen} of {total} events")
        assert first is not None
        return time.monotonic() - first, first - started
    finally:
        consumer.close()


def handled(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith("total_events_count_total "):
            return float(line.split()[1])
    return 0.0


def run_worker(environ: dict[str, str], port: int, total: int, log: Path, timeout: float) -> tuple[float, float]:
    """(seconds from the first event handled to the last, seconds from start to the first)."""
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "handover.entrypoints.cli", "worker"],
            env={**os.environ, **environ, "HANDOVER_METRICS_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
        try:
            first = None
            count = 0.0
            while count < total and time.monotonic() - started < timeout:
                if process.poll() is not None:
                    raise SystemExit(f"the worker exited with {process.returncode}; see {log}")
                count = handled(port)
                if first is None and count > 0:
                    first = time.monotonic()
                time.sleep(0.05)
            end = time.monotonic()
            if count < total:
                raise SystemExit(f"the worker handled only {count:.0f} of {total} events in {timeout:.0f}s")
            assert first is not None
            return end - first, first - started
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="about how many events (default 100,000)")
    parser.add_argument("--batch-size", type=int, default=None, help="worker.batch.size (default: the setting's)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds each consumer may take")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="handover-bench-") as tmp, Tansu(Path(tmp) / "tansu.log") as broker:
        db = Path(tmp) / "bench.db"
        fixture, events = mixed_stream(groups_for(args.events))
        total = len(events)
        store = SqlStore(f"sqlite:///{db}")
        store.init_schema()
        t0 = time.monotonic()
        store.load(fixture)
        print(f"{total:,} events; fixture {len(fixture['users']):,} users, {len(fixture['course_batches']):,} "
              f"batches, {len(fixture['assets']):,} assets loaded in {time.monotonic() - t0:.1f}s")

        environ = {
            "HANDOVER_KAFKA_BROKER_SERVERS": broker.bootstrap,
            "HANDOVER_JOB_ENV": "bench",
            "HANDOVER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "HANDOVER_STORE": f"sqlite:///{db}",
            "HANDOVER_KAFKA_AUTO_OFFSET_RESET": "earliest",  # the events are published before the worker joins
        }
        if args.batch_size:
            environ["HANDOVER_WORKER_BATCH_SIZE"] = str(args.batch_size)
        settings = load_settings(environ=environ)
        topics = Topics.from_settings(settings)
        ensure_topics(settings, [*topics.inputs, topics.failed], create=True)
        t0 = time.monotonic()
        sink = KafkaEventSink(settings)
        sink.publish_raw(events)
        sink.close()
        print(f"published in {time.monotonic() - t0:.1f}s")

        bare_s, bare_join = bare_consume(broker.bootstrap, topics.inputs, total, args.timeout)
        worker_s, worker_start = run_worker(environ, free_port(), total, Path(tmp) / "worker.log", args.timeout)

        with sqlite3.connect(db) as conn:
            ledger = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
            notes = conn.execute("SELECT count(*) FROM notification").fetchone()[0]
        distinct = len({json.loads(v)["mid"] for v in events})
        check = "ok" if (ledger, notes) == (distinct, groups_for(args.events)) else "MISMATCH"
        print(f"store: {ledger:,} ledger rows for {distinct:,} distinct mids, {notes:,} notifications ({check})")

        bare_rate, worker_rate = total / bare_s, total / worker_s
        print(f"bare confluent-kafka loop: {bare_rate:>10,.0f} events/s  ({bare_s:.2f}s; join {bare_join:.1f}s)")
        print(f"handover worker (SQLite):  {worker_rate:>10,.0f} events/s  ({worker_s:.2f}s; "
              f"start {worker_start:.1f}s)")
        print(f"worker / bare: {worker_rate / bare_rate:.3f}   target >= 2,000 events/s: "
              f"{'met' if worker_rate >= 2000 else 'NOT met'}")
        if check != "ok":
            raise SystemExit(1)


if __name__ == "__main__":
    main()
