"""End to end on the embedded store: ``handover serve`` as a real server process (uvicorn plus the in-process
queue worker); POST a transfer, poll its status until processed, and find the transfer in the store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handover.adapters.sql import SqlStore
from tests.e2e.api_support import BODY, GATEWAY, TRANSFER, loaded_store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, process: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.process, self.base, self.log = process, base, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def server(store_url: str, tmp_path: Path) -> Iterator[Server]:
    loaded_store(store_url)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "HANDOVER_STORE": store_url, "HANDOVER_AUTH_MODE": "none", "COLUMNS": "200"}
    env.pop("HANDOVER_KAFKA_BROKER_SERVERS", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "handover.entrypoints.cli", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    running = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited early:\n{running.output()}"
            try:
                if httpx.get(f"{running.base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve did not come up:\n{running.output()}"
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def poll_until_processed(base: str, request_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{base}{TRANSFER}/{request_id}", timeout=5)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["result"]["events"]
        if all(e["outcome"] != "pending" for e in events):
            return events
        assert time.monotonic() < deadline, f"still pending: {events}"
        time.sleep(0.1)


def test_serve_transfers_end_to_end(server: Server, store_url: str) -> None:
    response = httpx.post(f"{server.base}{GATEWAY}", json=BODY, timeout=10)
    assert response.status_code == 200, response.text
    request_id = response.json()["result"]["requestId"]

    (event,) = poll_until_processed(server.base, request_id)
    assert event["outcome"] == "applied"
    assert event["changed"] == {"course_batches": 2, "assets": 4}

    dump = {name: list(rows) for name, rows in SqlStore(store_url).dump_sections()}
    batches = {b["batchid"]: b for b in dump["course_batches"]}
    assert batches["b-101"]["createdby"] == "u-ravi"
    assert batches["b-101"]["mentors"] == ["u-ravi", "u-meera"]
    assert batches["b-102"]["mentors"] == ["u-ravi"]
    assert batches["b-201"]["createdby"] == "u-ann"  # completed: left alone
    assets = {a["identifier"]: a for a in dump["assets"]}
    assert {i for i, a in assets.items() if a["createdBy"] == "u-ravi"} == {
        "do_q1",
        "do_q1.img",
        "do_qs1",
        "do_q2",
        "do_q3",
    }
    assert assets["do_q1"]["creator"] == "Ravi Kumar"
    assert assets["do_c1"]["createdBy"] == "u-ann"  # Content is not a configured type

    # a second request for the same users changes nothing more, and says so
    again = httpx.post(f"{server.base}{TRANSFER}", json=BODY, timeout=10).json()["result"]["requestId"]
    (event,) = poll_until_processed(server.base, again)
    assert (event["outcome"], event["changed"]) == ("applied", {"course_batches": 0, "assets": 0})

    metrics = httpx.get(f"{server.base}/metrics", timeout=5).text
    assert "ownership_transfer_success_count_total 2.0" in metrics

    assert "WARNING: authentication is OFF" in server.output()


def test_serve_stops_cleanly_on_sigterm(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
