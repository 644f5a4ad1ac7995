"""Real store faults for tests: a database trigger that makes the store refuse to write a user's assets, so
that processing fails for real (the worker retries, then gives up) until the trigger is dropped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
