"""Prometheus metrics (SPEC 6), shared by the worker and the API. Upstream names are kept with ``-`` turned
into ``_`` (Prometheus does not allow ``-``); counters are exposed with the ``_total`` suffix."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from handover.service.ports import Outcome

total_events = Counter("total_events_count", "Events received")
skipped_events = Counter("skipped_event_count", "Events rejected or recognised as duplicates")
ownership_transfer_success = Counter("ownership_transfer_success_count", "Ownership-transfer events applied")
user_pii_update_success = Counter("user_pii_update_success_count", "Delete-user (PII clean-up) events applied")
db_update_success = Counter("db_update_success_count", "Records written (course batches and assets)")
rejected_events = Counter("rejected_event_count", "Events rejected, by reason", ["reason"])
failed_events = Counter("failed_event_count", "Events sent to the failed topic after retries")
duplicate_events = Counter("duplicate_event_count", "Events whose mid was already processed")
processing_seconds = Histogram("event_processing_seconds", "Time to process one event")
consumer_lag = Gauge("consumer_lag", "Messages not yet consumed, by topic and partition", ["topic", "partition"])


def observe(outcome: Outcome, seconds: float) -> None:
    """Count one processed event."""
    total_events.inc()
    processing_seconds.observe(seconds)
    if outcome.outcome == "applied":
        if outcome.action == "ownership-transfer":
            ownership_transfer_success.inc()
        else:
            user_pii_update_success.inc()
        db_update_success.inc(outcome.changed_batches + outcome.changed_assets)
    else:
        skipped_events.inc()
        if outcome.outcome == "duplicate":
            duplicate_events.inc()
        else:
            rejected_events.labels(reason=outcome.reason or "UNKNOWN").inc()


def observe_failure() -> None:
    total_events.inc()
    failed_events.inc()
