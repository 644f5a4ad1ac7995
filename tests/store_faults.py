"""Real store faults for tests: a database trigger that makes the store refuse to write a user's assets, so
that processing fails for real (the worker retries, then gives up) until the trigger is dropped."""

from __future__ import annotations

from collections.abc import Iterator
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

    store.engine.pool.dispose()  # the pooled connections, opened before the fault, would hide it
    sa.event.listen(store.engine, "connect", on_connect)
    try:
        yield
    finally:
        sa.event.remove(store.engine, "connect", on_connect)
