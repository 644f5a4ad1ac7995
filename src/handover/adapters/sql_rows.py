"""Writing many rows at once, and the statements run for every event, on both databases.

On SQLite one DB-API ``executemany`` per call (compiled once, type processing only where a column needs it);
on PostgreSQL one short ``unnest`` statement per 1,000 rows (psycopg's executemany sends a statement per row).
``run_prepared`` compiles a small statement once per dialect, so that SQLAlchemy neither rebuilds nor
re-keys it for each event.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from handover.adapters.sql_schema import StoreError


def upsert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert each row, or update every other column of the record with its key (a key given twice in ``rows``:
    PostgreSQL refuses it, pass each key once). Many rows at once, as ``insert_rows``."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    others = [c.name for c in table.columns if c.name not in keys]
    names = list(rows[0])
    dialect = conn.dialect.name
    if dialect == "postgresql":
        update = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in others)
        for source, params in _pg_unnest(conn, table, names, rows):
            conn.exec_driver_sql(
                f'INSERT INTO "{table.name}" ({_quoted(names)}) SELECT * FROM {source} '
                f"ON CONFLICT ({_quoted(keys)}) DO UPDATE SET {update}",
                params,
            )
        return
    if dialect != "sqlite":  # pragma: no cover - only the two dialects are supported
        raise StoreError(f"unsupported database {dialect}")
    def build() -> Any:
        stmt = sqlite.insert(table)
        return stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in others})

    _executemany(conn, build, rows, ("upsert", table.name, tuple(names)))


# --- bulk row writes ---------------------------------------------------------------------------------
# The writes of a large transfer go through these three: on SQLite one DB-API executemany (compiled once,
# type processing only where a column needs it); on PostgreSQL one multi-row statement per 1,000 rows
# (psycopg's executemany sends a statement per row).

PG_ROWS_PER_STATEMENT = 1000


_EXECUTEMANY: dict[tuple[str, Hashable], Any] = {}
_PREPARED: dict[tuple[str, Hashable], tuple[str, list[str] | None, dict[str, Any]]] = {}


def run_prepared(conn: Connection, key: Hashable, build: Callable[[], Any], params: Mapping[str, Any]) -> Any:
    """Execute the statement ``build()`` makes, compiled once per dialect and ``key`` (which must name every
    value built into it), with ``params`` for its bind parameters. For the small statements run for every
    event: SQLAlchemy then neither rebuilds nor re-keys them each time. Rows come back raw, read by position."""
    entry = _PREPARED.get((conn.dialect.name, key))
    if entry is None:
        compiled = build().compile(dialect=conn.dialect)
        order = list(compiled.positiontup) if compiled.positional and compiled.positiontup is not None else None
        # the values built into the statement (e.g. IN lists); the per-call ones come with ``params``
        entry = (compiled.string, order, compiled.construct_params(_check=False))
        _PREPARED[(conn.dialect.name, key)] = entry
    sql, order, defaults = entry
    values = {**defaults, **params}
    return conn.exec_driver_sql(sql, tuple(values[n] for n in order) if order is not None else values)


def update_rows(conn: Connection, table: sa.Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Set the non-key columns of each row on the record with the row's key columns."""
    if not rows:
        return
    columns = [c for c in rows[0] if c not in keys]
    if conn.dialect.name == "postgresql":
        assignments = ", ".join(f'"{c}" = v."{c}"' for c in columns)
        match = " AND ".join(f't."{k}" = v."{k}"' for k in keys)
        for source, params in _pg_unnest(conn, table, [*keys, *columns], rows):
            conn.exec_driver_sql(f'UPDATE "{table.name}" AS t SET {assignments} FROM {source} WHERE {match}', params)
        return
    def build() -> Any:
        return (
            table.update()
            .where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))
            .values({c: sa.bindparam(f"v_{c}", type_=table.c[c].type) for c in columns})
        )

    named = [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in columns}} for r in rows]
    _executemany(conn, build, named, ("update", table.name, tuple(keys), tuple(columns)))


def delete_rows(conn: Connection, table: sa.Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Delete every record matching the key columns of a row."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        match = " AND ".join(f't."{k}" = v."{k}"' for k in keys)
        for source, params in _pg_unnest(conn, table, keys, rows):
            conn.exec_driver_sql(f'DELETE FROM "{table.name}" AS t USING {source} WHERE {match}', params)
        return
    def build() -> Any:
        return table.delete().where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))

    _executemany(conn, build, [{f"k_{k}": r[k] for k in keys} for r in rows], ("delete", table.name, tuple(keys)))


def insert_rows(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    names = list(rows[0])
    if conn.dialect.name == "postgresql":
        for source, params in _pg_unnest(conn, table, names, rows):
            conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({_quoted(names)}) SELECT * FROM {source}', params)
        return
    _executemany(conn, table.insert, rows, ("insert", table.name, tuple(names)))


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _pg_unnest(
    conn: Connection, table: sa.Table, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """``unnest(%s::type[], ...) AS v(names)`` and one array per column, for each chunk of rows: a short,
    constant statement text (psycopg parses a long one each time) whose row estimate keeps PostgreSQL on
    the primary key (a long VALUES list can be planned as a hash join over the whole table)."""
    types = [table.c[n].type.compile(dialect=conn.dialect) for n in names]
    is_json = [isinstance(table.c[n].type, sa.JSON) for n in names]
    source = "unnest(" + ", ".join(f"%s::{t}[]" for t in types) + f") AS v({_quoted(names)})"
    for chunk in chunks(list(rows), PG_ROWS_PER_STATEMENT):
        arrays = []
        for name, json_column in zip(names, is_json, strict=True):
            values = [row[name] for row in chunk]
            arrays.append([json.dumps(v) if v is not None else None for v in values] if json_column else values)
        yield source, tuple(arrays)


def _executemany(
    conn: Connection, build: Callable[[], Any], rows: Sequence[Mapping[str, Any]], key: Hashable = None
) -> None:
    """The statement ``build()`` makes, once per row through the DB-API executemany (SQLite); built and compiled
    once per ``key``."""
    dialect = conn.dialect
    cached = _EXECUTEMANY.get((dialect.name, key)) if key is not None else None
    if cached is None:
        compiled = build().compile(dialect=dialect, column_keys=list(rows[0]))
        processors = {}
        for name, bind in compiled.binds.items():
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                processors[name] = proc
        names = list(compiled.positiontup) if compiled.positional and compiled.positiontup else list(rows[0])
        cached = (compiled, names, [(i, processors[n]) for i, n in enumerate(names) if n in processors])
        if key is not None:
            _EXECUTEMANY[(dialect.name, key)] = cached
    compiled, names, procs = cached
    get = operator.itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
    # A processed column often repeats the same object (the event's time, the to-user): converted once.
    last: list[tuple[Any, Any]] = [(_NOTHING, None)] * len(procs)
    params: list[Any] = []
    for row in rows:
        values = list(get(row))
        for k, (i, proc) in enumerate(procs):
            value = values[i]
            seen, converted = last[k]
            if value is not seen:
                converted = proc(value)
                last[k] = (value, converted)
            values[i] = converted
        params.append(tuple(values) if compiled.positional else dict(zip(names, values, strict=True)))
    conn.exec_driver_sql(compiled.string, params)


_NOTHING = object()


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """``items`` (any iterable, read as it goes) in lists of ``size`` (the last one shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def chunks(items: list[Any], size: int = 2000) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
