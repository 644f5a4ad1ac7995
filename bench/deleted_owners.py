"""What the deleted-owner report (SPEC 12) costs on the SQL store as the number of users and records grows.

A store with ``--owners`` deleted owners in one organisation, each with ``--records`` course batches (created) and
``--records`` configured assets (``tests/report_fixture.py``, plus one mentored batch per owner). Printed: the
whole report streamed (``handover report deleted-owners``' reading: rows, seconds, rows/s), the console's first page
of 20 owners with counts, an API page of 100 rows from the start and one from the middle of the last owner's rows
(a cursor resumes by reading that user's rows again), and the largest Python heap held while streaming
(tracemalloc after a full collection every 2,000 rows; with tracemalloc on, so the stream is timed apart).

    .venv/bin/python bench/deleted_owners.py                               # SQLite, 200 owners x 200 + 200
    .venv/bin/python bench/deleted_owners.py --owners 1000 --records 50 --store postgresql://127.0.0.1/test
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.report_fixture import report_fixture  # noqa: E402

from handover.adapters.sql import SqlStore  # noqa: E402
from handover.config import load_settings  # noqa: E402
from handover.service.reports import DeletedOwnersReport, encode_cursor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--store", help="a store URL (default: a new SQLite file); the schema must be empty")
    args = parser.parse_args()
    url = args.store or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    store = SqlStore(url)
    store.init_schema()
    store.load(report_fixture(owners=args.owners, records=args.records))
    report = DeletedOwnersReport(store.read_only, load_settings(None, environ={}).policy(), 1000)
    per_owner = 2 * args.records + 1

    begun = time.perf_counter()
    rows = sum(1 for _ in report.rows("org-r"))
    seconds = time.perf_counter() - begun
    assert rows == args.owners * per_owner, rows
    print(f"store {url.split('://')[0]}, {args.owners} owners x {per_owner} rows")
    print(f"whole report: {rows} rows in {seconds:.2f} s ({rows / seconds:,.0f} rows/s)")

    begun = time.perf_counter()
    page = report.owners("org-r", "", 20, 5)
    print(f"console page of {len(page.owners)} owners with counts: {time.perf_counter() - begun:.3f} s")
    begun = time.perf_counter()
    report.page("org-r", None, 100)
    print(f"API page of 100 rows from the start: {time.perf_counter() - begun:.3f} s")
    last = f"r-gone-{args.owners - 1:05d}"
    begun = time.perf_counter()
    report.page("org-r", encode_cursor(last, per_owner // 2), 100)
    print(f"API page of 100 rows from the middle of the last owner: {time.perf_counter() - begun:.3f} s")

    gc.collect()
    tracemalloc.start()
    held = 0
    for count, _ in enumerate(report.rows("org-r"), 1):
        if count % 2000 == 0:
            gc.collect()
            held = max(held, tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    print(f"largest heap held while streaming: {held / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
