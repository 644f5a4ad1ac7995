"""The Prometheus counters of both upstream jobs: inQuiry's and Lern's names, each counting what it counts
upstream (``handover.metrics`` docstring)."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import REGISTRY

from handover import metrics
from handover.adapters.sql import SqlStore
from handover.bootstrap import bootstrap
from tests.streams import mixed_stream

NAMES = (
    "total_events_count", "skipped_event_count", "ownership_transfer_success_count",
    "user_pii_update_success_count", "failed_event_count",
    "total_transfer_events_count", "skipped_message_count", "success_message_count", "api_read_success_count",
)


def values() -> dict[str, float]:
    return {name: REGISTRY.get_sample_value(f"{name}_total") or 0.0 for name in NAMES}


def test_lern_and_inquiry_counters_count_what_they_count_upstream(tmp_path: Path) -> None:
    fixture, events = mixed_stream(10)  # per group: 2 transfers + 1 redelivered, 1 delete-user; group 0: 2 bad
    url = f"sqlite:///{tmp_path / 'h.db'}"
    store = SqlStore(url)
    store.init_schema()
    store.load(fixture)
    engine = bootstrap(url).engine()
    before = values()
    for value in events:
        metrics.observe(engine.process(value), 0.001)
    transfer = next(v for v in events if json.loads(v)["edata"]["action"] == "ownership-transfer")
    metrics.observe_failure(transfer)  # a transfer that still failed after its retries
    metrics.observe_failure(b"not json")
    got = {name: values()[name] - before[name] for name in NAMES}
    assert got == {
        # inQuiry's
        "total_events_count": 42 + 2, "skipped_event_count": 10 + 2, "ownership_transfer_success_count": 20,
        "user_pii_update_success_count": 10, "failed_event_count": 2,
        # Lern's: every transfer event; rejected ones; applied ones (duplicates only in the total)
        "total_transfer_events_count": 32 + 1, "skipped_message_count": 2, "success_message_count": 20,
        "api_read_success_count": 0,  # the embedded store reads no userorg API
    }


def test_a_micro_batch_counts_as_its_events_one_by_one(tmp_path: Path) -> None:
    """``observe_many`` (the Kafka worker, once per micro-batch) counts what ``observe`` counts event by event."""
    fixture, events = mixed_stream(10)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    store = SqlStore(url)
    store.init_schema()
    store.load(fixture)
    outcomes = [bootstrap(url).engine().process(value) for value in events]
    names = (*NAMES, "db_update_success_count", "duplicate_event_count")

    def counts() -> dict[str, float]:
        out = {name: REGISTRY.get_sample_value(f"{name}_total") or 0.0 for name in names}
        for reason in ("MISSING_FIELD", "UNKNOWN_USER"):
            out[reason] = REGISTRY.get_sample_value("rejected_event_count_total", {"reason": reason}) or 0.0
        out["seconds"] = REGISTRY.get_sample_value("event_processing_seconds_count") or 0.0
        return out

    start = counts()
    for outcome in outcomes:
        metrics.observe(outcome, 0.001)
    one_by_one = {k: v - start[k] for k, v in counts().items()}
    middle = counts()
    metrics.observe_many(outcomes, 0.001)
    together = {k: v - middle[k] for k, v in counts().items()}
    assert together == one_by_one
    assert one_by_one["total_events_count"] == len(events) and one_by_one["MISSING_FIELD"] == 1
