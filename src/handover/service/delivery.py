"""Process one delivered event with retries: the one way every worker (Kafka, in-process queue, redrive)
turns an event into an outcome or a failure."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tenacity import Retrying, stop_after_attempt, wait_exponential

from handover.service.engine import Engine
from handover.service.ports import Outcome

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """An outcome, or the error that remained after ``attempts`` tries (reason PROCESSING_FAILED) and the
    exception of the last try (for a worker to tell a store fault from a poison event)."""

    outcome: Outcome | None
    attempts: int
    error: str | None = None
    exception: Exception | None = field(default=None, repr=False, compare=False)


def deliver(engine: Engine, data: bytes | str | Any, max_attempts: int, max_wait: float = 5.0) -> Delivery:
    """Any exception is retried with exponential backoff (a store or HTTP outage heals; a bug does not, and
    ends as a failure after ``max_attempts`` instead of crashing the worker)."""
    attempts = 0
    try:
        for attempt in Retrying(
            stop=stop_after_attempt(max_attempts),
            wait=wait_exponential(multiplier=0.1, max=max_wait),
            reraise=True,
        ):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                return Delivery(engine.process(data), attempts)
    except Exception as exc:
        log.warning("event failed after %d attempts: %s", attempts, exc, exc_info=True)
        return Delivery(None, attempts, f"{type(exc).__name__}: {exc}", exc)
    raise AssertionError("unreachable")  # pragma: no cover
