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
