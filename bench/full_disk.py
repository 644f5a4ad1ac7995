"""A real full disk under ``handover serve`` on SQLite (issue 13 item 1): the database lives on a small tmpfs
(mounting it needs root); a transfer request of B objects is accepted, then at once a filler file takes all the
free space (the worker is still processing its B events), N one-asset requests are submitted one after another,
then the filler is deleted. Prints the answers during the fault, how many ``/health`` polls
said unhealthy, the time from freeing the disk to a healthy ``/health``, to the first accepted submit and to an
empty queue (nothing ``pending`` or ``processing``), and whether any accepted request is unfinished or any
refused one was recorded.

    sudo .venv/bin/python bench/full_disk.py                 # N = 1000, B = 200
    sudo .venv/bin/python bench/full_disk.py --requests 200 --backlog 50
"""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from read_lock import TRANSFER, body, fixture, init_and_load, serving  # the same users and assets


def fill(path: Path) -> int:
    """Write ``path`` until the file system is full: the bytes written."""
    chunk = b"\0" * 65536
    written = 0
    with path.open("wb", buffering=0) as out:
        while True:
            try:
                written += out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 2]


def queue_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM event_queue GROUP BY status").fetchall())
    finally:
        conn.close()


def wait(check: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``check()`` is true (polled every 50 ms), None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def seconds(value: float | None) -> str:
    return "never (timed out)" if value is None else f"{value:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=200, help="objects of the request accepted before the fault")
    parser.add_argument("--size-mb", type=int, default=16, help="the tmpfs the database lives on")
    args = parser.parse_args()
    n, backlog = args.requests, args.backlog
    if os.geteuid() != 0:
        raise SystemExit("mounting the tmpfs needs root")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        disk = work / "disk"
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m", "tmpfs", str(disk)], check=True)
        db = disk / "handover.db"
        env = {**os.environ, "HANDOVER_STORE": f"sqlite:///{db}", "HANDOVER_AUTH_MODE": "none",
               "HANDOVER_KAFKA_BROKER_SERVERS": ""}
        try:
            init_and_load(env, work, fixture(backlog + n + 1))
            with serving(env, work / "serve.log") as (base, _server):
                http = httpx.Client(base_url=base, timeout=60)

                def healthy() -> bool:
                    try:
                        return http.get("/health").status_code == 200
                    except httpx.HTTPError:
                        return False

                def submit(rid: str, *assets: str) -> int:
                    return http.post(TRANSFER, json=body("org-1", "u-admin", "u-a", "u-b", list(assets)),
                                     headers={"X-Request-ID": rid}).status_code

                answers: dict[str, int] = {}
                if backlog:
                    answers["before"] = submit("before", *(f"do_{n + 1 + i:06d}" for i in range(backlog)))
                counts_before = queue_counts(db)
                filler = disk / "filler"
                filled = fill(filler)
                health: Counter[int] = Counter()
                start = time.monotonic()
                for i in range(n):
                    answers[f"full-{i}"] = submit(f"full-{i}", f"do_{i:06d}")
                    if i % 10 == 0:
                        health[http.get("/health").status_code] += 1
                during = time.monotonic() - start
                counts_during = queue_counts(db)
                filler.unlink()
                to_health = wait(healthy, 120)
                after = time.monotonic()
                code = submit("after", f"do_{n:06d}")
                to_submit = time.monotonic() - after + (to_health or 0)
                answers["after"] = code
                to_empty = wait(lambda: not ({"pending", "processing"} & set(queue_counts(db))), 300)
                unfinished, recorded = [], []
                for rid, status in answers.items():
                    answer = http.get(f"{TRANSFER}/{rid}")
                    if status != 200:
                        if answer.status_code != 404:
                            recorded.append(rid)
                        continue
                    events = answer.json()["result"]["events"]
                    if not events or any(e["outcome"] in ("pending", "failed") for e in events):
                        unfinished.append(rid)
                load = os.getloadavg()
                print(f"tmpfs {args.size_mb} MiB, filler {filled} bytes; {n} submits during the fault in "
                      f"{during:.1f} s")
                print(f"the request of {backlog} objects: {answers.get('before')}; queue when the disk was filled: "
                      f"{counts_before}")
                during_fault = Counter(v for k, v in answers.items() if k.startswith("full-"))
                print(f"answers during the fault: {dict(during_fault)}")
                print(f"/health during the fault (every 10th submit): {dict(health)}")
                print(f"queue at the end of the fault: {counts_during}")
                print(f"after freeing the disk: /health 200 in {seconds(to_health)}; the next submit answered {code} "
                      f"{to_submit:.2f} s after; queue without pending/processing {seconds(to_empty)} after the submit")
                print(f"queue at the end: {queue_counts(db)}; accepted but unfinished: {len(unfinished)}; "
                      f"refused but recorded: {len(recorded)}")
                print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        finally:
            subprocess.run(["umount", str(disk)], check=False)


if __name__ == "__main__":
    main()
