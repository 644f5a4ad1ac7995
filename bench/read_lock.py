"""Reads and SQLite's write lock (issue 13 item 6): one preview of N objects through ``handover serve`` on SQLite while
``/health`` is polled, a one-asset transfer of another organisation is submitted and a ``replay`` of one event runs.
Prints the preview's time and, during it, the slowest ``/health``, the submit's time and the replay's time and exit
code.

    .venv/bin/python bench/read_lock.py                 # N = 30,000; the others start 10 s after the preview
    .venv/bin/python bench/read_lock.py --objects 5000 --delay 2

Before the fix the preview ran in ``BEGIN IMMEDIATE``: ``/health`` and submits waited for it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
HANDOVER = str(Path(sys.executable).with_name("handover"))
TRANSFER = "/v1/user/ownership/transfer"


def role(name: str, org: str) -> dict[str, Any]:
    return {"role": name, "scope": [{"organisationId": org}]}


def fixture(n: int) -> dict[str, Any]:
    user = {"firstName": "", "lastName": "", "isDeleted": False}
    return {
        "users": [
            {**user, "id": "u-a", "userName": "a", "rootOrgId": "org-1", "roles": ["CONTENT_CREATOR"]},
            {**user, "id": "u-b", "userName": "b", "rootOrgId": "org-1", "roles": ["CONTENT_CREATOR"]},
            {**user, "id": "u-admin", "userName": "admin", "rootOrgId": "org-1", "roles": ["ORG_ADMIN"]},
            {**user, "id": "u-c", "userName": "c", "rootOrgId": "org-2", "roles": ["CONTENT_CREATOR"]},
            {**user, "id": "u-d", "userName": "d", "rootOrgId": "org-2", "roles": ["CONTENT_CREATOR"]},
            {**user, "id": "u-admin2", "userName": "admin2", "rootOrgId": "org-2", "roles": ["ORG_ADMIN"]},
        ],
        "course_batches": [],
        "assets": [
            {"identifier": f"do_{i:06d}", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
             "visibility": "Default", "createdBy": "u-a", "creator": "A", "originData": None}
            for i in range(n)
        ] + [{"identifier": "do_c", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
              "visibility": "Default", "createdBy": "u-c", "creator": "C", "originData": None}],
    }


def body(org: str, admin: str, frm: str, to: str, objects: list[str]) -> dict[str, Any]:
    return {"request": {"context": "User Deletion", "organisationId": org, "actionBy": {"userId": admin},
                        "fromUser": {"userId": frm, "roles": [role("CONTENT_CREATOR", org)]},
                        "toUser": {"userId": to, "roles": [role("CONTENT_CREATOR", org)]},
                        "objects": [{"identifier": i} for i in objects]}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def init_and_load(env: Mapping[str, str], work: Path, doc: Mapping[str, Any]) -> None:
    """``handover init`` and ``handover load`` of ``doc`` (written to ``work``/fixture.json) on ``env``'s store."""
    (work / "fixture.json").write_text(json.dumps(doc))
    subprocess.run([HANDOVER, "init"], env=env, check=True, capture_output=True)
    subprocess.run([HANDOVER, "load", str(work / "fixture.json")], env=env, check=True, capture_output=True)


@contextmanager
def serving(env: Mapping[str, str], log: Path, launcher: Sequence[str] = (HANDOVER,),
            timeout: float = 60) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``handover serve`` (``launcher`` + ``serve --port P``) on a free port, its output to ``log``: its base URL and
    process once ``/health`` answers 200; SystemExit when it exits or is not healthy within ``timeout`` seconds.
    Terminated on the way out."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as out:
        server = subprocess.Popen([*launcher, "serve", "--port", str(port)], env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None:
                    raise SystemExit(f"handover serve exited with {server.returncode}; see {log}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"handover serve not healthy within {timeout:.0f} s; see {log}")
                time.sleep(0.2)
            yield base, server
        finally:
            server.terminate()
            server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=30_000)
    parser.add_argument("--delay", type=float, default=10.0, help="seconds from the preview's start to the others'")
    args = parser.parse_args()
    n = args.objects
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = f"sqlite:///{work / 'handover.db'}"
        env = {**os.environ, "HANDOVER_STORE": url, "HANDOVER_AUTH_MODE": "none", "HANDOVER_KAFKA_BROKER_SERVERS": "",
               "HANDOVER_API_MAX_BODY_BYTES": str(100 * n + 10_000), "HANDOVER_API_MAX_OBJECTS": str(n)}
        init_and_load(env, work, fixture(n))
        event = {"eid": "BE_JOB_REQUEST", "mid": "LP.replay.1", "object": {"id": "u-c", "type": "user"},
                 "edata": {"action": "ownership-transfer", "organisationId": "org-2",
                           "fromUserProfile": {"userId": "u-c"}, "toUserProfile": {"userId": "u-d"},
                           "assetInformation": {"identifier": "do_none"}}}
        (work / "events.jsonl").write_text(json.dumps(event) + "\n")
        with serving(env, work / "serve.log") as (base, _server):
            done = threading.Event()
            preview: dict[str, Any] = {}

            def run_preview() -> None:
                start = time.monotonic()
                doc = body("org-1", "u-admin", "u-a", "u-b", [f"do_{i:06d}" for i in range(n)])
                response = httpx.post(f"{base}{TRANSFER}/preview?limit=1", json=doc, timeout=600)
                preview.update(status=response.status_code, seconds=time.monotonic() - start,
                               changed=response.json().get("result", {}).get("changed"))
                done.set()

            thread = threading.Thread(target=run_preview)
            thread.start()
            time.sleep(args.delay)  # the preview is under way (past its validation), unless it is over already
            health: list[float] = []
            submit: dict[str, Any] = {}
            replay: dict[str, Any] = {}

            def run_submit() -> None:
                start = time.monotonic()
                response = httpx.post(f"{base}{TRANSFER}", json=body("org-2", "u-admin2", "u-c", "u-d", ["do_c"]),
                                      timeout=600)
                submit.update(status=response.status_code, seconds=time.monotonic() - start)

            def run_replay() -> None:
                start = time.monotonic()
                result = subprocess.run([HANDOVER, "replay", str(work / "events.jsonl")], env=env,
                                        capture_output=True, text=True)
                replay.update(exit=result.returncode, seconds=time.monotonic() - start,
                              locked="database is locked" in result.stdout + result.stderr)

            others = [threading.Thread(target=run_submit), threading.Thread(target=run_replay)]
            for t in others:
                t.start()
            while not done.is_set():
                start = time.monotonic()
                status = httpx.get(f"{base}/health", timeout=600).status_code
                health.append(time.monotonic() - start)
                if status != 200:
                    print(f"/health answered {status}")
                time.sleep(0.25)
            thread.join()
            for t in others:
                t.join()
        print(f"preview of {n} objects: HTTP {preview['status']} in {preview['seconds']:.1f} s, "
              f"changed {preview['changed']}")
        print(f"/health during it: {len(health)} calls, slowest {max(health, default=0):.3f} s")
        print(f"submit (org-2, one asset) during it: HTTP {submit['status']} in {submit['seconds']:.3f} s")
        print(f"replay of one event during it: exit {replay['exit']} in {replay['seconds']:.1f} s, "
              f"'database is locked': {replay['locked']}")


if __name__ == "__main__":
    main()
