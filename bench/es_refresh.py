"""What it costs to make a course-batch write searchable before the next event searches (issue 11).

Each round is one ownership transfer as the sunbird:// store does it: a bulk partial update of ``--docs``
documents to a new ``createdBy`` (handover's ``CourseBatchIndex.write``), then the search of the next event for
that user (``search_pages``). Four ways, ``--rounds`` rounds each, with a random pause of 0-300 ms between rounds
so that the rounds do not keep step with the index's refresh clock:

- ``false``: no refresh (before issue 11): how often the next search misses the write;
- ``wait_for``: ``_bulk?refresh=wait_for`` (returns at the next scheduled refresh);
- ``true``: ``_bulk?refresh=true`` (refreshes the touched shards at once);
- ``refresh+search``: no refresh on the write, ``POST /{index}/_refresh`` before the search.

Printed per way: median / 90th percentile / max of the write, the refresh call and the search (ms), and how
many rounds found every document. Against ``--es URL``, or a noida-db emulator started here (dev extra).

    .venv/bin/python bench/es_refresh.py                       # noida-db, 40 rounds of 20 documents
    .venv/bin/python bench/es_refresh.py --es http://127.0.0.1:9200 --rounds 100 --docs 50
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handover.adapters.elasticsearch import CourseBatchIndex, Refresh  # noqa: E402
from handover.domain.model import CourseBatch  # noqa: E402
from handover.domain.rules import BatchUpdate  # noqa: E402

WAYS: tuple[tuple[str, Refresh, bool], ...] = (
    ("false", "false", False),
    ("wait_for", "wait_for", False),
    ("true", "true", False),
    ("refresh+search", "false", True),
)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    begun = time.perf_counter()
    result = call()
    return (time.perf_counter() - begun) * 1000, result


def figures(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.median(ordered):7.1f} {p90:7.1f} {ordered[-1]:7.1f}"


def run(es_url: str, rounds: int, docs: int) -> None:
    from tests.sunbird_deployment import index_definition

    # refresh mode wait_for: search_pages itself never refreshes; each way passes its own write refresh
    index = CourseBatchIndex(es_url, f"bench-refresh-{uuid.uuid4().hex[:8]}", timeout=30, refresh="wait_for")
    definition = index_definition()
    index.create_index(definition["mappings"], definition["settings"])
    try:
        version = index.server_version()
        settings = index._request("GET", f"/{index.index}/_settings", "reading settings")
        interval = settings[index.index]["settings"]["index"].get("refresh_interval", "default (1s)")
        print(f"{version} at {es_url}; index.refresh_interval: {interval}; {rounds} rounds of {docs} documents")
        print(f"{'way':16} {'write ms (med p90 max)':>24} {'refresh ms':>24} {'search ms':>24} found all")
        for name, mode, refresh_first in WAYS:
            batches = [
                CourseBatch("c-1", f"b-{name}-{r}-{i:04d}", f"batch {i}", status=1, createdby="seed")
                for r in range(rounds)
                for i in range(docs)
            ]
            index.index_batches(batches, refresh="true")
            writes, refreshes, searches, complete = [], [], [], 0
            for r in range(rounds):
                time.sleep(random.uniform(0, 0.3))
                user = f"u-{name}-{r}"
                updates = [BatchUpdate("c-1", f"b-{name}-{r}-{i:04d}", user, None, ()) for i in range(docs)]
                ms, _ = timed(lambda: index.write(updates, refresh=mode))  # noqa: B023
                writes.append(ms)
                if refresh_first:
                    ms, _ = timed(index.refresh)
                    refreshes.append(ms)
                ms, pages = timed(lambda: list(index.search_pages(user, [1], 1000)))  # noqa: B023
                searches.append(ms)
                complete += sum(len(p) for p in pages) == docs
            print(
                f"{name:16} {figures(writes):>24} {figures(refreshes):>24} {figures(searches):>24} "
                f"{complete}/{rounds}"
            )
        emulated_wait(index)
    finally:
        index.delete_index()
        index.close()


def emulated_wait(index: CourseBatchIndex, interval: str = "5s", rounds: int = 5) -> None:
    """Whether the server makes ``wait_for`` wait for the next scheduled refresh (Elasticsearch does: up to
    ``index.refresh_interval``) or refreshes at once: the write time with a long interval."""
    index._request("PUT", f"/{index.index}/_settings", "setting refresh_interval",
                   f'{{"index": {{"refresh_interval": "{interval}"}}}}'.encode())
    times = []
    for r in range(rounds):
        update = [BatchUpdate("c-1", f"b-wait_for-{r}-0000", f"u-slow-{r}", None, ())]
        ms, _ = timed(lambda: index.write(update, refresh="wait_for"))  # noqa: B023
        times.append(ms)
    print(f"wait_for with index.refresh_interval {interval}: write ms (med p90 max) {figures(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--es", help="Elasticsearch URL (default: start a noida-db emulator)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--docs", type=int, default=20, help="documents per write")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.es
        if url is None:
            from tests.servers import noida

            problem = noida.problem()
            if problem:
                sys.exit(problem)
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(noida.noida_server(directory))
            server.start(60)
            url = f"http://127.0.0.1:{server.port}"
        run(url, args.rounds, args.docs)


if __name__ == "__main__":
    main()
