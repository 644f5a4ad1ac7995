"""Reads never take SQLite's write lock (issue 13 item 6): validation, preview, status, the console's pages and the
request log's and queue's reads run in deferred transactions (``BEGIN``), never ``BEGIN IMMEDIATE``; a writer with no
patience at all commits while a long read (a preview's unit of work) is open. bench/read_lock.py measures it with
``handover serve``. (PostgreSQL has no such lock; its reads are covered by the API tests on both stores.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from handover.adapters.sql import SqlStore, asset, ledger, users
from handover.adapters.sql_queue import SqlEventQueue, SqlRequestLog
from handover.bootstrap import ApiParts, App
from handover.entrypoints.api import create_app
from tests.e2e.api_support import BODY, EXAMPLES, TRANSFER, body, client, wired

ADMIN = {"request": {"actionBy": {"userId": "u-admin"}}}


class Begins:
    """The BEGIN statements the store's connections send, by kind."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seen: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._note)

    def _note(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN"):
            self.seen.append(statement)

    def during(self, action: Callable[[], Any]) -> list[str]:
        self.seen.clear()
        action()
        return list(self.seen)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, App, ApiParts, Begins]]:
    app, parts = wired(f"sqlite:///{tmp_path / 'handover.db'}")
    http = client(create_app(app, parts))  # no lifespan: the in-process worker runs only when drained
    assert http.post(TRANSFER, json=BODY, headers={"X-Request-ID": "r-1"}).status_code == 200
    assert parts.worker is not None
    parts.worker.drain()
    store = app.store
    assert isinstance(store, SqlStore)
    yield http, app, parts, Begins(store.engine)


def test_reads_begin_deferred_transactions(env: tuple[TestClient, App, ApiParts, Begins]) -> None:
    http, _, parts, begins = env
    assert isinstance(parts.requests, SqlRequestLog) and isinstance(parts.sink, SqlEventQueue)
    log, queue = parts.requests, parts.sink
    objects = body(objects=[{"identifier": "do_q1"}, {"identifier": "do_nothing"}])
    reads: dict[str, Callable[[], Any]] = {
        "preview": lambda: http.post(f"{TRANSFER}/preview", json=objects),
        "preview of everything": lambda: http.post(f"{TRANSFER}/preview", json=body()),
        "validation error": lambda: http.post(f"{TRANSFER}/preview", json=body(toUser={"userId": "u-x", "roles": []})),
        "status": lambda: http.get(f"{TRANSFER}/r-1"),
        "console history": lambda: http.get("/admin/requests"),
        "console request": lambda: http.get("/admin/requests/r-1"),
        "console failed events": lambda: http.get("/admin/failed"),
        "console counters": lambda: http.get("/admin/counters"),
        "request log": lambda: (log.status("r-1"), log.history(), log.summary("r-1"), log.processed_counts()),
        "queue": lambda: (queue.counts(), queue.oldest_pending_at(), queue.failed()),
    }
    for name, read in reads.items():
        begins_sent = begins.during(read)
        assert begins_sent, name  # the check below can fail: the read went through the store
        assert "BEGIN IMMEDIATE" not in begins_sent, name
    # writes keep BEGIN IMMEDIATE (a read-then-write never fails on a lock upgrade)
    assert "BEGIN IMMEDIATE" in begins.during(lambda: http.post(TRANSFER, json=body()))
    assert "BEGIN IMMEDIATE" in begins.during(lambda: http.post(f"{TRANSFER}/r-1/undo", json=ADMIN))


@pytest.mark.parametrize("open_read", ["read_only", "preview"])
def test_a_writer_commits_while_a_long_read_is_open(env: tuple[TestClient, App, ApiParts, Begins],
                                                    open_read: str) -> None:
    store = env[1].store
    assert isinstance(store, SqlStore)
    with store.preview() as factory:
        opened = store.read_only() if open_read == "read_only" else factory()
        with opened as uow:
            assert uow.users.get("u-ann") is not None  # the read transaction is open, its snapshot taken
            assert uow.assets.get("do_q1") is not None
            path = store.engine.url.database
            assert path is not None
            impatient = sqlite3.connect(path, timeout=0, isolation_level=None)  # waits for no lock at all
            try:
                impatient.execute("BEGIN IMMEDIATE")
                impatient.execute("UPDATE users SET firstName = 'Annie' WHERE id = 'u-ann'")
                impatient.execute("COMMIT")
            finally:
                impatient.close()
            assert uow.users.get("u-ann").firstName == "Ann"  # type: ignore[union-attr]  # its snapshot
    with store.read_only() as uow:
        assert uow.users.get("u-ann").firstName == "Annie"  # type: ignore[union-attr]


def _commit_without_waiting(store: SqlStore, first_name: str) -> None:
    """A write by another connection that waits for no lock at all: raises ``database is locked`` when anyone
    holds the write lock."""
    path = store.engine.url.database
    assert path is not None
    impatient = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        impatient.execute("BEGIN IMMEDIATE")
        impatient.execute("UPDATE users SET firstName = ? WHERE id = 'u-ann'", (first_name,))
        impatient.execute("COMMIT")
    finally:
        impatient.close()


def test_replay_dry_run_takes_no_write_lock(env: tuple[TestClient, App, ApiParts, Begins]) -> None:
    """``replay --dry-run`` (a preview whose events see each other's changes): a writer with no patience commits
    between its events, after the dry run has written; the dry run changes nothing in the store."""
    http, app, _, begins = env
    store = app.store
    assert isinstance(store, SqlStore)
    lines = (EXAMPLES / "events.jsonl").read_bytes().splitlines()
    before = http.get(f"{TRANSFER}/r-1").json()["result"]
    with store.engine.connect() as conn:
        assets_before = conn.execute(sa.select(asset).order_by(asset.c.identifier)).all()
    with store.preview(carry_changes=True) as factory:
        dry = app.engine(uow_factory=factory)
        outcomes = [dry.process(lines[0]).outcome]
        _commit_without_waiting(store, "Annie")  # the dry run has written (a ledger row at least)
        assert begins.during(lambda: outcomes.extend(dry.process(line).outcome for line in lines[1:])) == []
        _commit_without_waiting(store, "Ann B.")
    assert outcomes[0] == "applied" and len(outcomes) == len(lines)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(asset).order_by(asset.c.identifier)).all() == assets_before
        assert conn.execute(sa.select(users.c.firstName).where(users.c.id == "u-ann")).scalar() == "Ann B."
        assert conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar() == 1  # r-1's event only
    assert http.get(f"{TRANSFER}/r-1").json()["result"] == before
