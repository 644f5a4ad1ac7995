"""Fairness of the embedded queue (issue 13 item 7): through ``handover serve`` on SQLite, one request of N objects
(org-1), then at once a one-asset request of another organisation; prints how long the small one waited to be
processed and how long the large one took. ``--variant two-requests``: org-1 queues two requests of N objects, then
org-2 one of N; prints when each finished and how many of org-1's events were done when org-2's request finished.

    .venv/bin/python bench/fairness.py                  # N = 1000 (the default api.max_objects)
    .venv/bin/python bench/fairness.py --objects 300
    .venv/bin/python bench/fairness.py --variant two-requests --objects 200
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from read_lock import TRANSFER, body, fixture, init_and_load  # the same users and assets
from read_lock import serving as serve


def wait_processed(base: str, request_id: str, timeout: float) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        answer = httpx.get(f"{base}{TRANSFER}/{request_id}", timeout=30)
        events: list[dict[str, Any]] = answer.json()["result"]["events"]
        if all(e["outcome"] != "pending" for e in events):
            return
        time.sleep(0.05)
    raise SystemExit(f"{request_id} still pending after {timeout} s")


@contextmanager
def serving(work: Path, n: int, extra_assets: list[dict[str, Any]]) -> Iterator[str]:
    """``handover serve`` on a fresh SQLite store holding ``fixture(n)`` and ``extra_assets``: its base URL."""
    env = {**os.environ, "HANDOVER_STORE": f"sqlite:///{work / 'handover.db'}", "HANDOVER_AUTH_MODE": "none",
           "HANDOVER_KAFKA_BROKER_SERVERS": "", "HANDOVER_API_MAX_OBJECTS": str(n)}
    doc = fixture(n)
    doc["assets"] += extra_assets
    init_and_load(env, work, doc)
    with serve(env, work / "serve.log") as (base, _server):
        yield base


def submit(base: str, request_id: str, doc: dict[str, Any]) -> None:
    response = httpx.post(f"{base}{TRANSFER}", json=doc, headers={"X-Request-ID": request_id}, timeout=120)
    assert response.is_success, response.text


def one_large(work: Path, n: int) -> None:
    with serving(work, n, []) as base:
        big = body("org-1", "u-admin", "u-a", "u-b", [f"do_{i:06d}" for i in range(n)])
        start = time.monotonic()
        submit(base, "r-big", big)
        submitted = time.monotonic()
        submit(base, "r-small", body("org-2", "u-admin2", "u-c", "u-d", ["do_c"]))
        wait_processed(base, "r-small", 600)
        waited = time.monotonic() - submitted
        wait_processed(base, "r-big", 1200)
        total = time.monotonic() - start
    print(f"one-asset request of org-2 behind a request of {n} objects: processed {waited:.2f} s after submit")
    print(f"the request of {n} objects: all processed {total:.1f} s after its submit")


def two_requests(work: Path, n: int) -> None:
    """org-1 queues two requests of n objects, then org-2 one of n: from the queue's own times (``created_at``, and
    ``updated_at`` when done), when each request finished and how many of org-1's events were processed while
    org-2's were (organisations in turn: about n; requests in turn: about 2n)."""
    theirs = [{"identifier": f"do_c{i:06d}", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
               "visibility": "Default", "createdBy": "u-c", "creator": "C", "originData": None} for i in range(n)]
    with serving(work, 2 * n, theirs) as base:
        submit(base, "r-a1", body("org-1", "u-admin", "u-a", "u-b", [f"do_{i:06d}" for i in range(n)]))
        submit(base, "r-a2", body("org-1", "u-admin", "u-a", "u-b", [f"do_{i:06d}" for i in range(n, 2 * n)]))
        submit(base, "r-b", body("org-2", "u-admin2", "u-c", "u-d", [a["identifier"] for a in theirs]))
        for rid in ("r-a1", "r-a2", "r-b"):
            wait_processed(base, rid, 1800)
    db = sqlite3.connect(work / "handover.db")
    rows = db.execute("SELECT request_id, created_at, updated_at FROM event_queue WHERE status = 'done'").fetchall()
    db.close()
    at = datetime.fromisoformat
    start = min(at(c) for _, c, _ in rows)
    b_queued = min(at(c) for r, c, _ in rows if r == "r-b")
    b_done = max(at(u) for r, _, u in rows if r == "r-b")
    finished = {rid: max(at(u) for r, _, u in rows if r == rid) for rid in ("r-a1", "r-a2", "r-b")}
    before = sum(1 for r, _, u in rows if r != "r-b" and at(u) <= b_queued)
    during = sum(1 for r, _, u in rows if r != "r-b" and b_queued < at(u) <= b_done)
    print(f"org-1: two requests of {n} objects, org-2: one of {n}, queued in that order")
    print("finished after the first was queued: "
          + ", ".join(f"{rid} {(t - start).total_seconds():.1f} s" for rid, t in finished.items()))
    print(f"org-1 events processed before org-2's request was queued: {before}; while its {n} events were processed: "
          f"{during} (organisations in turn: about {n}; requests in turn: about {2 * n})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--variant", choices=["one-large", "two-requests"], default="one-large")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (one_large if args.variant == "one-large" else two_requests)(Path(tmp), args.objects)


if __name__ == "__main__":
    main()
