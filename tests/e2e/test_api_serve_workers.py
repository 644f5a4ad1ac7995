"""``handover serve --workers N`` (setting ``api.workers``) as real processes: N serving processes started and
watched by uvicorn's supervisor, the queue's worker in the parent, /metrics adding up every process's counters
(prometheus_client's multiprocess mode), on SQLite and on the PostgreSQL server."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.api_support import (
    BODY,
    GATEWAY,
    TRANSFER,
    Process,
    Server,
    assert_transferred_ann_to_ravi,
    free_port,
    loaded_store,
    poll_until_processed,
)

STARTED = "Application startup complete."


def serving_processes(parent: int) -> list[psutil.Process]:
    """The serving processes uvicorn's supervisor spawned (not multiprocessing's resource tracker)."""
    return [p for p in psutil.Process(parent).children() if "spawn_main" in " ".join(p.cmdline())]


def wait_for(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def counter(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``metrics`` (0 when it is not there)."""
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}(?:{{(.*)}})? (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or "")) == labels:
            return float(match.group(2))
    return 0.0


@pytest.fixture
def two(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    loaded_store(store_url)
    monkeypatch.delenv("HANDOVER_KAFKA_BROKER_SERVERS", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    env = {"HANDOVER_STORE": store_url, "HANDOVER_AUTH_MODE": "none", "HANDOVER_API_WORKERS": "2",
           "TMPDIR": str(tmp_path)}  # where serve makes its metrics directory
    server = Server(env, tmp_path / "serve.log")
    try:
        server.wait_healthy()
        wait_for(lambda: server.output().count(STARTED) == 2, "both serving processes started")
        yield server
    finally:
        server.stop()


def test_two_serving_processes_transfer_and_count_together(two: Server, store_url: str, tmp_path: Path) -> None:
    assert len(serving_processes(two.process.pid)) == 2
    assert "2 serving processes (api.workers)" in two.output()
    response = httpx.post(f"{two.base}{GATEWAY}", json=BODY, timeout=10)
    assert response.status_code == 200, response.text
    (event,) = poll_until_processed(two.base, response.json()["result"]["requestId"])  # the parent's worker
    assert (event["outcome"], event["changed"]) == ("applied", {"course_batches": 2, "assets": 4})
    assert_transferred_ann_to_ravi(store_url)

    # each request on a connection of its own: the two processes share the listening socket
    statuses = [httpx.get(f"{two.base}{TRANSFER}/no-such-request-{i}", timeout=5).status_code for i in range(20)]
    assert statuses == [404] * 20
    metrics = httpx.get(f"{two.base}/metrics", timeout=5).text
    # whichever process answers /metrics, it counts every process's requests and the parent's worker
    assert counter(metrics, "api_requests_total", method="GET", route="/v1/user/ownership/transfer/{requestId}",
                   status="404") == 20, metrics
    assert counter(metrics, "ownership_transfer_success_count_total") == 1, metrics
    assert [p.name for p in tmp_path.glob("handover-metrics-*")] != []

    # the console's counters are every process's too (the events were counted by the parent's worker)
    page = httpx.get(f"{two.base}/admin/counters", timeout=5, follow_redirects=True).text
    assert re.search(r'<dd id="processed">1</dd>', page), page
    assert re.search(r"<dt>Transfers applied</dt><dd>1</dd>", page), page

    two.process.send_signal(signal.SIGTERM)
    assert two.process.wait(30) == 0, two.output()
    assert list(tmp_path.glob("handover-metrics-*")) == []  # serve's own metrics directory is removed
    output = two.output()  # each serving process's last lines are written, after its shutdown too
    assert output.count("Application shutdown complete.") == 2, output
    assert output.count("Finished server process") == 2, output
    assert output.count(f"GET {TRANSFER}/no-such-request-") == 20, output


def test_serving_processes_stop_when_serve_is_killed(two: Server) -> None:
    """SIGKILL of ``serve`` (no supervisor, no queue worker left): its serving processes stop and free the port."""
    children = serving_processes(two.process.pid)
    two.process.kill()
    two.process.wait(10)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], [p.pid for p in alive]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{two.base}/health", timeout=5)


def test_a_serving_process_that_dies_is_started_again(two: Server) -> None:
    first, second = serving_processes(two.process.pid)
    first.kill()
    first.wait(10)
    wait_for(lambda: two.output().count(STARTED) == 3, "a new serving process started")
    pids = {p.pid for p in serving_processes(two.process.pid)}
    assert len(pids) == 2 and first.pid not in pids and second.pid in pids
    response = httpx.post(f"{two.base}{TRANSFER}", json=BODY, timeout=10)
    assert response.status_code == 200, response.text
    (event,) = poll_until_processed(two.base, response.json()["result"]["requestId"])
    assert event["outcome"] == "applied"


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--workers", "0"], {}, "--workers"),
    (["--workers", "65"], {}, "--workers"),
    ([], {"HANDOVER_API_WORKERS": "999999"}, "at most 64 serving processes"),
    (["--workers", "2"], {"PROMETHEUS_MULTIPROC_DIR": "/no/such/directory"}, "PROMETHEUS_MULTIPROC_DIR"),
    ([], {"HANDOVER_API_WORKERS": "0"}, "api.workers"),
    ([], {"HANDOVER_API_WORKERS": "two"}, "api.workers"),
])
def test_a_bad_number_of_serving_processes_is_refused(args: list[str], env: dict[str, str], message: str,
                                                       tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'handover.db'}"
    loaded_store(store)
    command = Process(["serve", "--port", str(free_port()), *args],
                      {"HANDOVER_STORE": store, "HANDOVER_AUTH_MODE": "none", **env}, tmp_path / "serve.log")
    assert command.process.wait(30) == 2, command.output()
    assert message in command.output()
    assert STARTED not in command.output()


def test_a_serving_process_settles_its_garbage_collector() -> None:
    """What is alive once the app is built is frozen, and the young generation collected less often (in a process
    of its own: it changes the interpreter's collector)."""
    script = ("import gc; from handover.entrypoints.serve_workers import GC_THRESHOLDS, settle_garbage_collector; "
              "before = gc.get_freeze_count(); settle_garbage_collector(); "
              "print(before, gc.get_freeze_count() > 10_000, gc.get_threshold() == GC_THRESHOLDS)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "True", "True"], out
