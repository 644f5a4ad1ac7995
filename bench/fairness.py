"""Fairness of the embedded queue (issue 13 item 7): through ``handover serve`` on SQLite, one request of N objects
(org-1), then at once a one-asset request of another organisation; prints how long the small one waited to be
processed and how long the large one took.

    .venv/bin/python bench/fairness.py                  # N = 1000 (the default api.max_objects)
    .venv/bin/python bench/fairness.py --objects 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from read_lock import HANDOVER, TRANSFER, body, fixture, free_port  # the same users and assets


def wait_processed(base: str, request_id: str, timeout: float) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        answer = httpx.get(f"{base}{TRANSFER}/{request_id}", timeout=30)
        events: list[dict[str, Any]] = answer.json()["result"]["events"]
        if all(e["outcome"] != "pending" for e in events):
            return
        time.sleep(0.05)
    raise SystemExit(f"{request_id} still pending after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    n = parser.parse_args().objects
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "HANDOVER_STORE": f"sqlite:///{work / 'handover.db'}", "HANDOVER_AUTH_MODE": "none",
               "HANDOVER_KAFKA_BROKER_SERVERS": "", "HANDOVER_API_MAX_OBJECTS": str(n)}
        (work / "fixture.json").write_text(json.dumps(fixture(n)))
        subprocess.run([HANDOVER, "init"], env=env, check=True, capture_output=True)
        subprocess.run([HANDOVER, "load", str(work / "fixture.json")], env=env, check=True, capture_output=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = (work / "serve.log").open("w")
        server = subprocess.Popen([HANDOVER, "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            big = body("org-1", "u-admin", "u-a", "u-b", [f"do_{i:06d}" for i in range(n)])
            start = time.monotonic()
            response = httpx.post(f"{base}{TRANSFER}", json=big, headers={"X-Request-ID": "r-big"}, timeout=120)
            assert response.is_success, response.text
            small = body("org-2", "u-admin2", "u-c", "u-d", ["do_c"])
            submitted = time.monotonic()
            response = httpx.post(f"{base}{TRANSFER}", json=small, headers={"X-Request-ID": "r-small"}, timeout=120)
            assert response.is_success, response.text
            wait_processed(base, "r-small", 600)
            waited = time.monotonic() - submitted
            wait_processed(base, "r-big", 1200)
            total = time.monotonic() - start
        finally:
            server.terminate()
            server.wait(30)
        print(f"one-asset request of org-2 behind a request of {n} objects: processed {waited:.2f} s after submit")
        print(f"the request of {n} objects: all processed {total:.1f} s after its submit")


if __name__ == "__main__":
    main()
