"""Stream throughput: ``handover worker`` on the SQLite store, one process and then two processes of one group,
against a bare confluent-kafka consume loop, on the same topics of one tansu broker, in the same run.

N mixed events (transfers of one asset and of everything, delete-user clean-ups with an admin email,
redeliveries, a few rejections; see ``tests/streams.py``) are published once to topics of ``--partitions``
partitions (default 4). A bare consumer (its own group, no processing) reads them all; then one ``handover worker``
(group bench-1, its own copy of the fixture) processes them all; then two workers started together (group bench-2,
another copy). Each rate counts from the first event handled to the last (group joins and start-up excluded); the
workers' counts are read from their ``/metrics``. Prints events/s, seconds and the ratio to the bare loop side by
side, the CPU seconds the workers used over that time and events per CPU second (less sensitive than events/s to
the other processes of a loaded machine), the two-worker / one-worker ratio, the machine's load average at start
and end, and checks each store.
``--profile DIR`` runs the workers under pyinstrument (a text report per worker, written when it stops).

    .venv/bin/python bench/stream_throughput.py                 # N = 100,000
    .venv/bin/python bench/stream_throughput.py --events 10000

Issue 15: the figures claimed here before (2,477 events/s at N = 100,002, measured on 2026-11-21) no longer held:
the same command at N = 10,002 gave 212 events/s (load average 5.33 at start, 3.00 at end). The cause, found with
pyinstrument: since the deletion's redaction also looks for the names the audit recorded (2026-11-29), every
delete-user event ran ``SqlAudit.recorded_names`` and ``SqlAudit.redact`` as scans of the whole audit table, so the
rate fell as the audit grew (the two took 65 % of the engine's time over N = 4,000, 75 % with the rest of the
clean-up). The profile shows no fall-back to one event at a time (no ``deliver`` under ``deliver_batch``), so no
retries; the email itself (one outbox row) was cheap. What each change bought, in the engine loop without Kafka
(``deliver_batch`` over the same events in batches of 500; one loaded 2-core machine, so +-30 %): N = 4,000:
540-690 events/s before, 640 with the indexes on the JSON text of audit before/after (N = 10,002: 1,055), 3,230
with those two statements compiled once; N = 10,002: 2,640-4,600 with the micro-batch's ledger entries and users
read at once, 2,440-5,550 with its ledger and audit rows inserted at once and audit pages compiled once.
Measured with this script afterwards (2026-11-29, load average 3.21 at start, 2.86 at end), ``--events 10000``:
bare loop 19,044 events/s, one worker 4,390 events/s (0.231 of bare), two workers together 4,358 events/s (two /
one 0.99); ``--events 20000`` (load 2.71 -> 2.96): bare 36,634, one worker 3,188, two workers 3,724 (1.17).
After merging main at 86bdca2, ``--events 10000`` (load 2.64 -> 2.20): bare 19,145, one worker 4,811 (0.251), two
workers 5,314 (1.10).
Target (>= 5,000 events/s per worker): not met. Two workers on one SQLite file do not add up: their write
transactions take turns on the file's lock, and both share the 2 cores with the broker and other processes.
Second round (branch perf-undo2, 2026-11-29 19:51-19:53 UTC): the profile of one worker (``--events 10000
--profile DIR``, 988 events/s under pyinstrument, load 4.63 -> 5.44) has no single hot spot: of 14.3 s in the
consume loop, 9.2 s in ``Engine.process_batch`` (transfers 3.9 s: per event the user's batch pages 1.0 s, the
batch writes 0.8 s, ``SqlAssets.get`` of an asset and its image 0.7 s, the all-assets pages 0.5 s; delete-user 3.1
s: ``recorded_names`` 0.75 s, outbox row 0.6 s, asset pages 0.5 s, ``_changed_before`` audit pages 0.4 s, writes
0.4 s, ``redact`` 0.3 s; commit with the ledger and audit inserts 0.9 s; ``parse_event`` 0.7 s; read-ahead 0.4 s),
the per-event log line and metrics 1.1 s, ``Consumer.poll`` 3.0 s. The rest of the way to 5,000 events/s needs the
per-event reads of a micro-batch (asset and batch pages of each transfer) done per batch; not done in this round.
Measured without changes (load 5.29 -> 4.15): bare 19,336, one worker 4,338 (0.224), two workers 3,177 (0.73); with
SQLite's statement cache raised to 1,024 (``cached_statements``; load 4.06 -> 3.51): one worker 4,354, two 4,084,
no gain, not kept.
Third round (branch perf-stream, 2026-11-29 21:00-21:55 UTC; other helpers' work kept the load average at 4-16, so
every rate here is a fraction of the idle figures above, and before and after ran back to back). The consume loop
already took a micro-batch per poll (``poll(0.5)`` for the first message, ``consume(499, 0)`` for what the client
holds); counted in one run (one worker, N = 10,002): 20 micro-batches, nearly all of 500, 0.007 s in ``poll`` and
``consume`` from the first event to the last. The 3.0 s of ``Consumer.poll`` in the profile are the group join
before the first event, outside the measured time; the loop is unchanged (``consume(500, 0.5)`` alone would wait
0.5 s for a full batch whenever fewer events wait). The per-event log line and metrics: counters incremented once
per micro-batch by outcome (``metrics.observe_many``) and the lines of a micro-batch in one log record that the JSON
formatter writes as one line per event (the same fields): 63-68 us CPU an event before, 15 us after (a throwaway
loop of 20,000 lines to /dev/null). The engine reads a micro-batch's records ahead on SQLite
(``service.batch_reads``, ``SqlReadAhead``: the named assets and their images, each walked user's first page of
assets and of batches, the audited assets of each clean-up, a ``UNION ALL`` of per-user first pages per 16 users),
kept equal to the store by the engine's own writes; the per-event reads are gone from the profile (engine loop
without Kafka, N = 10,002, 15.9 s under pyinstrument: the read-ahead 3.8 s, delete-user 5.7 s of which
``recorded_names`` 2.4 s with the audit rows it flushes 1.2 s, outbox 1.1 s, ``redact`` 0.9 s; transfers 3.7 s,
nearly all writes; ``parse_event`` 1.7 s). This script, ``--events 10000``, before (a12bb05) / after, one worker in
events/s and events per worker CPU second: 21:27 (load 5.76 -> 8.25 / 8.15 -> 10.72) 480 and 1,263 / 599 and
1,687; 21:30 (load 11.24 -> 16.25 / 15.87 -> 11.83) 565 and 1,233 / 494 and 1,588; 21:52 (load 7.61 -> 7.19 /
7.19 -> 5.60) 1,057 and 1,722 / 1,421 and 1,852; 21:53 (load 5.60 -> 5.26 / 5.32 -> 5.27) 939 and 1,502 / 1,029
and 2,165; 22:02 (load 2.75 -> 2.93 / 2.94 -> 2.95) 1,137 and 1,454 / 1,031 and 1,687; 22:04 (load 2.80 -> 2.60 /
2.47 -> 2.61) 1,333 and 1,417 / 1,828 and 2,119 (the first two after runs at ef69bf3, 64 users a read-ahead
statement). Events per CPU second: 1,432 before, 1,850 after on average (+29 %). Two workers together: 700, 384,
1,550, 784, 1,148, 1,287 events/s before; 410, 675, 1,540, 1,299, 1,513, 1,430 after. The target could not be
measured: even at load 2.5 the workers had about a third of the CPU speed of the idle runs above (1,417 events per
CPU second before, against at least 4,459 events/s for one worker there). Left per event: the deletion's
``recorded_names``, ``redact`` and outbox row (they read and rewrite audit rows that earlier events of the batch
may have written or redacted; done per batch they need those writes applied in memory as the records' are),
``parse_event``'s check that every string can be stored (``json.dumps`` of the event), and each event's record
writes.
Fourth round (branch perf-kafka, 2026-11-30 00:00-00:40 UTC): those per-event costs done per micro-batch. Before:
29,167 SQL statements for N = 10,002 (a clean-up 8: an audit flush, two ``recorded_names`` SELECTs, two ``redact``
UPDATEs, the outbox's look-up and insert, the asset update; a transfer about 4 writes), SQLAlchemy's work per
statement above SQLite's, and about 90 compilations of IN lists of different lengths. After: about 780 statements.
Changes, with the engine loop's CPU seconds without Kafka (lowest of 3, N = 10,002, load 2.4-2.9): parent 2.61;
the clean-ups' audit held in memory for the micro-batch (``ReadAhead.hold_deletions``: ``recorded_names`` and
``redact`` without statements, the store's rows redacted once at the next flush), outbox rows looked up once per
batch and inserted at commit: 2.40; ``parse_event`` without ``json.dumps`` when the text has no \\u escape and no
NUL or lone surrogate: 2.26; each record written once per micro-batch (its updates merged in ``BatchReads``) before
any read from the store and at commit: 1.75; the read plan built once: 1.73; IN lists padded to a few shapes: 1.57;
smaller ones: 1.52. A test holds a micro-batch's audit, records and emails equal to the same events one at a time.
This script, one worker, parent 217eb06 / branch alternated (00:32-00:34 UTC, load 1.37 -> 0.94): 3,944 and
3,305 / 6,548 and 6,138 events/s; events per worker CPU second 3,522-4,099 before, 5,406-6,851 after. On main
after the merge, idle (00:45 UTC, load 0.71 -> 0.51): bare 19,025, one worker **6,435** events/s (6,713 per CPU
second), two workers together 7,049 (two / one 1.10): the target of 5,000 per worker is met on an idle machine;
under load (1.8-3) one worker ran at 2,953-3,813. Two workers on one SQLite file still take turns on its lock.
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

import psutil  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402
from tests.streams import groups_for, mixed_stream  # noqa: E402
from tests.tansu import SESSION_TIMEOUT_MS, Tansu, free_port  # noqa: E402

import handover.adapters.sql_queue  # noqa: E402, F401  (puts the queue tables on the schema, as bootstrap does)
from handover.adapters.kafka import KafkaEventSink, Topics, ensure_topics  # noqa: E402
from handover.adapters.sql import SqlStore  # noqa: E402
from handover.config import env_name, load_settings  # noqa: E402


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
        return 0.0
    for line in text.splitlines():
        if line.startswith("total_events_count_total "):
            return float(line.split()[1])
    return 0.0


def worker_command(profile: Path | None, name: str) -> list[str]:
    """``handover worker``, under pyinstrument (a text report in ``profile``) when asked."""
    if profile is None:
        return [sys.executable, "-m", "handover.entrypoints.cli", "worker"]
    report = profile / f"{name}.txt"
    return [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--outfile", str(report),
            "-m", "handover.entrypoints.cli", "worker"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (psutil, as ``bench/api_latency.py``)."""
    return sum(psutil.Process(pid).cpu_times()[:2])


def run_workers(
    environ: dict[str, str], count: int, total: int, logs: Path, timeout: float, profile: Path | None
) -> tuple[float, float, float]:
    """Start ``count`` worker processes of one group at once; (seconds from the first event handled by any to the
    last handled by all, seconds from start to the first, CPU seconds the workers used in between)."""
    started = time.monotonic()
    ports = [free_port() for _ in range(count)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n, port in enumerate(ports):
            with (logs / f"worker-{count}-{n}.log").open("wb") as out:
                processes.append(subprocess.Popen(
                    worker_command(profile, f"worker-{count}-{n}"),
                    env={**os.environ, **environ, "HANDOVER_METRICS_PORT": str(port)},
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                ))
        first = None
        cpu_at_first = 0.0
        done = 0.0
        while done < total and time.monotonic() - started < timeout:
            for n, process in enumerate(processes):
                if process.poll() is not None:
                    tail = (logs / f"worker-{count}-{n}.log").read_text(errors="replace")[-2000:]
                    raise SystemExit(f"a worker exited with {process.returncode}:\n{tail}")
            done = sum(handled(port) for port in ports)
            if first is None and done > 0:
                first = time.monotonic()
                cpu_at_first = sum(cpu_seconds(p.pid) for p in processes)
            time.sleep(0.02)
        end = time.monotonic()
        cpu = sum(cpu_seconds(p.pid) for p in processes) - cpu_at_first
        if done < total:
            raise SystemExit(f"{count} worker(s) handled only {done:.0f} of {total} events in {timeout:.0f}s")
        assert first is not None
        return end - first, first - started, cpu
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)


def check_store(db: Path, events: list[bytes], groups: int) -> str:
    with sqlite3.connect(db) as conn:
        ledger = conn.execute("SELECT count(*) FROM ledger").fetchone()[0]
        notes = conn.execute("SELECT count(*) FROM notification").fetchone()[0]
    distinct = len({json.loads(v)["mid"] for v in events})
    check = "ok" if (ledger, notes) == (distinct, groups) else "MISMATCH"
    return f"{ledger:,} ledger rows for {distinct:,} distinct mids, {notes:,} notifications ({check})"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="about how many events (default 100,000)")
    parser.add_argument("--batch-size", type=int, default=None, help="worker.batch.size (default: the setting's)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each input topic (default 4)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds each consumer may take")
    parser.add_argument("--profile", type=Path, default=None,
                        help="a directory: run the workers under pyinstrument and write a text report per worker")
    args = parser.parse_args()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    print(f"load average at start: {load_average()} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory(prefix="handover-bench-") as tmp, Tansu(Path(tmp) / "tansu.log") as broker:
        groups = groups_for(args.events)
        fixture, events = mixed_stream(groups)
        total = len(events)
        dbs = [Path(tmp) / "one.db", Path(tmp) / "two.db"]
        t0 = time.monotonic()
        for db in dbs:  # the same fixture for each run: the second must not find the first's ledger
            store = SqlStore(f"sqlite:///{db}")
            store.init_schema()
            store.load(fixture)
            store.engine.dispose()
        print(f"{total:,} events; fixture {len(fixture['users']):,} users, {len(fixture['course_batches']):,} "
              f"batches, {len(fixture['assets']):,} assets loaded in {time.monotonic() - t0:.1f}s")

        base = {
            "HANDOVER_KAFKA_BROKER_SERVERS": broker.bootstrap,
            "HANDOVER_JOB_ENV": "bench",
            "HANDOVER_KAFKA_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "HANDOVER_KAFKA_AUTO_OFFSET_RESET": "earliest",  # the events are published before the workers join
            env_name("kafka.topic.partitions"): str(args.partitions),
        }
        if args.batch_size:
            base[env_name("worker.batch.size")] = str(args.batch_size)
        settings = load_settings(environ=base)
        topics = Topics.from_settings(settings)
        ensure_topics(settings, [*topics.inputs, topics.failed], create=True)
        t0 = time.monotonic()
        sink = KafkaEventSink(settings)
        sink.publish_raw(events)
        sink.close()
        print(f"published in {time.monotonic() - t0:.1f}s to {len(topics.inputs)} topics of {args.partitions} "
              f"partitions")

        bare_s, bare_join = bare_consume(broker.bootstrap, topics.inputs, total, args.timeout)
        runs: list[tuple[str, float, float, float, str]] = []
        for count, db in zip((1, 2), dbs, strict=True):
            environ = {**base, "HANDOVER_STORE": f"sqlite:///{db}", env_name("kafka.groupId"): f"bench-{count}"}
            seconds, start, cpu = run_workers(environ, count, total, Path(tmp), args.timeout, args.profile)
            runs.append((f"handover worker x{count} (SQLite)", seconds, start, cpu, check_store(db, events, groups)))

        bare_rate = total / bare_s
        print(f"\n{'':34}{'events/s':>10}{'seconds':>9}{'vs bare':>9}{'CPU s':>8}{'ev/CPU s':>10}   start")
        bare = f"{'bare confluent-kafka loop':34}{bare_rate:>10,.0f}{bare_s:>9.2f}{1:>9.3f}{'':18}"
        print(f"{bare}   join {bare_join:.1f}s")
        rates = []
        for name, seconds, start, cpu, _ in runs:
            rate = total / seconds
            rates.append(rate)
            print(f"{name:34}{rate:>10,.0f}{seconds:>9.2f}{rate / bare_rate:>9.3f}{cpu:>8.2f}{total / cpu:>10,.0f}   "
                  f"{start:.1f}s")
        print(f"two workers / one worker: {rates[1] / rates[0]:.2f}   target >= 5,000 events/s per worker: "
              f"{'met' if rates[0] >= 5000 else 'NOT met'}")
        for name, *_, check in runs:
            print(f"store after {name}: {check}")
        print(f"load average at end: {load_average()}")
        if args.profile is not None:
            print(f"profiles: {args.profile}/worker-*.txt (written when the workers stop)")
        if any("MISMATCH" in check for *_, check in runs):
            raise SystemExit(1)


if __name__ == "__main__":
    main()
