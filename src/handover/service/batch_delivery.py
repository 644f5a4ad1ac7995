"""Micro-batched delivery: several events in one unit of work, with ``delivery.deliver`` as the fall-back.

Workers that take events in bulk (the Kafka worker, redrive) call ``deliver_batch``: the whole batch is
processed in one transaction (one commit instead of one per event); if that raises, nothing of it was
committed and each event goes through ``deliver`` on its own, with its retries, so that one poison event
ends as a failure of its own and never takes the rest of the batch with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from handover.service.delivery import Delivery, deliver
from handover.service.engine import Engine

log = logging.getLogger(__name__)


def deliver_batch(
    engine: Engine,
    items: Sequence[bytes | str | Any],
    max_attempts: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Delivery]:
    """One ``Delivery`` per item, in order; the effects of each are durable on return. When ``should_stop()``
    turns true (asked before each item but the first: a stop or a time budget spent), the deliveries of the
    items done so far (a prefix); the caller delivers the rest later."""
    if not items:
        return []
    if len(items) > 1:
        try:
            return [Delivery(outcome, 1) for outcome in engine.process_batch(items, should_stop)]
        except Exception as exc:
            log.warning(
                "batch of %d events failed (%s: %s); processing them one at a time",
                len(items), type(exc).__name__, exc,
            )
    out: list[Delivery] = []
    for item in items:
        if out and should_stop():
            break
        out.append(deliver(engine, item, max_attempts))
    return out
