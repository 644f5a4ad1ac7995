"""End to end on the embedded store: ``handover serve`` as a real server process (uvicorn plus the in-process
queue worker); POST a transfer, poll its status until processed, and find the transfer in the store."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.api_support import (
    BODY,
    GATEWAY,
    TRANSFER,
    Process,
    Server,
    assert_transferred_ann_to_ravi,
    loaded_store,
    poll_until_processed,
    serving,
)


@pytest.fixture
def server(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    loaded_store(store_url)
    monkeypatch.delenv("HANDOVER_KAFKA_BROKER_SERVERS", raising=False)
    with serving({"HANDOVER_STORE": store_url, "HANDOVER_AUTH_MODE": "none"}, tmp_path / "serve.log") as running:
        yield running


def test_serve_transfers_end_to_end(server: Server, store_url: str) -> None:
    response = httpx.post(f"{server.base}{GATEWAY}", json=BODY, timeout=10)
    assert response.status_code == 200, response.text
    request_id = response.json()["result"]["requestId"]

    (event,) = poll_until_processed(server.base, request_id)
    assert event["outcome"] == "applied"
    assert event["changed"] == {"course_batches": 2, "assets": 4}
    assert_transferred_ann_to_ravi(store_url)

    # a second request for the same users changes nothing more, and says so
    again = httpx.post(f"{server.base}{TRANSFER}", json=BODY, timeout=10).json()["result"]["requestId"]
    (event,) = poll_until_processed(server.base, again)
    assert (event["outcome"], event["changed"]) == ("applied", {"course_batches": 0, "assets": 0})

    metrics = httpx.get(f"{server.base}/metrics", timeout=5).text
    assert "ownership_transfer_success_count_total 2.0" in metrics
    output = server.output()
    assert "WARNING: authentication is OFF" in output
    assert "events go to the store's event queue" in output


def test_serve_stops_cleanly_on_sigterm(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0


def test_the_access_log_is_written_off_the_event_loop_and_kept_on_stop(server: Server) -> None:
    """uvicorn's access log lines (its format: client, request line, status) are written by a thread of their
    own (``serve_logging``): every request's line is there, and the last ones are not lost when the server
    stops."""
    statuses = [httpx.get(f"{server.base}{TRANSFER}/no-such-request-{i}", timeout=5).status_code for i in range(20)]
    assert statuses == [404] * 20
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    output = server.output()
    lines = [line for line in output.splitlines() if f"GET {TRANSFER}/no-such-request-" in line]
    assert len(lines) == 20, output
    assert all(line.startswith("INFO:") and line.endswith(" 404 Not Found") for line in lines), lines
    assert "Application startup complete." in output  # the server's own lines go through the same thread


def test_serve_without_its_worker_and_the_queue_worker_beside_it(store_url: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve --no-worker`` only queues; ``handover queue-worker`` in its own process processes the queue."""
    loaded_store(store_url)
    monkeypatch.delenv("HANDOVER_KAFKA_BROKER_SERVERS", raising=False)
    env = {"HANDOVER_STORE": store_url, "HANDOVER_AUTH_MODE": "none"}
    with serving({**env, "HANDOVER_QUEUE_WORKER_IN_PROCESS": "false"}, tmp_path / "serve.log") as server:
        request_id = httpx.post(f"{server.base}{TRANSFER}", json=BODY, timeout=10).json()["result"]["requestId"]
        health = httpx.get(f"{server.base}/health", timeout=5).json()["result"]
        assert [c["name"] for c in health["checks"]] == ["store"]  # no worker in this process to check
        assert "no worker in this process: run `handover queue-worker`" in server.output()
        status = httpx.get(f"{server.base}{TRANSFER}/{request_id}", timeout=5).json()["result"]
        assert [e["outcome"] for e in status["events"]] == ["pending"]  # nobody processes it yet

        worker = Process(["queue-worker", "--poll", "0.1"], env, tmp_path / "worker.log")
        try:
            (event,) = poll_until_processed(server.base, request_id)
            assert event["outcome"] == "applied"
            assert_transferred_ann_to_ravi(store_url)
        finally:
            assert worker.stop() == 0, worker.output()
        assert "processing the event queue" in worker.output()
