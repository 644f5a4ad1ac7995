"""``handover worker`` as a real process, for the Kafka worker tests on every store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class WorkerProcess:
    """``handover worker`` as a real process; its JSON log lines are kept in a file."""

    def __init__(self, environ: Mapping[str, str], log: Path) -> None:
        """Settings and the store come from ``environ`` (``HANDOVER_*``, ``HANDOVER_STORE``)."""
        self.log = log
        self._file = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "handover.entrypoints.cli", "worker"],
            env={**os.environ, **environ},
            stdout=subprocess.DEVNULL,
            stderr=self._file,
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # librdkafka's own log lines
        return out

    def assigned(self) -> int:
        counts = [rec["assignedPartitions"] for rec in self.lines() if rec.get("msg") == "partitions assigned"]
        revoked = [rec for rec in self.lines() if rec.get("msg") == "partitions revoked"]
        return counts[-1] if counts and len(counts) > len(revoked) else 0

    def tail(self, lines: int = 8) -> str:
        state = "running" if self.process.poll() is None else f"exited with {self.process.returncode}"
        return f"{self.log.name} ({state}):\n" + "\n".join(self.log.read_text().splitlines()[-lines:])

    def outcomes(self) -> Counter[str]:
        return Counter(rec["outcome"] for rec in self.lines() if rec.get("msg") == "event processed")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self._file.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._file.close()
