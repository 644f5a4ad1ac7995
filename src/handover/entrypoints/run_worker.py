"""``handover worker`` (SPEC 6): JSON logs, signal handling, and the Kafka consumer that ``bootstrap`` wires
(``adapters.kafka_worker.Worker``: micro-batches, failed topic, commits, ``/metrics`` and ``/health``).
SIGTERM/SIGINT finish the event in hand, commit and exit 0."""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import UTC, datetime
from typing import Any

from handover.bootstrap import App, kafka_worker
from handover.config import ConfigError

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every ``extra=`` field (``mid``, ...). A record
    with ``extra={"lines": [...]}`` (the worker's per-event lines of a micro-batch) is written as one line per
    item, each item's fields (its ``msg`` too) over the record's."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        lines = None
        for key, value in record.__dict__.items():
            if key == "lines" and isinstance(value, list):
                lines = value
            elif key not in _STANDARD_ATTRS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if lines is not None:
            return "\n".join(json.dumps({**doc, **line}, ensure_ascii=False, default=str) for line in lines)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_json_logging(level: str) -> None:
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ConfigError(f"log.level: expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)


def run(app: App) -> int:
    """``handover worker``: JSON logs, signal handling, the loop. The exit code."""
    configure_json_logging(app.settings["log.level"])
    worker = kafka_worker(app)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    return worker.run()
