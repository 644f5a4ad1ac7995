"""Prometheus metrics (SPEC 6), shared by the worker and the API. Upstream names are kept with ``-`` turned
into ``_`` (Prometheus does not allow ``-``); counters are exposed with the ``_total`` suffix.

Both upstream jobs' names are served, each counting what it counts upstream:

- inQuiry ``user-pii-data-updater`` (Sunbird-inQuiry data-pipeline, ``UserPiiUpdaterConfig``):
  ``total-events-count``, ``skipped-event-count``, ``ownership-transfer-success-count``,
  ``user-pii-update-success-count``.
- Lern ``user-ownership-transfer`` (Sunbird-Lern data-pipeline, ``UserOwnershipTransferConfig``, counted in
  ``UserOwnershipTransferFunction`` and ``Event.validateUser``): ``total-transfer-events-count`` (every
  ownership-transfer event the job is given), ``skipped-message-count`` (a transfer event that failed
  validation: its users missing, unknown or outside the organisation; here every rejected transfer event),
  ``api-read-success-count`` (every user read answered 200 by userorg's ``/private/user/v1/read``; here counted
  by the userorg adapter, so it stays 0 on the embedded store, which reads no API), ``success-message-count``
  (declared and registered upstream but never incremented there; here the transfer events applied).
  A duplicate (a ``mid`` already processed; upstream has no such check) counts in the totals only.
- ``db-update-success-count`` is Lern's name (one per Cassandra batch write there); here the records written.
"""

from __future__ import annotations

import os
from collections import Counter as CounterOf
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from handover.domain.events import OWNERSHIP_TRANSFER, Rejection, parse_event
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
# Lern's user-ownership-transfer names
total_transfer_events = Counter("total_transfer_events_count", "Ownership-transfer events received (Lern)")
skipped_messages = Counter("skipped_message_count", "Ownership-transfer events rejected (Lern)")
success_messages = Counter("success_message_count", "Ownership-transfer events applied (Lern)")
api_read_success = Counter("api_read_success_count", "User reads answered HTTP 200 by userorg (Lern)")
# the sunbird:// adapters: every request sent to a store (a CQL statement or batch, an HTTP request, a Cypher
# statement), and every round trip (a wait for answers: requests sent concurrently are one), by store and kind
# (read or write; an Elasticsearch refresh counts as a read, the search's)
store_requests = Counter("store_requests", "Requests sent to a Sunbird store, by store and kind", ["store", "kind"])
store_round_trips = Counter(
    "store_round_trips", "Round trips to a Sunbird store (concurrent requests count once)", ["store", "kind"]
)


def exposition() -> bytes:
    """The Prometheus text format (``prometheus_client.CONTENT_TYPE_LATEST``) of the metrics: this process's, or,
    when ``PROMETHEUS_MULTIPROC_DIR`` is set (``handover serve --workers N`` sets it for its processes), those of
    every process writing there, added up (prometheus_client's multiprocess mode: a gauge then has a ``pid``
    label, and the ``process_*`` and ``python_*`` families and the ``*_created`` series are not served)."""
    return generate_latest(_registry())


def families() -> dict[str, Metric]:
    """The metric families by name (a counter's without ``_total``), added up over processes as ``exposition``."""
    return {family.name: family for family in _registry().collect()}


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def store_call(store: str, kind: str, requests: int = 1) -> None:
    """One round trip to ``store`` carrying ``requests`` requests (sent concurrently)."""
    store_requests.labels(store=store, kind=kind).inc(requests)
    store_round_trips.labels(store=store, kind=kind).inc()


def observe(outcome: Outcome, seconds: float) -> None:
    """Count one processed event."""
    observe_many([outcome], seconds)


def observe_many(outcomes: Sequence[Outcome], seconds: float) -> None:
    """Count processed events (a micro-batch), each taking ``seconds``: every counter incremented once, by the
    number of its events, rather than once per event."""
    tally: CounterOf[str] = CounterOf()
    rejected: CounterOf[str] = CounterOf()
    for outcome in outcomes:
        processing_seconds.observe(seconds)
        transfer = outcome.action == OWNERSHIP_TRANSFER
        if outcome.outcome == "applied":
            tally["transfer_applied" if transfer else "pii_applied"] += 1
            tally["records"] += outcome.changed_batches + outcome.changed_assets
        elif outcome.outcome == "duplicate":
            tally["duplicate"] += 1
        else:
            rejected[outcome.reason or "UNKNOWN"] += 1
            tally["transfer_rejected"] += transfer
        tally["transfer"] += transfer
    if not outcomes:
        return
    total_events.inc(len(outcomes))
    skipped = tally["duplicate"] + sum(rejected.values())
    for counter, n in (
        (total_transfer_events, tally["transfer"]),
        (ownership_transfer_success, tally["transfer_applied"]),
        (success_messages, tally["transfer_applied"]),
        (user_pii_update_success, tally["pii_applied"]),
        (db_update_success, tally["records"]),
        (skipped_events, skipped),
        (duplicate_events, tally["duplicate"]),
        (skipped_messages, tally["transfer_rejected"]),
    ):
        if n:
            counter.inc(n)
    for reason, n in rejected.items():
        rejected_events.labels(reason=reason).inc(n)


def observe_failure(event: bytes | str | Any = None) -> None:
    """Count one event that still failed after its retries (``event``: the event as delivered)."""
    total_events.inc()
    failed_events.inc()
    parsed = parse_event(event) if event is not None else None
    if parsed is not None and not isinstance(parsed, Rejection) and parsed.action == OWNERSHIP_TRANSFER:
        total_transfer_events.inc()
