"""The worker's JSON log: one object per line, also for the per-event lines of a micro-batch (one record)."""

from __future__ import annotations

import io
import json
import logging

from handover.entrypoints.run_worker import JsonFormatter


def test_a_record_with_lines_is_written_as_one_json_line_per_item() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.Logger("handover.worker.test")
    log.addHandler(handler)
    lines = [
        {"msg": "event processed", "mid": "LP.1", "outcome": "applied", "skipped": [], "offset": 7},
        {"msg": "event processed", "mid": "LP.2", "outcome": "rejected", "reason": "UNKNOWN_USER", "offset": 8},
    ]
    log.info("%d events processed", 2, extra={"lines": lines, "group": "g"})
    log.info("worker started", extra={"group": "g"})
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [{k: v for k, v in d.items() if k != "ts"} for d in docs] == [
        {"level": "info", "logger": "handover.worker.test", "group": "g", **lines[0]},
        {"level": "info", "logger": "handover.worker.test", "group": "g", **lines[1]},
        {"level": "info", "logger": "handover.worker.test", "msg": "worker started", "group": "g"},
    ]
    assert docs[0]["ts"] == docs[1]["ts"]
