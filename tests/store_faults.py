"""Real store faults for tests: a database trigger that makes the store refuse to write a user's assets, so
that processing fails for real (the worker retries, then gives up) until the trigger is dropped; connections that
open read-only; a SQLite database that cannot grow (SQLite's own "database or disk is full")."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from handover.adapters.sql import SqlStore

TRIGGER = "handover_test_refuse_asset_writes"


def refuse_asset_writes(store: SqlStore, owner: str) -> None:
    """From now on, updating an asset whose ``createdBy`` is ``owner`` raises in the database."""
    if "'" in owner:
        raise ValueError("owner must not contain quotes")
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON asset WHEN OLD.createdBy = '{owner}' "
                    "BEGIN SELECT RAISE(ABORT, 'asset writes refused by a test trigger'); END"
                )
            )
        else:
            conn.execute(
                sa.text(
                    f"CREATE FUNCTION {TRIGGER}() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'asset writes refused by a test trigger'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                sa.text(
                    f'CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON asset FOR EACH ROW WHEN (OLD."createdBy" = '
                    f"'{owner}') EXECUTE FUNCTION {TRIGGER}()"
                )
            )


def allow_asset_writes(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {TRIGGER}"))
        else:
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {TRIGGER} ON asset"))
            conn.execute(sa.text(f"DROP FUNCTION IF EXISTS {TRIGGER}()"))


@contextmanager
def asset_writes_refused(store: SqlStore, owner: str) -> Iterator[None]:
    refuse_asset_writes(store, owner)
    try:
        yield
    finally:
        allow_asset_writes(store)


@contextmanager
def read_only_connections(store: SqlStore) -> Iterator[None]:
    """While inside: every connection the store opens is read-only (SQLite ``PRAGMA query_only``, PostgreSQL
    ``default_transaction_read_only``), as a database file that cannot be written gives on SQLite. Connections
    opened meanwhile stay read-only afterwards, as they do for real: the store must drop them itself."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if store.engine.dialect.name == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        else:
            cur.execute("SET default_transaction_read_only = on")
            dbapi_conn.commit()
        cur.close()

    with on_every_new_connection(store, on_connect):
        yield


@contextmanager
def on_every_new_connection(store: SqlStore, on_connect: Callable[[Any, Any], None]) -> Iterator[None]:
    """While inside: ``on_connect(dbapi_connection, record)`` runs on every connection the store opens; the pooled
    connections, opened before, are dropped first (they would hide the fault)."""
    store.engine.pool.dispose()
    sa.event.listen(store.engine, "connect", on_connect)
    try:
        yield
    finally:
        sa.event.remove(store.engine, "connect", on_connect)


UNLIMITED_PAGES = 4294967294  # SQLite's largest max_page_count


@contextmanager
def database_full(store: SqlStore) -> Iterator[None]:
    """While inside: the SQLite database cannot grow (``PRAGMA max_page_count`` set to its page count on every
    connection the store opens), so a write that needs a new page fails with SQLite's own ``SQLITE_FULL``,
    "database or disk is full", as on a full disk; writes that fit in existing pages still succeed, as they do on
    a full disk. On the way out the limit is lifted on the connections opened meanwhile too (space was freed:
    a connection does not stay full)."""
    if store.engine.dialect.name != "sqlite":
        raise ValueError("max_page_count is SQLite's")
    opened: list[Any] = []

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {int(pages)}")
        opened.append(dbapi_conn)

    try:
        with on_every_new_connection(store, on_connect):
            yield
    finally:
        for dbapi_conn in opened:
            with contextlib.suppress(Exception):  # closed since (dropped after the error)
                dbapi_conn.execute(f"PRAGMA max_page_count = {UNLIMITED_PAGES}")
