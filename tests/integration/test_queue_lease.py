"""A ``processing`` row a killed process left behind is processed by a running worker within the lease (issue 13
item 1), on SQLite and PostgreSQL: another process claims a queued event and holds its lease (renewed while it
lives); the running worker leaves it alone meanwhile; once that process is killed with SIGKILL, the worker puts
the event back to ``pending`` when the lease lapses and processes it, without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import ProcessingLease, SqlEventQueue
from handover.entrypoints.api import create_app
from tests.e2e.api_support import TRANSFER, body, client, wired

LEASE = 2  # seconds

CLAIMANT = textwrap.dedent(
    """
    import sys, time
    from handover.adapters.sql import SqlStore
    from handover.adapters.sql_queue import ProcessingLease, SqlEventQueue

    queue = SqlEventQueue(SqlStore(sys.argv[1]))
    lease = ProcessingLease(queue, float(sys.argv[2]))
    item = queue.claim_next()
    lease.hold(item.id)
    lease.start()
    print(item.mid, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_claimants_event_is_processed_by_a_running_worker_within_the_lease(store_url: str) -> None:
    app, parts = wired(store_url, {"HANDOVER_QUEUE_PROCESSING_LEASE_SECONDS": str(LEASE)})
    assert isinstance(app.store, SqlStore) and isinstance(parts.sink, SqlEventQueue) and parts.worker is not None
    queue, worker = parts.sink, parts.worker
    with client(create_app(app, parts)) as http:
        assert http.post(TRANSFER, json=body(), headers={"X-Request-ID": "req-orphan"}).status_code == 200
        claimant = subprocess.Popen(
            [sys.executable, "-c", CLAIMANT, store_url, str(LEASE)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert claimant.stdout is not None
            mid = claimant.stdout.readline().strip()
            assert mid, "the claimant claimed nothing"
            assert queue.counts() == {"processing": 1}
            worker.start()
            try:
                time.sleep(2.5 * LEASE)  # the claimant lives and renews its lease: the worker leaves its event alone
                assert queue.counts() == {"processing": 1}
                claimant.send_signal(signal.SIGKILL)
                claimant.wait(10)
                killed = time.monotonic()
                while queue.counts() != {"done": 1} and time.monotonic() - killed < 4 * LEASE:
                    time.sleep(0.05)
                recovered = time.monotonic() - killed
                assert queue.counts() == {"done": 1}, queue.counts()
            finally:
                worker.stop()
        finally:
            if claimant.poll() is None:
                claimant.kill()
                claimant.wait(10)
        # lapsed after LEASE seconds without renewal, seen by the next tick (LEASE / 3 later at most)
        assert recovered < LEASE + LEASE / 3 + 2.0, recovered
        (event,) = http.get(f"{TRANSFER}/req-orphan").json()["result"]["events"]
        assert event["mid"] == mid and event["outcome"] == "applied", event


def test_release_stale_takes_only_lapsed_leases(store_url: str) -> None:
    app, parts = wired(store_url)
    assert isinstance(parts.sink, SqlEventQueue)
    queue = parts.sink
    with client(create_app(app, parts)) as http:
        for n in range(2):
            assert http.post(TRANSFER, json=body(), headers={"X-Request-ID": f"req-{n}"}).status_code == 200
    first, second = queue.claim_next(), queue.claim_next()
    assert first is not None and second is not None
    lease = ProcessingLease(queue, 1)
    lease.hold(second.id)
    time.sleep(1.2)
    assert lease.tick() == 1  # the first lapsed; the second is held (renewed before the release)
    assert queue.counts() == {"pending": 1, "processing": 1}
    assert queue.claim_next() == first
