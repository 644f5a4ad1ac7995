"""``scripts/run.sh`` on a first run and after (issue 14 point 6): the examples go only into a new store, the
console's URL is printed, ``/`` leads to the console, and a second ``run.sh`` while one runs stops on the busy
port, naming ``HANDOVER_PORT``, without putting the example records back into the live store; a restart keeps
the store as it is."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import EXAMPLES, ROOT
from tests.e2e.api_support import free_port

TRANSFER_LINE = (EXAMPLES / "events.jsonl").read_text().splitlines()[1]  # everything of u-ann to u-ravi


def handover(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "handover.entrypoints.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(["bash", str(ROOT / "scripts" / "run.sh")], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Until ``/health`` answers 200 (the first start may install into .venv first)."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"run.sh exited early:\n{log.read_text(errors='replace')}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        assert time.monotonic() < deadline, f"run.sh did not come up:\n{log.read_text(errors='replace')}"
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # run.sh execs serve: this is the server
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_examples_only_into_a_new_store_and_a_second_start_on_a_busy_port(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HANDOVER_STORE": f"sqlite:///{tmp_path / 'handover.db'}", "HANDOVER_PORT": str(port),
           "HANDOVER_EXAMPLES": str(EXAMPLES), "COLUMNS": "200"}
    base = f"http://127.0.0.1:{port}"
    first = start(env, tmp_path / "first.log")
    try:
        wait_healthy(base, first, tmp_path / "first.log")
        log = (tmp_path / "first.log").read_text()
        assert "new store: 5 users, 3 course_batches, 6 assets loaded" in log
        assert f"console: http://127.0.0.1:{port}/admin" in log
        home = httpx.get(f"{base}/", timeout=5)
        assert home.status_code == 307 and home.headers["location"] == "/admin"
        assert httpx.get(f"{base}/", timeout=5, follow_redirects=True).url.path.startswith("/admin")

        events = tmp_path / "transfer.jsonl"
        events.write_text(TRANSFER_LINE + "\n")
        assert handover("replay", str(events), env=env).returncode == 0
        transferred = handover("dump", env=env).stdout
        assert '"createdBy": "u-ravi"' in transferred

        second = subprocess.run(["bash", str(ROOT / "scripts" / "run.sh")], env=env, capture_output=True, text=True,
                                timeout=120)

        assert second.returncode == 2, second.stderr
        assert f"port {port} on 127.0.0.1 is taken" in second.stderr and "HANDOVER_PORT" in second.stderr
        assert "not loaded: the store is not new" in second.stderr
        assert handover("dump", env=env).stdout == transferred  # the live store kept its transfer
        assert first.poll() is None and httpx.get(f"{base}/health", timeout=5).status_code == 200
    finally:
        stop(first)

    again = start(env, tmp_path / "again.log")  # a restart: the store as it was
    try:
        wait_healthy(base, again, tmp_path / "again.log")
        assert "not loaded: the store is not new" in (tmp_path / "again.log").read_text()
        assert handover("dump", env=env).stdout == transferred
    finally:
        stop(again)
