"""The SQL store heals by itself after a fault (issue 13 items 1 and 4), on SQLite and PostgreSQL: while every
new connection is read-only (what an unwritable database file gives), submits are a clear 503 that leave nothing
pending and ``/health`` says unhealthy; once the fault ends, the connections opened during it are dropped and
submits, ``/health`` and the in-process worker work again within seconds; an event the worker had in hand goes
back to ``pending`` (no attempt used up) and is processed after the fault, never left ``processing``."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import QueuedEvent, SqlEventQueue, StoreUnavailable
from handover.entrypoints.api import create_app
from tests.e2e.api_support import TRANSFER, body, client, wired
from tests.store_faults import database_full, read_only_connections


def test_submits_and_health_heal_after_read_only_connections(store_url: str) -> None:
    app, parts = wired(store_url)
    assert isinstance(app.store, SqlStore) and isinstance(parts.sink, SqlEventQueue)
    with client(create_app(app, parts)) as http:
        assert http.get("/health").status_code == 200
        with read_only_connections(app.store):
            for n in range(5):
                refused = http.post(TRANSFER, json=body(), headers={"X-Request-ID": f"req-fault-{n}"})
                assert refused.status_code == 503, refused.text
                assert http.get(f"{TRANSFER}/req-fault-{n}").status_code in (404, 503)  # never pending
            health = http.get("/health")
            assert health.status_code == 503 and health.json()["result"]["checks"][0]["healthy"] is False
        ended = time.monotonic()
        assert http.get("/health").status_code == 200  # the read-only connections were dropped on the error
        accepted = http.post(TRANSFER, json=body(), headers={"X-Request-ID": "req-after"})
        assert accepted.status_code == 200, accepted.text
        assert time.monotonic() - ended < 5
        assert parts.sink.counts() == {"pending": 1}  # only the request accepted after the fault
        for n in range(5):
            assert http.get(f"{TRANSFER}/req-fault-{n}").status_code == 404


def test_the_event_in_hand_during_a_fault_is_processed_after_it(store_url: str) -> None:
    app, parts = wired(store_url)
    assert isinstance(app.store, SqlStore) and isinstance(parts.sink, SqlEventQueue) and parts.worker is not None
    with client(create_app(app, parts)) as http:
        parts.worker.stop()
        assert http.post(TRANSFER, json=body(), headers={"X-Request-ID": "req-held"}).status_code == 200
        queue, worker = parts.sink, parts.worker
        claim = queue.claim_batch
        with ExitStack() as fault:

            def claim_then_fail(limit: int) -> list[QueuedEvent]:  # the fault starts once the event is in hand
                items = claim(limit)
                fault.enter_context(read_only_connections(app.store))
                return items

            queue.claim_batch = claim_then_fail  # type: ignore[method-assign]
            with pytest.raises(StoreUnavailable):
                worker.run_once()
            queue.claim_batch = claim  # type: ignore[method-assign]
            with pytest.raises(Exception):  # noqa: B017  (still read-only: the queue cannot be read either)
                worker.run_once()
        assert worker.drain() == 1  # after the fault: released to pending, then processed
        (event,) = http.get(f"{TRANSFER}/req-held").json()["result"]["events"]
        assert event["outcome"] == "applied", event
        assert queue.counts() == {"done": 1}


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_full_database_heals(tmp_path: Path) -> None:
    """SQLite's own "database or disk is full" (``PRAGMA max_page_count``) while submits arrive and the worker
    runs: each submit is accepted or a clear 503 (never pending), ``/health`` is unhealthy during the fault; once
    the database can grow again, submits and ``/health`` work within seconds and every accepted request finishes,
    the one of 30 events accepted just before the fault too (nothing left ``pending`` or ``processing``)."""
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}")
    assert isinstance(app.store, SqlStore) and isinstance(parts.sink, SqlEventQueue) and parts.worker is not None
    queue, worker = parts.sink, parts.worker
    backlog = body(objects=[{"identifier": f"do_{i:05d}", "objectType": "Question"} for i in range(30)])
    answers: dict[str, int] = {}
    with client(create_app(app, parts)) as http:
        answers["req-backlog"] = http.post(TRANSFER, json=backlog, headers={"X-Request-ID": "req-backlog"}).status_code
        assert answers["req-backlog"] == 200
        try:
            with database_full(app.store):
                worker.start()  # its events are processed during the fault, as far as they fit
                for n in range(40):
                    rid = f"req-full-{n}"
                    answers[rid] = http.post(TRANSFER, json=body(), headers={"X-Request-ID": rid}).status_code
                health = http.get("/health")
                assert health.status_code == 503, health.text
                assert health.json()["result"]["checks"][0] == {"name": "store", "healthy": False,
                                                                "error": "StoreError"}
            assert set(answers.values()) <= {200, 503} and 503 in answers.values(), answers
            assert _wait_for(lambda: http.get("/health").status_code == 200, 5)
            after = http.post(TRANSFER, json=body(), headers={"X-Request-ID": "req-after"})
            assert after.status_code == 200, after.text
            answers["req-after"] = 200
            assert _wait_for(lambda: not ({"pending", "processing"} & set(queue.counts())), 30), queue.counts()
        finally:
            worker.stop()
        assert set(queue.counts()) == {"done"}, queue.counts()
        for rid, code in answers.items():
            status = http.get(f"{TRANSFER}/{rid}")
            if code == 503:
                assert status.status_code == 404, (rid, status.text)  # refused: never recorded
                continue
            assert status.status_code == 200, (rid, status.text)
            outcomes = {e["outcome"] for e in status.json()["result"]["events"]}
            assert outcomes and "pending" not in outcomes and "failed" not in outcomes, (rid, outcomes)


@pytest.mark.parametrize("error", ["store", "data"])
def test_a_store_fault_that_heals_during_the_tries_is_not_a_failed_event(tmp_path: Path, error: str) -> None:
    """The worker's tries of an event all failed on the store (SQLite's "database or disk is full") and the store
    healed before the worker asked whether it can write: one more round of tries, not a failed event. An error of
    the event's own (here a ``ValueError``) still fails it after its tries, with no extra round."""
    import sqlalchemy as sa

    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}", {"HANDOVER_MAX_ATTEMPTS": "2"})
    assert isinstance(parts.sink, SqlEventQueue) and parts.worker is not None
    engine = parts.worker._engine
    calls: list[str] = []
    real_batch = engine.process_batch

    def fault() -> Exception:
        if error == "data":
            return ValueError("bad data")
        return sa.exc.OperationalError("COMMIT", {}, Exception("database or disk is full"))

    def process_batch(items: object, *args: object, **kwargs: object) -> object:
        calls.append("try")  # a micro-batch of one event: each try of the event
        if len(calls) <= 2:  # the fault lasts for the two tries of the first round
            raise fault()
        return real_batch(items, *args, **kwargs)  # type: ignore[arg-type]

    engine.process_batch = process_batch  # type: ignore[method-assign]
    with client(create_app(app, parts)) as http:
        assert http.post(TRANSFER, json=body(), headers={"X-Request-ID": "req-heals"}).status_code == 200
        assert parts.worker.run_once() == 1
        outcomes = {e["outcome"] for e in http.get(f"{TRANSFER}/req-heals").json()["result"]["events"]}
    if error == "store":
        assert (len(calls), outcomes, parts.sink.counts()) == (3, {"applied"}, {"done": 1})
    else:
        assert (len(calls), outcomes, parts.sink.counts()) == (2, {"failed"}, {"failed": 1})
