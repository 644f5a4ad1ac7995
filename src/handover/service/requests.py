"""API requests: what became of each event a request produced (SPEC 5, the status endpoint).

``event_status`` is the one place that turns an event's ledger row (or its absence) into the status entry the API,
the console and the CLI show; every request log (SQL store, Sunbird keyspace) answers through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from handover.domain.events import Reason

PENDING = "pending"  # not processed yet
FAILED = "failed"  # processing gave up after max_attempts (embedded queue)


def event_status(
    mid: str,
    asset_information: Mapping[str, Any] | None,
    outcome: str | None = None,
    reason: str | None = None,
    skipped: Iterable[str] = (),
    changed_batches: int = 0,
    changed_assets: int = 0,
    *,
    failed: bool = False,
) -> dict[str, Any]:
    """``{"mid", "assetInformation", "outcome", "reason", "skipped", "changed"}``. ``outcome`` and the rest are the
    ledger row's when the event was processed (``outcome`` None: not processed); then ``failed`` when processing
    gave up, else ``pending``."""
    if outcome is None:
        outcome = FAILED if failed else PENDING
        reason = Reason.PROCESSING_FAILED.value if failed else None
        skipped, changed_batches, changed_assets = (), 0, 0
    return {
        "mid": mid,
        "assetInformation": dict(asset_information or {}),
        "outcome": outcome,
        "reason": reason,
        "skipped": sorted(skipped),
        "changed": {"course_batches": changed_batches, "assets": changed_assets},
    }
