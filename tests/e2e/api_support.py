"""Helpers of the API tests: a store loaded with the shared fixture, the wired app, request bodies."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

import handover.adapters.sql_queue  # noqa: F401  (the queue tables on the schema)
from handover.adapters.sql import SqlStore
from handover.bootstrap import ApiParts, App, api_parts
from handover.config import load_settings
from handover.entrypoints.api import create_app
from tests.conftest import EXAMPLES

TRANSFER = "/v1/user/ownership/transfer"
GATEWAY = "/api/user/v1/ownership/transfer"

# beyond the shared fixture: an org admin of another organisation
EXTRA_USERS = {
    "users": [
        {"id": "u-admin2", "userName": "admin2", "rootOrgId": "org-2", "roles": ["ORG_ADMIN"], "isDeleted": False},
    ]
}


def loaded_store(url: str) -> SqlStore:
    store = SqlStore(url)
    store.init_schema()
    store.load(json.loads((EXAMPLES / "fixture.json").read_text()))
    store.load(EXTRA_USERS)
    return store


def wired(url: str, env: Mapping[str, str] | None = None) -> tuple[App, ApiParts]:
    settings = load_settings(None, environ={"HANDOVER_AUTH_MODE": "none", **(env or {})})
    app = App(settings, url, loaded_store(url))
    return app, api_parts(app)


def client(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def make_client(url: str, env: Mapping[str, str] | None = None) -> tuple[TestClient, ApiParts]:
    app, parts = wired(url, env)
    return client(create_app(app, parts)), parts


def role(name: str, *orgs: str) -> dict[str, Any]:
    return {"role": name, "scope": [{"organisationId": o} for o in orgs]}


BODY: dict[str, Any] = {
    "request": {
        "context": "User Deletion",
        "organisationId": "org-1",
        "actionBy": {"userId": "u-admin"},
        "fromUser": {"userId": "u-ann", "roles": [role("CONTENT_CREATOR", "org-1")]},
        "toUser": {"userId": "u-ravi", "roles": [role("CONTENT_CREATOR", "org-1"), role("BOOK_CREATOR", "org-2")]},
    }
}


def body(**changes: Any) -> dict[str, Any]:
    """``BODY`` with ``request`` keys replaced (a value of ``...`` removes the key)."""
    doc = copy.deepcopy(BODY)
    for key, value in changes.items():
        if value is ...:
            doc["request"].pop(key, None)
        else:
            doc["request"][key] = value
    return doc


def assert_error(response: Any, status: int, err: str, errmsg: str, code: str = "CLIENT_ERROR") -> None:
    assert response.status_code == status, response.text
    doc = response.json()
    assert doc["params"]["err"] == err, doc
    assert doc["params"]["errmsg"] == errmsg, doc
    assert doc["params"]["status"] == "FAILED"
    assert doc["responseCode"] == code
    assert doc["result"] == {}


# --- a real ``handover serve`` process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A ``handover`` command running as a child process, its output in a file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "handover.entrypoints.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "200", **env},
                cwd=log.parent,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then the exit code (killed after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Server(Process):
    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        super().__init__(["serve", "--port", str(port)], env, log)

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            assert self.process.poll() is None, f"serve exited early:\n{self.output()}"
            with contextlib.suppress(httpx.TransportError):
                health = httpx.get(f"{self.base}/health", timeout=1)
                if health.status_code == 200:
                    return
                last = f"{health.status_code} {health.text}"
            assert time.monotonic() < deadline, f"serve did not come up (/health: {last}):\n{self.output()}"
            time.sleep(0.1)


@contextlib.contextmanager
def serving(env: Mapping[str, str], log: Path) -> Iterator[Server]:
    server = Server(env, log)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def serving_with_tokens(store_url: str, public_key_pem: str, log: Path) -> contextlib.AbstractContextManager[Server]:
    """``serve`` on ``store_url`` with Keycloak-style RS256 tokens checked against ``public_key_pem`` (auth mode
    jwt) and the embedded queue (no Kafka)."""
    env = {"HANDOVER_STORE": store_url, "HANDOVER_AUTH_MODE": "jwt", "HANDOVER_AUTH_PUBLIC_KEY": public_key_pem,
           "HANDOVER_KAFKA_BROKER_SERVERS": ""}
    return serving(env, log)


def poll_until_processed(base: str, request_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The events of a request once none is ``pending``."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{base}{TRANSFER}/{request_id}", timeout=5)
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["result"]["events"]
        if all(e["outcome"] != "pending" for e in events):
            return events
        assert time.monotonic() < deadline, f"still pending: {events}"
        time.sleep(0.1)


def assert_transferred_ann_to_ravi(url: str) -> None:
    """The store after the transfer of everything from u-ann to u-ravi in org-1 (shared fixture)."""
    dump = {name: list(rows) for name, rows in SqlStore(url).dump_sections()}
    batches = {b["batchid"]: b for b in dump["course_batches"]}
    assert batches["b-101"]["createdby"] == "u-ravi"
    assert batches["b-101"]["mentors"] == ["u-ravi", "u-meera"]
    assert batches["b-102"]["mentors"] == ["u-ravi"]
    assert batches["b-201"]["createdby"] == "u-ann"  # completed: left alone
    assets = {a["identifier"]: a for a in dump["assets"]}
    owned = {i for i, a in assets.items() if a["createdBy"] == "u-ravi"}
    assert owned == {"do_q1", "do_q1.img", "do_qs1", "do_q2", "do_q3"}
    assert assets["do_q1"]["creator"] == "Ravi Kumar"
    assert assets["do_c1"]["createdBy"] == "u-ann"  # Content is not a configured type
