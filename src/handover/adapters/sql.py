"""The SQL store: repositories, unit of work and the store itself, on SQLite (the embedded default) and
PostgreSQL through the same SQLAlchemy Core code. Tables: ``sql_schema``; many-row writes: ``sql_rows``.

Every read of a user's records is a keyset-paged query, so memory does not grow with the number of records;
large transfers are written and undone set-based (``SqlBulk``), and a preview counts what it does not show
(``SqlCounts``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from handover.adapters.sql_rows import batched, chunks, delete_rows, insert_rows, run_prepared, update_rows, upsert_rows
from handover.adapters.sql_schema import (
    AUDIT_TEXT_INDEXES,
    LEGACY_INDEXES,
    StoreError,
    asset,
    audit,
    audit_text_key,
    course_batch,
    course_batch_mentor,
    create_engine,
    ledger,
    metadata,
    notification,
    probe_writes,
    reader,
    store_probe,
    users,
)
from handover.domain.fixture import FIXTURE_KEYS, FixtureMembers, fixture_records
from handover.domain.model import (
    ASSET_COLUMNS,
    Asset,
    CourseBatch,
    User,
    asset_from_json,
    batch_from_json,
    user_from_json,
)
from handover.domain.notification import Notification
from handover.domain.rules import AssetUpdate, BatchUpdate, FieldChange
from handover.domain.text import first_bad_string
from handover.service.ports import (
    STORE_ASSET,
    STORE_COURSE_BATCH,
    AuditPage,
    AuditRecord,
    AuditStamp,
    LedgerEntry,
    ReadPlan,
    StoreContention,
)

# The tables and the engine are defined in sql_schema; they are part of this module's interface too.
__all__ = [
    "SqlStore",
    "SqlUnitOfWork",
    "StoreError",
    "asset",
    "audit",
    "course_batch",
    "course_batch_mentor",
    "create_engine",
    "ledger",
    "metadata",
    "notification",
    "users",
]


def _grouped(items: Iterable[Any], key: Any) -> dict[Any, list[Any]]:
    groups: dict[Any, list[Any]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


IN_LIST_SIZE = 500
LOAD_CHUNK = 5000  # fixture records parsed and written at a time by SqlStore.load
# The text columns an undo may revert set-based (``SqlBulk.revert_columns``), per audited store.
REVERTIBLE_COLUMNS = {STORE_ASSET: ("schemaVersion", "status", "visibility", "createdBy", "creator"),
                      STORE_COURSE_BATCH: ("createdby", "mentors")}
SET_BASED_MIN = 20  # fewer rows with the same values are written by the (cached) row-by-row statement


def _values_key(update: AssetUpdate) -> tuple[Any, ...]:
    """A hashable key of an update's values (flat values as they are, objects as sorted JSON)."""
    flat = tuple(update.values.items())
    try:
        hash(flat)
        return flat
    except TypeError:
        pass
    return tuple(
        (k, v if v is None or isinstance(v, str | int | float) else json.dumps(v, sort_keys=True, default=str))
        for k, v in sorted(update.values.items())
    )


# --- rows <-> records -------------------------------------------------------------------------------


# Rows are read by position, in table column order (``sa.select(table)`` or the ``*_READ`` selects below).


def _json(value: Any) -> Any:
    """A JSON column's value from a ``*_READ`` select (text on SQLite, decoded by psycopg on PostgreSQL)."""
    return json.loads(value) if isinstance(value, str) else value


def _user(row: Any) -> User:
    return User(row[0], row[1], row[2], row[3], row[4], tuple(_json(row[5])), bool(row[6]))


def _batch(row: Any) -> CourseBatch:
    return CourseBatch(row[0], row[1], row[2], row[3], row[4], tuple(_json(row[5])))


def _asset(row: Any) -> Asset:
    extra = row[8]
    return Asset(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6],
        _json(row[7]) if row[7] is not None else None,
        _json(extra) if extra is not None else {},
    )


def _raw_json_select(table: sa.Table) -> Any:
    """``SELECT`` of every column, JSON columns untouched by SQLAlchemy (decoded by ``_json`` only when not
    null): the bulk page reads skip a per-row processor call for each mostly-null JSON column."""
    return sa.select(*(sa.type_coerce(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c
                       for c in table.columns))


def _one_of(column: Any, values: Sequence[Any], name: str) -> Any:
    """``column IN (:name0, :name1, ...)`` with the values built in (an IN list that prepared statements can
    keep, unlike SQLAlchemy's expanding one)."""
    return column.in_([sa.bindparam(f"{name}{i}", v, type_=column.type) for i, v in enumerate(values)])


def _text_member(column: Any, dialect_name: str, n: int) -> Any:
    """The audit ``column``'s JSON text is one of the forms ``_value_lists(..., "f")`` binds (``_member``), by the
    index on its ``audit_text_key``."""
    if dialect_name == "sqlite":
        return _member(sa.cast(column, sa.Text), "f", dialect_name, n)
    return _text_one_of(column, [""] * n, dialect_name)


def _text_one_of(column: Any, forms: Sequence[str], dialect_name: str) -> Any:
    """The audit ``column``'s JSON text is one of ``forms`` (bound as ``f0``, ``f1``, ...), by the index on its
    ``audit_text_key`` (on PostgreSQL the md5s match first, then the texts)."""
    text = sa.cast(column, sa.Text)
    params = [sa.bindparam(f"f{i}", form, type_=sa.Text) for i, form in enumerate(forms)]
    if dialect_name != "postgresql":
        return text.in_(params)
    return sa.and_(audit_text_key(column, dialect_name).in_([sa.func.md5(p) for p in params]), text.in_(params))


def _value_lists(dialect_name: str, values: Sequence[str], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The bound parameters of ``_member(..., name, n)`` for ``values`` (repeats dropped), as ``(n, params)``: on
    SQLite one JSON array (``n`` 0: one statement shape, whatever the number of values), elsewhere per 500 values
    ``name0``, ``name1``, ... padded with NULLs (``_pad``: a few shapes)."""
    unique = list(dict.fromkeys(values))
    if not unique:
        return
    if dialect_name == "sqlite":
        yield 0, {name: json.dumps(unique)}
        return
    for chunk in map(_pad, chunks(unique, IN_LIST_SIZE)):
        yield len(chunk), {f"{name}{i}": v for i, v in enumerate(chunk)}


def _member(key: Any, name: str, dialect_name: str, n: int) -> Any:
    """``key IN`` the values ``_value_lists`` binds: on SQLite ``(SELECT value FROM json_each(:name))`` (found by
    the index on ``key`` as an IN list is), elsewhere ``(:name0, ..., :name<n-1>)``."""
    if dialect_name == "sqlite":
        values = sa.func.json_each(sa.bindparam(name, type_=sa.Text)).table_valued("value")
        return key.in_(sa.select(values.c.value).scalar_subquery())
    return _one_of(key, [""] * n, name)


def _rows_with(conn: Connection, key: Any, values: Sequence[str]) -> Iterator[Any]:
    """The raw rows of ``key``'s table whose ``key`` is one of ``values``: one prepared ``IN`` query (``_member``;
    per 500 values but on SQLite)."""
    table = key.table
    dialect_name = conn.dialect.name
    for n, params in _value_lists(dialect_name, values, "k"):

        def build(n: int = n) -> Any:
            return sa.select(table).where(_member(key, "k", dialect_name, n))

        yield from run_prepared(conn, (f"{table.name}.{key.name}.in", n), build, params).fetchall()


def _after(courseid: Any, batchid: Any) -> Any:
    """The keyset condition ``(courseid, batchid) > (:lc, :lb)``."""
    return sa.tuple_(courseid, batchid) > sa.tuple_(sa.bindparam("lc"), sa.bindparam("lb"))


def _batch_pages(
    conn: Connection, key: Hashable, build: Callable[[], Any], user_id: str, page_size: int
) -> Iterator[list[CourseBatch]]:
    """Keyset pages of a batch query built with ``:u``, ``:lc``, ``:lb``; stops after a short page."""
    last = ("", "")
    while True:
        rows = run_prepared(conn, key, build, {"u": user_id, "lc": last[0], "lb": last[1]}).fetchall()
        if rows:
            yield [_batch(r) for r in rows]
        if len(rows) < page_size:
            return
        last = (rows[-1][0], rows[-1][1])


def _mentored_pages(
    conn: Connection, status: list[int], page_size: int, user_id: str, *, not_created: bool
) -> Iterator[list[CourseBatch]]:
    """Keyset pages of the batches with one of ``status`` that ``user_id`` mentors (by the mentor index);
    ``not_created``: only those the user did not create."""
    cb, m = course_batch, course_batch_mentor

    def build() -> Any:
        conditions = [
            m.c.userid == sa.bindparam("u"),
            _one_of(cb.c.status, status, "st"),
            _after(m.c.courseid, m.c.batchid),
        ]
        if not_created:
            conditions.append(sa.or_(cb.c.createdby.is_(None), cb.c.createdby != sa.bindparam("u")))
        return (
            _raw_json_select(cb)
            .join(m, sa.and_(m.c.courseid == cb.c.courseid, m.c.batchid == cb.c.batchid))
            .where(*conditions)
            .order_by(m.c.courseid, m.c.batchid)
            .limit(page_size)
        )

    key = ("batches.mentored", not_created, tuple(status), page_size)
    yield from _batch_pages(conn, key, build, user_id, page_size)


def _asset_row(a: Asset) -> dict[str, Any]:
    return {
        "identifier": a.identifier,
        "objectType": a.objectType,
        "schemaVersion": a.schemaVersion,
        "status": a.status,
        "visibility": a.visibility,
        "createdBy": a.createdBy,
        "creator": a.creator,
        "originData": dict(a.originData) if a.originData is not None else None,
        "extra": dict(a.extra) or None,
    }


# --- repositories -----------------------------------------------------------------------------------


class SqlUsers:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, user_id: str) -> User | None:
        row = run_prepared(
            self._conn, "users.get", lambda: sa.select(users).where(users.c.id == sa.bindparam("id")), {"id": user_id}
        ).first()
        return _user(row) if row is not None else None

    def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        return {u.id: u for u in map(_user, _rows_with(self._conn, users.c.id, user_ids))}

    def organisation_exists(self, organisation_id: str) -> bool:
        """The embedded directory knows an organisation from the users whose root organisation it is."""
        query = lambda: sa.select(users.c.id).where(users.c.rootOrgId == sa.bindparam("o")).limit(1)  # noqa: E731
        return run_prepared(self._conn, "users.organisation_exists", query, {"o": organisation_id}).first() is not None

    def deleted_users(self, organisation_id: str | None, after: str, limit: int) -> list[User]:
        """``DeletedUserSearch``: a keyset page of ``isDeleted`` users (of one root organisation: by
        ``ix_users_root_org``), in id order."""
        conditions = [users.c.isDeleted.is_(True), users.c.id > after]
        if organisation_id is not None:
            conditions.append(users.c.rootOrgId == organisation_id)
        query = sa.select(users).where(*conditions).order_by(users.c.id).limit(limit)
        return [_user(r) for r in self._conn.execute(query)]

    def find(self, organisation_id: str, text: str, limit: int) -> list[User]:
        """Up to ``limit`` users of the organisation whose id, user name, first or last name (or both names)
        contain ``text``, case-insensitive, by id (the console's user look-up)."""
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        full = users.c.firstName + " " + users.c.lastName
        matches = [sa.func.lower(c).like(pattern, escape="\\")
                   for c in (users.c.id, users.c.userName, users.c.firstName, users.c.lastName, full)]
        query = (sa.select(users).where(users.c.rootOrgId == organisation_id, sa.or_(*matches))
                 .order_by(users.c.id).limit(limit))
        return [_user(r) for r in self._conn.execute(query)]


class SqlBatches:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def pages_of_user(
        self, user_id: str, statuses: frozenset[int], page_size: int
    ) -> Iterator[Sequence[CourseBatch]]:
        cb = course_batch
        status = sorted(statuses)

        def created() -> Any:  # 1. batches the user created
            return (
                _raw_json_select(cb)
                .where(
                    cb.c.createdby == sa.bindparam("u"),
                    _one_of(cb.c.status, status, "st"),
                    _after(cb.c.courseid, cb.c.batchid),
                )
                .order_by(cb.c.courseid, cb.c.batchid)
                .limit(page_size)
            )

        yield from _batch_pages(self._conn, ("batches.created", tuple(status), page_size), created, user_id, page_size)
        # 2. batches the user mentors but did not create
        yield from _mentored_pages(self._conn, status, page_size, user_id, not_created=True)

    def write(self, updates: Sequence[BatchUpdate]) -> None:
        """One bulk update per set of written fields, each row found by its primary key. (A row-value
        ``(courseid, batchid) IN (...)`` list is planned as a full scan by SQLite.)"""
        groups = _grouped(updates, lambda u: (u.createdby is not None, u.mentors is not None))
        for (creator, mentors), group in groups.items():
            if not (creator or mentors):
                continue
            rows = []
            for u in group:
                row: dict[str, Any] = {"courseid": u.courseid, "batchid": u.batchid}
                if creator:
                    row["createdby"] = u.createdby
                if mentors:
                    row["mentors"] = list(u.mentors or ())
                rows.append(row)
            update_rows(self._conn, course_batch, ("courseid", "batchid"), rows)
        self._index_mentors([u for u in updates if u.mentors is not None])

    def _index_mentors(self, updates: Sequence[BatchUpdate]) -> None:
        """Keep ``course_batch_mentor`` equal to the new mentor lists. The stored list is the ``before`` of an
        update's first ``mentors`` change (the engine's one change; undo's newest): only the difference is
        written. An update without such a change has its index rows rewritten whole."""
        m = course_batch_mentor
        removed: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        rewrite: list[dict[str, Any]] = []
        for u in updates:
            new = dict.fromkeys(u.mentors or ())
            stored = next((c.before for c in u.changes if c.field == "mentors"), None)
            if not isinstance(stored, list | tuple):
                key = {"courseid": u.courseid, "batchid": u.batchid}
                rewrite.append(key)
                added.extend({"userid": x, **key} for x in new)
                continue
            old = set(stored)
            removed.extend({"userid": x, "courseid": u.courseid, "batchid": u.batchid} for x in old - new.keys())
            added.extend({"userid": x, "courseid": u.courseid, "batchid": u.batchid} for x in new if x not in old)
        delete_rows(self._conn, m, ("courseid", "batchid"), rewrite)
        delete_rows(self._conn, m, ("userid", "courseid", "batchid"), removed)
        insert_rows(self._conn, m, added)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CourseBatch]:
        """Per course, ``batchid IN (...)``: a primary-key range (a row-value IN list is a scan in SQLite)."""
        cb = course_batch
        found: dict[tuple[str, str], CourseBatch] = {}
        for courseid, group in _grouped(dict.fromkeys(keys), lambda k: k[0]).items():
            for chunk in chunks([b for _, b in group], IN_LIST_SIZE):
                query = sa.select(cb).where(cb.c.courseid == courseid, cb.c.batchid.in_(chunk)).with_for_update()
                found.update((b.key, b) for b in map(_batch, self._conn.execute(query)))
        return found


class SqlAssets:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, identifier: str) -> Asset | None:
        row = run_prepared(
            self._conn,
            "assets.get",
            lambda: _raw_json_select(asset).where(asset.c.identifier == sa.bindparam("id")),
            {"id": identifier},
        ).first()
        return _asset(row) if row is not None else None

    def get_many(self, identifiers: Sequence[str]) -> dict[str, Asset]:
        found: dict[str, Asset] = {}
        for chunk in chunks(list(dict.fromkeys(identifiers)), IN_LIST_SIZE):
            query = sa.select(asset).where(asset.c.identifier.in_(chunk)).with_for_update()
            found.update((a.identifier, a) for a in map(_asset, self._conn.execute(query)))
        return found

    def types_created_by(self, user_id: str) -> dict[str, int]:
        """How many assets ``user_id`` created, by objectType (the preview's "stays with the old owner")."""
        query = (sa.select(asset.c.objectType, sa.func.count()).where(asset.c.createdBy == user_id)
                 .group_by(asset.c.objectType))
        return {str(t): int(n) for t, n in self._conn.execute(query)}

    def pages_created_by(self, user_id: str, object_types: Sequence[str], page_size: int) -> Iterator[Sequence[Asset]]:
        types = list(object_types)

        def build() -> Any:
            return (
                _raw_json_select(asset)
                .where(
                    asset.c.createdBy == sa.bindparam("u"),
                    _one_of(asset.c.objectType, types, "t"),
                    asset.c.identifier > sa.bindparam("last"),
                )
                .order_by(asset.c.identifier)
                .limit(page_size)
            )

        last = ""
        while True:
            rows = run_prepared(
                self._conn, ("assets.created_by", tuple(types), page_size), build, {"u": user_id, "last": last}
            ).fetchall()
            if rows:
                yield [_asset(r) for r in rows]
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def write(self, updates: Sequence[AssetUpdate]) -> None:
        """Assets that get the same values (a transfer, a clean-up of flat fields) are written with one
        UPDATE ... WHERE identifier IN (...); the others with one executemany per set of fields."""
        singles: dict[tuple[str, ...], list[AssetUpdate]] = {}
        for _, group in _grouped(updates, _values_key).items():
            values = dict(group[0].values)
            columns = {c: v for c, v in values.items() if c in ASSET_COLUMNS and c != "identifier"}
            if len(group) < SET_BASED_MIN or not columns:
                singles.setdefault(tuple(sorted(values)), []).extend(group)
                continue
            for chunk in chunks([u.identifier for u in group], IN_LIST_SIZE):
                self._conn.execute(asset.update().where(asset.c.identifier.in_(chunk)).values(columns))
            extras = [f for f in values if f not in ASSET_COLUMNS]
            if extras:
                self._write_extra(group, extras)
        for fields, group in singles.items():
            columns_list = [f for f in fields if f in ASSET_COLUMNS and f != "identifier"]
            extras = [f for f in fields if f not in ASSET_COLUMNS]
            if columns_list:
                update_rows(
                    self._conn,
                    asset,
                    ("identifier",),
                    [{"identifier": u.identifier, **{c: u.values[c] for c in columns_list}} for u in group],
                )
            if extras:
                self._write_extra(group, extras)

    def _write_extra(self, group: Sequence[AssetUpdate], fields: Sequence[str]) -> None:
        for u in group:
            current = self._conn.execute(sa.select(asset.c.extra).where(asset.c.identifier == u.identifier)).scalar()
            merged = {**(current or {}), **{f: u.values[f] for f in fields}}
            merged = {k: v for k, v in merged.items() if k not in fields or v is not None}  # null = no property
            self._conn.execute(asset.update().where(asset.c.identifier == u.identifier).values(extra=merged))


class SqlLedger:
    """Entries recorded are kept and inserted together before the ledger is next read and at commit (one
    insert per micro-batch)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: list[dict[str, Any]] = []

    def flush(self) -> None:
        if self._pending:
            insert_rows(self._conn, ledger, self._pending)
            self._pending = []

    def get(self, mid: str) -> LedgerEntry | None:
        self.flush()
        row = run_prepared(
            self._conn, "ledger.get", lambda: sa.select(ledger).where(ledger.c.mid == sa.bindparam("mid")), {"mid": mid}
        ).first()
        return _ledger_entry(row) if row is not None else None

    def get_many(self, mids: Sequence[str]) -> dict[str, LedgerEntry]:
        self.flush()
        return {e.mid: e for e in map(_ledger_entry, _rows_with(self._conn, ledger.c.mid, mids))}

    def record(self, entry: LedgerEntry) -> None:
        row = {
            "mid": entry.mid,
            "action": entry.action,
            "outcome": entry.outcome,
            "reason": entry.reason,
            "skipped": list(entry.skipped),
            "changed_batches": entry.changed_batches,
            "changed_assets": entry.changed_assets,
            "request_id": entry.request_id,
            "subject_user_id": entry.subject_user_id,
            "processed_at": entry.processed_at,
            "detail": entry.detail,
        }
        self._pending.append(row)

    def by_request(self, request_id: str) -> list[LedgerEntry]:
        self.flush()
        rows = self._conn.execute(sa.select(ledger).where(ledger.c.request_id == request_id).order_by(ledger.c.mid))
        return [_ledger_entry(r) for r in rows]


def _ledger_entry(row: Any) -> LedgerEntry:
    processed = row.processed_at
    if isinstance(processed, str):  # a raw SQLite row
        processed = datetime.fromisoformat(processed)
    if processed is not None and processed.tzinfo is None:
        processed = processed.replace(tzinfo=UTC)
    return LedgerEntry(
        mid=row.mid,
        action=row.action,
        outcome=row.outcome,
        reason=row.reason,
        skipped=tuple(_json(row.skipped) or ()),
        changed_batches=row.changed_batches,
        changed_assets=row.changed_assets,
        request_id=row.request_id,
        subject_user_id=row.subject_user_id,
        processed_at=processed,
        detail=row.detail or "",
    )


class SqlOutbox:
    """The embedded store keeps the email in the outbox table: the row is the one record that it was sent. Rows are
    kept and inserted together at commit (one insert per micro-batch); whether a mid has its row already is read per
    email, or for a micro-batch's mids at once (``hold``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: list[dict[str, Any]] = []
        self._known: dict[str, bool] = {}  # mid -> whether its row exists (in the store or kept)

    def hold(self, mids: Sequence[str]) -> None:
        """Read at once which of ``mids`` have their row (one query per 500)."""
        found = {row[0] for row in _rows_with(self._conn, notification.c.mid, mids)}
        self._known.update({m: m in found for m in mids})

    def flush(self) -> None:
        if self._pending:
            insert_rows(self._conn, notification, self._pending)
            self._pending = []

    def record(self, note: Notification) -> bool:
        exists = self._known.get(note.mid)
        if exists is None:
            exists = run_prepared(
                self._conn,
                "outbox.exists",
                lambda: sa.select(notification.c.mid).where(notification.c.mid == sa.bindparam("mid")),
                {"mid": note.mid},
            ).first() is not None
        if exists:
            return False
        self._known[note.mid] = True
        row = {
            "mid": note.mid,
            "recipientUserIds": list(note.recipient_user_ids),
            "assets": dict(note.assets),
            "subject": note.subject,
            "body": note.body,
            "regards": note.regards,
            "created_at": datetime.now(UTC),
        }
        self._pending.append(row)
        return True


class SqlAudit:
    """Records are kept and inserted together, in order, before the audit is next read or written otherwise and at
    commit (one insert per micro-batch)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: list[dict[str, Any]] = []
        self._held: _HeldAudit | None = None

    def flush(self) -> None:
        """Write what is kept: the redactions held (``hold``) of the rows in the store first, then the records kept
        (already redacted as they had to be). Ends the hold."""
        held, self._held = self._held, None
        if held is not None and held.values:
            self._redact_stored(_json_forms(held.values), held.replacement or "")
        if self._pending:
            insert_rows(self._conn, audit, self._pending)
            self._pending = []

    def record(self, records: Sequence[AuditRecord]) -> None:
        rows = [
            {
                "mid": r.mid,
                "request_id": r.request_id,
                "store": r.store,
                "record_key": r.record_key,
                "field": r.change.field,
                "before": r.change.before,
                "after": r.change.after,
                "at": r.at,
            }
            for r in records
        ]
        self._pending.extend(rows)
        if self._held is not None:
            for row in rows:
                self._held.add(row, stored=False)

    def hold(self, user_ids: Sequence[str], mids: Sequence[str]) -> None:
        """Until the next ``flush`` (a page read, a set-based write, the commit): ``recorded_names`` of ``user_ids``
        and every ``redact`` are answered in memory, from the records kept and the store's rows they can read (the
        asset ``createdBy`` changes naming one of ``user_ids`` and the other rows of those changes, and every row of
        ``mids``, the events that may write records), read here in a few queries. The redactions of the rows in the
        store are written at the flush, one UPDATE per column for all of them (a value replaced by one redaction
        stays replaced, so their union replaces the same rows; the records kept get only those made after them).
        Results as without the hold; a micro-batch of clean-ups so needs no statement per event."""
        self.flush()
        held = _HeldAudit(user_ids)
        seen: set[int] = set()
        dialect_name = self._conn.dialect.name
        for side in ("before", "after"):
            for n, params in _value_lists(dialect_name, _json_forms(user_ids), "f"):

                def build(side: str = side, n: int = n) -> Any:
                    owner, other = audit.alias("owner"), audit.alias("other")
                    return (
                        sa.select(other.c.id, other.c.mid, other.c.store, other.c.record_key, other.c.field,
                                  sa.cast(other.c.before, sa.Text), sa.cast(other.c.after, sa.Text))
                        .select_from(owner.join(other, sa.and_(other.c.mid == owner.c.mid,
                                                               other.c.record_key == owner.c.record_key,
                                                               other.c.store == owner.c.store)))
                        .where(owner.c.store == STORE_ASSET, owner.c.field == "createdBy",
                               _text_member(owner.c[side], dialect_name, n))
                    )

                for row in run_prepared(self._conn, ("audit.hold", side, n), build, params).fetchall():
                    held.add_stored(row, seen)
        for n, params in _value_lists(dialect_name, mids, "k"):

            def build_mids(n: int = n) -> Any:
                a = audit
                return sa.select(a.c.id, a.c.mid, a.c.store, a.c.record_key, a.c.field, sa.cast(a.c.before, sa.Text),
                                 sa.cast(a.c.after, sa.Text)).where(_member(a.c.mid, "k", dialect_name, n))

            for row in run_prepared(self._conn, ("audit.hold.mids", n), build_mids, params).fetchall():
                held.add_stored(row, seen)
        self._held = held

    def redact(self, user_id: str, values: Sequence[str], replacement: str) -> int:
        """One UPDATE per column, its rows found by the index on the column's JSON text (``ix_audit_*_text``;
        ``user_id`` is not needed to find them). A value is matched in each JSON text form it can be stored in
        (escaped or not, by Python or by the database). While the audit is held (``hold``): in memory, the rows in
        the store at the next flush; the count is then of the rows held (the records kept and the rows read)."""
        if not values:
            return 0
        held = self._held
        if held is not None and (held.replacement in (None, replacement)) and replacement not in held.users:
            return held.redact(values, replacement)
        self.flush()
        return self._redact_stored(_json_forms(values), replacement)

    def _redact_stored(self, forms: list[str], replacement: str) -> int:
        """The UPDATEs of ``redact``: every row in the store whose JSON text is one of ``forms`` (one per column and
        ``IN_LIST_SIZE`` forms)."""
        dialect_name = self._conn.dialect.name
        pg = dialect_name == "postgresql"
        replaced = 0
        for n, params in _value_lists(dialect_name, forms, "f"):
            for column in (audit.c.before, audit.c.after):

                def build(column: Any = column, n: int = n) -> Any:
                    new = sa.bindparam("new", type_=sa.Text)
                    return (
                        audit.update()
                        .where(_text_member(column, dialect_name, n))
                        .values({column.name: sa.cast(new, postgresql.JSON) if pg else new})
                    )

                key = ("audit.redact", column.name, n)
                values = {"new": json.dumps(replacement), **params}
                replaced += int(run_prepared(self._conn, key, build, values).rowcount)
        return replaced

    def recorded_names(self, user_id: str) -> list[str]:
        """One SELECT per direction: the createdBy rows naming the user (by the index on the column's JSON text),
        joined to the other rows of the same event and record by the (mid, id) index. In memory for a user held
        (``hold``)."""
        if self._held is not None and user_id in self._held.users:
            return self._held.recorded_names(user_id)
        self.flush()
        forms = _json_forms([user_id])
        names: set[str] = set()
        for side in ("before", "after"):

            def build(side: str = side) -> Any:
                owner, other = audit.alias("owner"), audit.alias("other")
                return (
                    sa.select(sa.cast(other.c[side], sa.Text))
                    .distinct()
                    .select_from(owner.join(other, sa.and_(other.c.mid == owner.c.mid,
                                                           other.c.record_key == owner.c.record_key,
                                                           other.c.store == owner.c.store)))
                    .where(owner.c.store == STORE_ASSET, owner.c.field == "createdBy",
                           _text_one_of(owner.c[side], forms, self._conn.dialect.name),
                           other.c.field != "createdBy")
                )

            params = {f"f{i}": form for i, form in enumerate(forms)}
            for (text,) in run_prepared(self._conn, ("audit.recorded_names", side, len(forms)), build, params):
                decoded = json.loads(text) if text is not None else None
                if isinstance(decoded, str):
                    names.add(decoded)
        return sorted(names)

    def page(
        self,
        *,
        mid: str | None = None,
        request_id: str | None = None,
        newest_first: bool = False,
        cursor: str | None = None,
        limit: int = 1000,
        skip: Sequence[tuple[str, str]] = (),
    ) -> AuditPage:
        """``skip``: leave out the rows of these (store, field) pairs."""
        if (mid is None) == (request_id is None):
            raise ValueError("audit page: give exactly one of mid and request_id")
        self.flush()
        if cursor is not None and not cursor.isdigit():
            raise ValueError(f"bad audit cursor {cursor!r}")
        shape = (mid is not None, newest_first, cursor is not None, tuple(skip))
        query = _AUDIT_PAGES.get(shape)
        if query is None:  # built once per shape: SQLAlchemy then keys and compiles it once
            a = audit
            query = sa.select(a).where((a.c.mid if mid is not None else a.c.request_id) == sa.bindparam("key"))
            if skip:
                query = query.where(sa.not_(sa.tuple_(a.c.store, a.c.field).in_(list(skip))))
            if cursor is not None:
                after: Any = sa.bindparam("cursor")
                query = query.where(a.c.id < after if newest_first else a.c.id > after)
            query = query.order_by(a.c.id.desc() if newest_first else a.c.id).limit(sa.bindparam("limit"))
            _AUDIT_PAGES[shape] = query
        params = {"key": mid if mid is not None else request_id, "limit": limit}
        if cursor is not None:
            params["cursor"] = int(cursor)
        rows = self._conn.execute(query, params).all()
        records = [
            AuditRecord(r.mid, r.request_id, r.store, r.record_key, FieldChange(r.field, r.before, r.after), _utc(r.at))
            for r in rows
        ]
        return AuditPage(records, str(rows[-1].id) if rows and len(rows) == limit else None)


_AUDIT_PAGES: dict[tuple[Any, ...], Any] = {}  # (by mid, newest first, with a cursor, skip) -> SELECT


def _json_forms(values: Iterable[str]) -> list[str]:
    """Each JSON text form a string can be stored in (escaped or not), sorted. (An ASCII string has one: escaping
    concerns other characters only.)"""
    forms: set[str] = set()
    for v in values:
        forms.add(json.dumps(v))
        if not v.isascii():
            forms.add(json.dumps(v, ensure_ascii=False))
    return sorted(forms)


IN_LIST_SHAPES = (8, 64, 512)  # the lengths ``_pad`` gives an IN list of up to 512 values


def _pad(values: list[str]) -> list[str | None]:
    """``values`` padded with NULLs to the next of ``IN_LIST_SHAPES`` (a power of two above): an ``IN`` list of a
    few shapes, each compiled once (``run_prepared``), that matches the same rows (a NULL matches none)."""
    size = next((n for n in IN_LIST_SHAPES if n >= len(values)), 1 << (len(values) - 1).bit_length())
    return [*values, *[None] * (size - len(values))]


_SIDES = ("before", "after")


class _HeldAudit:
    """The audit rows a micro-batch's clean-ups may read or redact (``SqlAudit.hold``), indexed by value: the rows
    read from the store (their values as JSON text, as the SQL compares them) and the records kept (as recorded;
    ``SqlAudit._pending``, redacted in place). ``values``: what every redaction so far replaces in the store's rows
    by ``replacement``."""

    def __init__(self, user_ids: Iterable[str]) -> None:
        self.users = frozenset(user_ids)
        self.values: set[str] = set()
        self.replacement: str | None = None
        self._stored: dict[str, dict[str, list[dict[str, Any]]]] = {side: {} for side in _SIDES}  # text -> rows
        self._kept: dict[str, dict[str, list[dict[str, Any]]]] = {side: {} for side in _SIDES}  # str value -> rows
        self._by_change: dict[tuple[Any, Any, Any], list[tuple[bool, dict[str, Any]]]] = {}  # (mid, store, key)

    def add_stored(self, row: Any, seen: set[int]) -> None:
        """A row read by ``hold`` (id, mid, store, record_key, field, before text, after text), once."""
        if row[0] in seen:
            return
        seen.add(row[0])
        self.add({"mid": row[1], "store": row[2], "record_key": row[3], "field": row[4], "before": row[5],
                  "after": row[6]}, stored=True)

    def add(self, row: dict[str, Any], *, stored: bool) -> None:
        index = self._stored if stored else self._kept
        for side in _SIDES:
            value = row[side]
            if isinstance(value, str):
                index[side].setdefault(value, []).append(row)
        self._by_change.setdefault((row["mid"], row["store"], row["record_key"]), []).append((stored, row))

    def recorded_names(self, user_id: str) -> list[str]:
        """As ``SqlAudit.recorded_names``, over the rows held."""
        forms = _json_forms([user_id]) if self._stored["before"] or self._stored["after"] else []
        names: set[str] = set()
        for side in _SIDES:
            owners = [r for form in forms for r in self._stored[side].get(form, ())]
            owners += self._kept[side].get(user_id, ())
            changes = {(r["mid"], r["store"], r["record_key"]) for r in owners
                       if r["store"] == STORE_ASSET and r["field"] == "createdBy"}
            for change in changes:
                for stored, other in self._by_change[change]:
                    if other["field"] == "createdBy":
                        continue
                    value = other[side]
                    if stored and value is not None:
                        value = json.loads(value)
                    if isinstance(value, str):
                        names.add(value)
        return sorted(names)

    def redact(self, values: Sequence[str], replacement: str) -> int:
        """As ``SqlAudit.redact`` on the rows held; the store's rows are redacted at the flush (``forms``)."""
        forms = _json_forms(values) if self._stored["before"] or self._stored["after"] else []
        self.values.update(values)
        self.replacement = replacement
        replaced = 0
        for index, keys, new in ((self._stored, forms, json.dumps(replacement)),
                                 (self._kept, sorted(set(values)), replacement)):
            for side in _SIDES:
                for key in keys:
                    if key == new or key not in index[side]:
                        continue
                    rows = index[side].pop(key)
                    for row in rows:
                        row[side] = new
                    index[side].setdefault(new, []).extend(rows)
                    replaced += len(rows)
        return replaced


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class SqlBulk:
    """Set-based writes (``service.ports.BulkWrites``): one UPDATE per rule, its audit rows by INSERT ... SELECT
    of the values the UPDATE is about to replace; and set-based undo (``service.ports.ColumnReverts``): the audit
    rows of the event joined to the records they name, one UPDATE ... FROM per field (on PostgreSQL first one per
    store for all its fields, ``_revert_together``)."""

    def __init__(self, conn: Connection, audit_log: SqlAudit) -> None:
        self._conn = conn
        self._audit_log = audit_log  # its kept records go in first: audit ids follow the order of the writes
        self._event_fields: dict[str, frozenset[tuple[str, str]]] = {}  # mid -> its audited (store, field) pairs
        self._undone_records: dict[str, dict[str, int]] = {}  # undo mid -> records per store, where revert_columns
        # knows them (audited_records then reads nothing)

    def reassign_mentor(self, from_id: str, to_id: str, statuses: frozenset[int], stamp: AuditStamp | None) -> int:
        """Audit rows first (they read the values being replaced), then the lists, the creators, the index."""
        self._audit_log.flush()
        pg = self._conn.dialect.name == "postgresql"
        status = ", ".join(str(int(s)) for s in sorted(statuses))
        mentored = ("(courseid, batchid) IN (SELECT m.courseid, m.batchid FROM course_batch_mentor m "
                    f"WHERE m.userid = :f) AND status IN ({status})")
        if pg:  # rules.replace_mentor: every from -> to, the first of equal ones kept
            new = ("(SELECT json_agg(v ORDER BY k) FROM (SELECT CASE WHEN e.value = :f THEN :t ELSE e.value END AS v,"
                   " min(e.k) AS k FROM json_array_elements_text(course_batch.mentors) WITH ORDINALITY AS e(value, k)"
                   " GROUP BY 1) AS s)")
            creator_json = "to_json(createdby)"
        else:
            new = ("(SELECT json_group_array(v) FROM (SELECT CASE WHEN e.value = :f THEN :t ELSE e.value END AS v,"
                   " min(e.key) AS k FROM json_each(course_batch.mentors) AS e GROUP BY 1 ORDER BY k))")
            creator_json = "json_quote(createdby)"
        params: dict[str, Any] = {"f": from_id, "t": to_id, "tq": json.dumps(to_id)}

        def run(sql: str) -> Any:
            if pg:  # one type for each parameter (it is compared with text and varchar columns)
                sql = re.sub(r":(f|t)\b", r"CAST(:\1 AS TEXT)", sql)
            stmt = sa.text(sql)
            if ":at" in sql:
                stmt = stmt.bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True)))
            return self._conn.execute(stmt, params)

        def set_lists(lists: str) -> str:
            return (f"SET mentors = {lists}, createdby = CASE WHEN course_batch.createdby = :f THEN :t "
                    "ELSE course_batch.createdby END")

        if stamp is None:
            written = int(run(f"UPDATE course_batch {set_lists(new)} WHERE {mentored}").rowcount)
        else:
            params.update(mid=stamp.mid, rid=stamp.request_id, at=stamp.at)
            columns = "mid, request_id, store, record_key, field, before, after, at"
            stamp_sql = f":mid, :rid, '{STORE_COURSE_BATCH}', courseid || '/' || batchid"
            run(f"INSERT INTO audit ({columns}) SELECT {stamp_sql}, 'createdby', {creator_json}, "
                f"{'CAST(:tq AS JSON)' if pg else ':tq'}, :at FROM course_batch WHERE {mentored} "
                "AND createdby = :f ORDER BY courseid, batchid")
            # Each new list is built once (a CTE kept as a table), not again for the audit's test and for the UPDATE:
            # building them is most of this work (README, "Bulk round on the transfer"). PostgreSQL writes the audit
            # rows and the lists in one statement (a data-modifying CTE; its parts see the rows as they were before
            # it); SQLite, which has no such CTE, builds the lists once more for the UPDATE.
            lists = f"WITH n AS MATERIALIZED (SELECT courseid, batchid, mentors, {new} AS new_list FROM course_batch " \
                    f"WHERE {mentored})"
            changed = "n.new_list::jsonb <> n.mentors::jsonb" if pg else "json(n.new_list) <> json(n.mentors)"
            audit_rows = (f"INSERT INTO audit ({columns}) SELECT {stamp_sql}, 'mentors', mentors, new_list, :at FROM n "
                          f"WHERE {changed} ORDER BY courseid, batchid")
            if pg:
                written = int(run(f"{lists}, a AS ({audit_rows}) UPDATE course_batch {set_lists('n.new_list')} "
                                  "FROM n WHERE course_batch.courseid = n.courseid AND course_batch.batchid = n.batchid"
                                  ).rowcount)
            else:
                run(f"{lists} {audit_rows}")
                written = int(run(f"UPDATE course_batch {set_lists(new)} WHERE {mentored}").rowcount)
        active = ("EXISTS (SELECT 1 FROM course_batch cb WHERE cb.courseid = {0}.courseid AND cb.batchid = {0}.batchid "
                  f"AND cb.status IN ({status}))")  # by primary key, for each index row of the user
        run("INSERT INTO course_batch_mentor (userid, courseid, batchid) SELECT :t, m.courseid, m.batchid "
            f"FROM course_batch_mentor m WHERE m.userid = :f AND {active.format('m')} "
            "AND NOT EXISTS (SELECT 1 FROM course_batch_mentor x WHERE x.userid = :t "
            "AND x.courseid = m.courseid AND x.batchid = m.batchid)")
        run(f"DELETE FROM course_batch_mentor WHERE userid = :f AND {active.format('course_batch_mentor')}")
        return written

    def reassign_batch_creator(
        self, from_id: str, to_id: str, statuses: frozenset[int], stamp: AuditStamp | None
    ) -> int:
        cb = course_batch
        match = sa.and_(cb.c.createdby == from_id, cb.c.status.in_(sorted(statuses)))
        if stamp is not None:
            self._audit(stamp, STORE_COURSE_BATCH, cb.c.courseid + "/" + cb.c.batchid, "createdby",
                        cb.c.createdby, to_id, match)
        return int(self._conn.execute(cb.update().where(match).values(createdby=to_id)).rowcount)

    def asset_profiles(self, owner: str, object_types: Sequence[str]) -> Sequence[tuple[str, str | None]]:
        rows = self._conn.execute(
            sa.select(asset.c.objectType, asset.c.schemaVersion)
            .where(asset.c.createdBy == owner, asset.c.objectType.in_(list(object_types)))
            .distinct()
        )
        return [(r[0], r[1]) for r in rows]

    def set_asset_values(
        self, owner: str, object_type: str, schema_version: str | None, values: Mapping[str, Any],
        stamp: AuditStamp | None,
    ) -> int | None:
        plain = [f for f in values if f in ASSET_COLUMNS and f != "identifier"]
        if len(plain) != len(values) or any(isinstance(asset.c[f].type, sa.JSON) for f in plain):
            return None  # a JSON or non-column property: written record by record
        version = asset.c.schemaVersion.is_(None) if schema_version is None else asset.c.schemaVersion == schema_version
        match = sa.and_(asset.c.createdBy == owner, asset.c.objectType == object_type, version)
        if stamp is not None:
            for field, value in values.items():
                self._audit(stamp, STORE_ASSET, asset.c.identifier, field, asset.c[field], value, match)
        return int(self._conn.execute(asset.update().where(match).values(dict(values))).rowcount)

    # --- undo (``service.ports.ColumnReverts``) ---

    def revert_columns(self, mid: str, stamp: AuditStamp) -> list[tuple[str, str, int]]:
        self._audit_log.flush()
        a = audit
        # How many rows each field has, not how many records: a field the event changed twice in one record is
        # caught by the all-or-nothing check, as the UPDATE writes each record once (fewer records than rows).
        groups = self._conn.execute(
            sa.select(a.c.store, a.c.field, sa.func.count()).where(a.c.mid == mid).group_by(a.c.store, a.c.field)
        ).all()
        self._event_fields[mid] = frozenset((store, field) for store, field, _ in groups)
        fields: dict[str, set[str]] = {}
        for store, field, _ in groups:
            fields.setdefault(store, set()).add(field)
        eligible = [(store, field, rows) for store, field, rows in groups
                    if field in REVERTIBLE_COLUMNS.get(store, ())
                    and not any(f.startswith(field + ".") for f in fields[store])]  # a path into it: record by record
        together: set[tuple[str, str]] = set()
        records: dict[str, int] = {}  # per store whose every field was done: how many records
        if self._conn.dialect.name == "postgresql":  # each record rewritten once, not once per field
            for store in sorted({store for store, _, _ in eligible}):
                mine = [(field, rows) for s, field, rows in eligible if s == store]
                written = self._revert_together(mid, store, mine) if len(mine) > 1 else None
                if written is not None:
                    together.update((store, field) for field, _ in mine)
                    records[store] = written
        done = []
        for store, field, rows in eligible:
            reverted: int | None
            if (store, field) in together:
                reverted = rows
            elif field == "mentors":
                reverted = self._revert_mentors(mid, rows)
            else:
                reverted = self._revert_column(mid, store, field, rows)
            if reverted is not None:
                done.append((store, field, reverted))
        if done:  # the undo's audit rows of every field done, in one pass over the event's audit rows
            self._audit_undo(sa.and_(a.c.mid == mid, sa.or_(*(
                sa.and_(a.c.store == store, a.c.field == field) for store, field, _ in done))), stamp)
        for store, field, rows in done:  # one field of a store, all or nothing: each record once, one per row
            if [f for s, f in self._event_fields[mid] if s == store] == [field]:
                records[store] = rows
        if {(store, field) for store, field, _ in done} == self._event_fields[mid] and records.keys() == fields.keys():
            self._undone_records[stamp.mid] = records  # the undo audits every row of the event, nothing else
        return done

    def _revert_column(self, mid: str, store: str, field: str, rows: int) -> int | None:
        """Every change of ``field`` by ``mid``, or nothing (None) when one of them cannot be reverted this way."""
        a = audit
        pg = self._conn.dialect.name == "postgresql"

        def kind(value: Any) -> Any:
            return sa.func.json_typeof(value) if pg else sa.func.json_type(value)

        def decoded(value: Any) -> Any:
            return value.op("#>>", return_type=sa.Text)(sa.literal_column("'{}'")) if pg else sa.func.json_extract(
                value, "$", type_=sa.Text)

        text, null = ("string", "null") if pg else ("text", "null")
        after_ok = sa.or_(a.c.after.is_(None), kind(a.c.after).in_([text, null]))
        if store == STORE_ASSET:
            table, column = asset, asset.c[field]
            join = asset.c.identifier == a.c.record_key
            before_ok = sa.or_(a.c.before.is_(None), kind(a.c.before).in_([text, null]))
        else:  # a batch's creator is never cleared: a string before
            table, column = course_batch, course_batch.c.createdby
            slash = sa.func.strpos(a.c.record_key, "/") if pg else sa.func.instr(a.c.record_key, "/")
            join = sa.and_(course_batch.c.courseid == sa.func.substr(a.c.record_key, 1, slash - 1),
                           course_batch.c.batchid == sa.func.substr(a.c.record_key, slash + 1))
            before_ok = sa.and_(a.c.before.is_not(None), kind(a.c.before) == text)
        mine = sa.and_(a.c.mid == mid, a.c.store == store, a.c.field == field)
        holds = column.is_not_distinct_from(decoded(a.c.after))
        update = table.update().where(join, mine, after_ok, before_ok, holds).values({column.name: decoded(a.c.before)})
        return self._all_or_nothing(lambda: int(self._conn.execute(update).rowcount), rows)

    def _revert_together(self, mid: str, store: str, fields: Sequence[tuple[str, int]]) -> int | None:
        """PostgreSQL: ``_revert_column`` (and ``_revert_mentors``) of several ``fields`` (field, audit rows) of one
        store in one UPDATE ... FROM the event's audit rows of those fields, one row per record (a record's field
        without a change keeps its value): PostgreSQL writes a new version of a row for each UPDATE of it, so one
        UPDATE per field wrote every record once per field. All or nothing: kept only when every audit row of the
        fields was reverted (each record's change of each field still holds, and once per record per field): how
        many records it wrote; else rolled back (None), and the caller goes field by field as before, which decides
        per field."""
        picks, sets, tests = [], [], []
        params: dict[str, Any] = {"mid": mid, "store": store}
        for i, (field, _) in enumerate(fields):
            params[f"f{i}"] = field
            n, b, a = f"p.n{i}", f"p.b{i}", f"p.a{i}"
            picks.append(f"count(*) FILTER (WHERE a.field = :f{i}) AS n{i}, "
                         f'(array_agg(a."before") FILTER (WHERE a.field = :f{i}))[1] AS b{i}, '
                         f'(array_agg(a."after") FILTER (WHERE a.field = :f{i}))[1] AS a{i}')
            column = f't."{field}"'
            if field == "mentors":  # as _revert_mentors: lists, the one before of strings, the one after equal
                value = b
                test = (f"{a} IS NOT NULL AND json_typeof({a}) = 'array' AND {column}::jsonb = {a}::jsonb "
                        f"AND {b} IS NOT NULL AND json_typeof({b}) = 'array' AND NOT EXISTS (SELECT 1 FROM "
                        f"json_array_elements(CASE WHEN json_typeof({b}) = 'array' THEN {b} ELSE '[]'::json END) e "
                        "WHERE json_typeof(e) <> 'string')")
            else:  # as _revert_column: text or null after; before too (a batch's creator: text)
                value = f"{b} #>> '{{}}'"
                before_ok = (f"{b} IS NOT NULL AND json_typeof({b}) = 'string'" if store == STORE_COURSE_BATCH
                             else f"({b} IS NULL OR json_typeof({b}) IN ('string', 'null'))")
                test = (f"({a} IS NULL OR json_typeof({a}) IN ('string', 'null')) AND {before_ok} "
                        f"AND {column} IS NOT DISTINCT FROM ({a} #>> '{{}}')")
            sets.append(f'"{field}" = CASE WHEN {n} = 1 THEN {value} ELSE {column} END')
            tests.append(f"({n} = 0 OR ({n} = 1 AND {test}))")
        if store == STORE_ASSET:
            table, join = "asset", "t.identifier = p.record_key"
        else:
            at = "strpos(p.record_key, '/')"
            table = "course_batch"
            join = f"t.courseid = substr(p.record_key, 1, {at} - 1) AND t.batchid = substr(p.record_key, {at} + 1)"
        names = ", ".join(f":f{i}" for i in range(len(fields)))
        counted = " + ".join(f"p.n{i}" for i in range(len(fields)))
        sql = (f"WITH p AS (SELECT a.record_key, {', '.join(picks)} FROM audit a WHERE a.mid = :mid "
               f"AND a.store = :store AND a.field IN ({names}) GROUP BY a.record_key), "
               f"u AS (UPDATE {table} AS t SET {', '.join(sets)} FROM p WHERE {join} AND {' AND '.join(tests)} "
               f"RETURNING {counted} AS k) SELECT coalesce(sum(k), 0), count(*) FROM u")
        written: list[int] = []

        def write() -> int:
            reverted, records = self._conn.execute(sa.text(sql), params).one()
            written.append(int(records))
            return int(reverted)

        if self._all_or_nothing(write, sum(r for _, r in fields)) is None:
            return None
        if any(field == "mentors" for field, _ in fields):
            self._reindex_mentors(mid)
        return written[0]

    def _all_or_nothing(self, write: Callable[[], int], rows: int) -> int | None:
        """``write()`` (an UPDATE of the records whose change can be reverted, returning how many it wrote) in a
        savepoint, kept only when it wrote all ``rows``; else rolled back (None). ``revert_columns`` audits the
        fields kept, all at once."""
        savepoint = self._conn.begin_nested()
        if write() != rows:  # a record gone, changed since, or a value of another kind: record by record
            savepoint.rollback()
            return None
        savepoint.commit()
        return rows

    def _revert_mentors(self, mid: str, rows: int) -> int | None:
        """``_revert_column`` of the batches' mentor lists (a list of strings before; the list equal to the one
        after, as JSON) and of their index rows (rebuilt from the lists put back)."""
        pg = self._conn.dialect.name == "postgresql"
        at = "strpos(a.record_key, '/')" if pg else "instr(a.record_key, '/')"
        courseid, batchid = f"substr(a.record_key, 1, {at} - 1)", f"substr(a.record_key, {at} + 1)"
        join = f"cb.courseid = {courseid} AND cb.batchid = {batchid}"
        mine = "a.mid = :mid AND a.store = :store AND a.field = 'mentors'"
        if pg:
            holds = 'cb.mentors::jsonb = a."after"::jsonb'
            array = "json_typeof({}) = 'array'"
            strings = ("NOT EXISTS (SELECT 1 FROM json_array_elements(CASE WHEN json_typeof(a.\"before\") = 'array' "
                       "THEN a.\"before\" ELSE '[]'::json END) e WHERE json_typeof(e) <> 'string')")
        else:
            holds = 'json(cb.mentors) = json(a."after")'
            array = "json_type({}) = 'array'"
            strings = "NOT EXISTS (SELECT 1 FROM json_each(a.\"before\") e WHERE e.type <> 'text')"
        after, before = array.format('a."after"'), array.format('a."before"')
        clean = (f'cb.courseid IS NOT NULL AND a."after" IS NOT NULL AND {after} AND {holds} '
                 f'AND a."before" IS NOT NULL AND {before} AND {strings}')
        params = {"mid": mid, "store": STORE_COURSE_BATCH}

        def run(sql: str) -> Any:
            return self._conn.execute(sa.text(sql), params)

        target, where = join.replace("cb.", "course_batch."), clean.replace("cb.", "course_batch.")
        if self._all_or_nothing(
            lambda: int(run(f'UPDATE course_batch SET mentors = a."before" FROM audit a WHERE {target} AND {mine} '
                            f"AND {where}").rowcount),
            rows,
        ) is None:
            return None
        self._reindex_mentors(mid)
        return rows

    def _reindex_mentors(self, mid: str) -> None:
        """The mentor index rows of the batches whose lists event ``mid`` changed, rebuilt from the lists put back
        (the audit rows' ``before``)."""
        pg = self._conn.dialect.name == "postgresql"
        at = "strpos(a.record_key, '/')" if pg else "instr(a.record_key, '/')"
        courseid, batchid = f"substr(a.record_key, 1, {at} - 1)", f"substr(a.record_key, {at} + 1)"
        mine = "a.mid = :mid AND a.store = :store AND a.field = 'mentors'"
        if pg:
            elements = 'CROSS JOIN LATERAL json_array_elements_text(a."before") AS j(value)'
        else:
            elements = ', json_each(a."before") AS j'
        params = {"mid": mid, "store": STORE_COURSE_BATCH}

        def run(sql: str) -> Any:
            return self._conn.execute(sa.text(sql), params)

        run(f"DELETE FROM course_batch_mentor WHERE (courseid, batchid) IN (SELECT {courseid}, {batchid} "
            f"FROM audit a WHERE {mine})")
        # A mentor listed twice is indexed once: on SQLite by the primary key (every index row of these batches was
        # deleted just above, so only a repeat within a list is ignored; cheaper than DISTINCT's temporary index)
        insert = "INSERT INTO" if pg else "INSERT OR IGNORE INTO"
        run(f"{insert} course_batch_mentor (userid, courseid, batchid) SELECT {'DISTINCT ' if pg else ''}j.value, "
            f"{courseid}, {batchid} FROM audit a {elements} WHERE {mine}")

    def _audit_undo(self, mine: Any, stamp: AuditStamp) -> None:
        """The undo's audit rows of the audit rows ``mine``: under ``stamp``, before and after swapped."""
        a = audit
        names = ["mid", "request_id", "store", "record_key", "field", "before", "after", "at"]
        select = sa.select(
            sa.cast(sa.literal(stamp.mid), sa.String), a.c.request_id, a.c.store, a.c.record_key, a.c.field,
            a.c.after, a.c.before, sa.literal(stamp.at, sa.DateTime(timezone=True)),
        ).where(mine).order_by(a.c.id.desc())
        self._conn.execute(audit.insert().from_select(names, select))

    def audit_page_except(
        self, mid: str, skip: Sequence[tuple[str, str]], *, cursor: str | None, limit: int
    ) -> AuditPage:
        """Nothing read when ``skip`` holds every field of the event (``revert_columns`` did them all)."""
        fields = self._event_fields.get(mid)
        if fields is not None and fields <= set(skip):
            return AuditPage([], None)
        return self._audit_log.page(mid=mid, newest_first=True, cursor=cursor, limit=limit, skip=skip)

    def audited_records(self, mid: str) -> dict[str, int]:
        known = self._undone_records.get(mid)
        if known is not None:
            return dict(known)
        self._audit_log.flush()
        a = audit
        rows = self._conn.execute(
            sa.select(a.c.store, sa.func.count(sa.distinct(a.c.record_key))).where(a.c.mid == mid).group_by(a.c.store)
        )
        return {r[0]: int(r[1]) for r in rows}

    def _audit(
        self, stamp: AuditStamp, store: str, key: Any, field: str, column: Any, value: Any, match: Any
    ) -> None:
        """One audit row per matching record whose ``column`` differs from ``value``."""
        self._audit_log.flush()
        pg = self._conn.dialect.name == "postgresql"
        before = sa.func.to_json(column) if pg else sa.case((column.is_(None), None), else_=sa.func.json_quote(column))
        after = sa.cast(sa.literal(json.dumps(value)), postgresql.JSON) if pg else sa.literal(json.dumps(value))
        select = sa.select(
            sa.cast(sa.literal(stamp.mid), sa.String),
            sa.cast(sa.literal(stamp.request_id), sa.String),
            sa.cast(sa.literal(store), sa.String),
            key,
            sa.cast(sa.literal(field), sa.String),
            before,
            after,
            sa.literal(stamp.at, sa.DateTime(timezone=True)),
        ).where(match, column.is_distinct_from(value))
        names = ["mid", "request_id", "store", "record_key", "field", "before", "after", "at"]
        self._conn.execute(audit.insert().from_select(names, select))


READ_AHEAD_USERS = 16  # users per read-ahead statement (a UNION ALL of one limited part per user, ``_union_all``)


_PARTS: dict[Hashable, tuple[str, list[str], dict[str, Any]]] = {}  # key -> SQL, parameter order, built-in values


def _union_all(conn: Connection, key: Hashable, part: Callable[[], Any], params: Sequence[Mapping[str, Any]]) -> Any:
    """Raw rows of a ``UNION ALL`` of the statement ``part()`` makes, once for each item of ``params`` (that part's
    parameters), on SQLite. The part is compiled once per ``key`` (which must name every value built into it) and
    repeated in the statement's text: SQLAlchemy compiles a union of many parts in a time that grows with them."""
    assert conn.dialect.name == "sqlite", "positional parameters"
    entry = _PARTS.get(key)
    if entry is None:
        compiled = part().compile(dialect=conn.dialect)
        assert compiled.positional and compiled.positiontup is not None
        entry = (compiled.string, list(compiled.positiontup), compiled.construct_params(_check=False))
        _PARTS[key] = entry
    sql, order, defaults = entry
    text = " UNION ALL ".join([f"SELECT * FROM ({sql})"] * len(params))
    return conn.exec_driver_sql(text, tuple({**defaults, **p}[name] for p in params for name in order))


class SqlReadAhead:
    """``service.ports.ReadAhead``: a micro-batch's reads at once. Each user's part of a statement is the query of
    the first page the per-event read runs (same index, same order, same limit), in one ``UNION ALL`` for up to
    ``READ_AHEAD_USERS`` users."""

    def __init__(self, conn: Connection, audit_log: SqlAudit, outbox: SqlOutbox) -> None:
        self._conn = conn
        self._audit_log = audit_log
        self._outbox = outbox

    def assets_by_id(self, identifiers: Sequence[str]) -> dict[str, Asset]:
        return {a.identifier: a for a in map(_asset, _rows_with(self._conn, asset.c.identifier, identifiers))}

    def assets_of_users(
        self, user_ids: Sequence[str], object_types: Sequence[str], limit: int
    ) -> dict[str, list[Asset]]:
        types = list(object_types)
        found: dict[str, dict[str, Asset]] = {u: {} for u in user_ids}

        def part() -> Any:
            return (_raw_json_select(asset)
                    .where(asset.c.createdBy == sa.bindparam("u"), _one_of(asset.c.objectType, types, "t"))
                    .order_by(asset.c.identifier).limit(limit))

        for chunk in chunks(list(dict.fromkeys(user_ids)), READ_AHEAD_USERS):
            key = ("read_ahead.assets", tuple(types), limit)
            for row in _union_all(self._conn, key, part, [{"u": u} for u in chunk]).fetchall():
                a = _asset(row)
                found[str(a.createdBy)][a.identifier] = a
        return {u: sorted(owned.values(), key=lambda a: a.identifier) for u, owned in found.items()}

    def batches_of_users(
        self, user_ids: Sequence[str], statuses: frozenset[int], limit: int
    ) -> dict[str, tuple[list[CourseBatch], list[CourseBatch]]]:
        cb, m = course_batch, course_batch_mentor
        status = sorted(statuses)
        created: dict[str, dict[tuple[str, str], CourseBatch]] = {u: {} for u in user_ids}
        mentored: dict[str, dict[tuple[str, str], CourseBatch]] = {u: {} for u in user_ids}

        def part() -> Any:  # one user's: the batches the user created, then those the user mentors and did not
            u: Any = sa.bindparam("u")
            index = sa.bindparam("p", type_=sa.Integer)
            return sa.union_all(
                sa.select(
                    _raw_json_select(cb).add_columns(index.label("part"), sa.literal_column("0").label("mentored"))
                    .where(cb.c.createdby == u, _one_of(cb.c.status, status, "s"))
                    .order_by(cb.c.courseid, cb.c.batchid).limit(limit).subquery()
                ),
                sa.select(
                    _raw_json_select(cb).add_columns(index.label("part"), sa.literal_column("1").label("mentored"))
                    .join(m, sa.and_(m.c.courseid == cb.c.courseid, m.c.batchid == cb.c.batchid))
                    .where(m.c.userid == u, _one_of(cb.c.status, status, "z"),
                           sa.or_(cb.c.createdby.is_(None), cb.c.createdby != u))
                    .order_by(m.c.courseid, m.c.batchid).limit(limit).subquery()
                ),
            )

        for chunk in chunks(list(dict.fromkeys(user_ids)), READ_AHEAD_USERS):
            key = ("read_ahead.batches", tuple(status), limit)
            for row in _union_all(self._conn, key, part, [{"u": u, "p": i} for i, u in enumerate(chunk)]).fetchall():
                b = _batch(row)
                (mentored if row[-1] else created)[chunk[row[-2]]][b.key] = b
        return {u: (sorted(created[u].values(), key=lambda b: b.key), sorted(mentored[u].values(), key=lambda b: b.key))
                for u in user_ids}

    def hold_deletions(self, user_ids: Sequence[str], mids: Sequence[str]) -> None:
        """``SqlAudit.hold`` and ``SqlOutbox.hold``."""
        self._audit_log.hold(user_ids, mids)
        self._outbox.hold(mids)

    def audited_assets(self, mids: Sequence[str]) -> dict[str, list[str]]:
        self._audit_log.flush()
        found: dict[str, list[str]] = {}
        dialect_name = self._conn.dialect.name
        for n, params in _value_lists(dialect_name, mids, "k"):

            def build(n: int = n) -> Any:
                return (sa.select(audit.c.mid, audit.c.record_key).distinct()
                        .where(_member(audit.c.mid, "k", dialect_name, n), audit.c.store == STORE_ASSET))

            for mid, key in run_prepared(self._conn, ("read_ahead.audited", n), build, params).fetchall():
                found.setdefault(mid, []).append(key)
        return found


class SqlCounts:
    """``service.ports.RecordCounts`` of a preview: the queries of the page reads, counted (index ranges).

    ``counted``: one dict shared by the units of work of one preview (``SqlStore.preview``). Each user's batches
    are then counted once for every status and assets once for every (objectType, schemaVersion), and kept there:
    the engine's counts and the "stays with" counts the preview takes after them (other statuses, other types)
    are one walk of each index range instead of two. A preview writes nothing, so what it counted stays true for
    it."""

    def __init__(self, conn: Connection, counted: dict[tuple[str, str], Any] | None = None) -> None:
        self._conn = conn
        self._counted = counted

    def batches_of_user(self, user_id: str, statuses: frozenset[int]) -> int:
        if self._counted is not None:
            by_status = self._counted.get(("batches", user_id))
            if by_status is None:
                by_status = self._counted[("batches", user_id)] = self._batches_by_status(user_id)
            return sum(by_status.get(s, 0) for s in statuses)
        created, mentored = self._batch_queries(user_id)
        status = sorted(statuses)
        return sum(int(self._conn.execute(q.where(course_batch.c.status.in_(status))).scalar_one())
                   for q in (created, mentored))

    def _batch_queries(self, user_id: str) -> tuple[Any, Any]:
        """The counts of the batches ``user_id`` created and of those the user mentors and did not create."""
        cb, m = course_batch, course_batch_mentor
        created = sa.select(sa.func.count()).where(cb.c.createdby == user_id)
        mentored = (
            sa.select(sa.func.count())
            .select_from(cb.join(m, sa.and_(m.c.courseid == cb.c.courseid, m.c.batchid == cb.c.batchid)))
            .where(m.c.userid == user_id, sa.or_(cb.c.createdby.is_(None), cb.c.createdby != user_id))
        )
        return created, mentored

    def _batches_by_status(self, user_id: str) -> dict[int, int]:
        by_status: dict[int, int] = {}
        for query in self._batch_queries(user_id):
            grouped = query.add_columns(course_batch.c.status).group_by(course_batch.c.status)
            for n, status in self._conn.execute(grouped):
                by_status[status] = by_status.get(status, 0) + int(n)
        return by_status

    def asset_profile_counts(self, owner: str, object_types: Sequence[str]) -> list[tuple[str, str | None, int]]:
        if self._counted is not None:
            wanted = set(object_types)
            return [row for row in self._asset_profiles(owner) if row[0] in wanted]
        query = (
            sa.select(asset.c.objectType, asset.c.schemaVersion, sa.func.count())
            .where(asset.c.createdBy == owner, asset.c.objectType.in_(list(object_types)))
            .group_by(asset.c.objectType, asset.c.schemaVersion)
        )
        return [(r[0], r[1], int(r[2])) for r in self._conn.execute(query)]

    def asset_types(self, owner: str) -> dict[str, int]:
        if self._counted is None:
            query = (sa.select(asset.c.objectType, sa.func.count()).where(asset.c.createdBy == owner)
                     .group_by(asset.c.objectType))
            return {str(t): int(n) for t, n in self._conn.execute(query)}
        by_type: dict[str, int] = {}
        for object_type, _, n in self._asset_profiles(owner):
            by_type[str(object_type)] = by_type.get(str(object_type), 0) + n
        return by_type

    def _asset_profiles(self, owner: str) -> list[tuple[str, str | None, int]]:
        """(objectType, schemaVersion, how many) of every asset ``owner`` created, counted once (``counted``)."""
        assert self._counted is not None
        found = self._counted.get(("assets", owner))
        if found is None:
            query = (
                sa.select(asset.c.objectType, asset.c.schemaVersion, sa.func.count())
                .where(asset.c.createdBy == owner)
                .group_by(asset.c.objectType, asset.c.schemaVersion)
            )
            found = self._counted[("assets", owner)] = [(r[0], r[1], int(r[2])) for r in self._conn.execute(query)]
        return list(found)


# --- unit of work and store -------------------------------------------------------------------------


class SqlUnitOfWork:
    """One transaction (or, inside a preview, one savepoint) around the repositories."""

    users: SqlUsers
    batches: SqlBatches
    assets: SqlAssets
    ledger: SqlLedger
    outbox: SqlOutbox
    audit: SqlAudit
    bulk: SqlBulk | None  # None in a preview
    counts: SqlCounts | None  # only in a preview or a read-only unit
    reverts: SqlBulk | None  # None in a preview

    def __init__(
        self, engine: Engine, shared: Connection | None = None, preview: dict[str, LedgerEntry] | None = None,
        *, read_only: bool = False, counted: dict[tuple[str, str], Any] | None = None,
    ) -> None:
        """``preview``: a unit of work that writes nothing (the ledger rows it would write are kept in this dict,
        so that a repeated mid is still a duplicate); give it the ``reader`` engine, and it takes no lock.
        ``read_only``: one that only reads (``SqlStore.read_only``); it counts (``counts``) as a preview does.
        ``counted``: in a preview, the counts its units of work share (``SqlCounts``)."""
        self._engine = engine
        self._shared = shared
        self._preview = preview
        self._read_only = read_only
        self._conn: Connection | None = None
        self._tx: Any = None
        self._records_ahead: SqlReadAhead | None = None
        self._counted = counted

    def __enter__(self) -> Self:
        try:
            if self._shared is not None:
                self._conn = self._shared
                self._tx = self._conn.begin_nested()
            else:
                self._conn = self._engine.connect()
                self._tx = self._conn.begin()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database unavailable: {exc.orig}") from exc
        conn = self._conn
        self.users = SqlUsers(conn)
        if self._preview is not None:
            self.batches, self.assets = _PreviewBatches(conn), _PreviewAssets(conn)
            self.ledger, self.outbox = _PreviewLedger(conn, self._preview), _PreviewOutbox(conn)
            self.audit, self.bulk = _PreviewAudit(conn), None  # set-based paths rely on their own writes
            self.counts = SqlCounts(conn, self._counted)  # what they would write is counted instead
            self.reverts, self._records_ahead = None, None
            return self
        self.batches, self.assets = SqlBatches(conn), SqlAssets(conn)
        self.ledger, self.outbox, self.audit = SqlLedger(conn), SqlOutbox(conn), SqlAudit(conn)
        self.bulk, self.counts = SqlBulk(conn, self.audit), SqlCounts(conn) if self._read_only else None
        self.reverts = self.bulk
        # on SQLite outside previews (``service.batch_reads`` sorts by code point, as SQLite does)
        self._records_ahead = SqlReadAhead(conn, self.audit, self.outbox) if conn.dialect.name == "sqlite" else None
        return self

    def read_ahead(self, plan: ReadPlan) -> SqlReadAhead | None:
        """Nothing is read here: on SQLite (outside previews) the reader of a micro-batch's records
        (``ports.ReadAhead``) the engine then asks for the events that are not duplicates; elsewhere None (each
        read is one query on the transaction's connection when it is made)."""
        return self._records_ahead

    def lock_users(self, user_ids: Iterable[str]) -> None:
        """PostgreSQL: ``pg_advisory_xact_lock`` on each user id (hashed to 64 bits), sorted; outside previews."""
        assert self._conn is not None
        if self._preview is not None or self._conn.dialect.name != "postgresql":
            return
        for user_id in sorted(set(user_ids)):
            self._conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(user_id))))

    def commit(self) -> None:
        if self._preview is None:
            self.audit.flush()
            self.ledger.flush()
            self.outbox.flush()
        self._tx.commit()
        self._tx = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Roll back what was not committed; a deadlock, a serialization failure or a unique violation (PostgreSQL
        40P01, 40001, 23505) comes out as ``StoreContention`` (the caller runs the work again)."""
        try:
            self._end()
        finally:
            if isinstance(exc, sa.exc.DBAPIError) and getattr(exc.orig, "sqlstate", None) in CONTENTION:
                raise StoreContention(str(exc.orig)) from exc

    def _end(self) -> None:
        if self._tx is not None and self._tx.is_active:
            self._tx.rollback()
        self._tx = None
        if self._shared is None and self._conn is not None:
            self._conn.close()
        self._conn = None


class _PreviewBatches(SqlBatches):
    def write(self, updates: Sequence[BatchUpdate]) -> None:
        return None


class _PreviewAssets(SqlAssets):
    def write(self, updates: Sequence[AssetUpdate]) -> None:
        return None


class _PreviewLedger(SqlLedger):
    def __init__(self, conn: Connection, kept: dict[str, LedgerEntry]) -> None:
        super().__init__(conn)
        self._kept = kept

    def get(self, mid: str) -> LedgerEntry | None:
        return self._kept.get(mid) or super().get(mid)

    def get_many(self, mids: Sequence[str]) -> dict[str, LedgerEntry]:
        return {**super().get_many(mids), **{m: self._kept[m] for m in mids if m in self._kept}}

    def record(self, entry: LedgerEntry) -> None:
        self._kept[entry.mid] = entry


class _PreviewOutbox(SqlOutbox):
    def record(self, note: Notification) -> bool:
        return True


class _PreviewAudit(SqlAudit):
    def record(self, records: Sequence[AuditRecord]) -> None:
        return None

    def redact(self, user_id: str, values: Sequence[str], replacement: str) -> int:
        return 0


CONTENTION = frozenset({"40P01", "40001", "23505"})  # deadlock, serialization failure, unique violation


def _lock_key(user_id: str) -> int:
    """A signed 64-bit advisory lock key for a user id (the first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).digest()[:8], "big", signed=True)


class SqlStore:
    """The embedded / SQL store: schema, fixtures, dumps, and units of work for the engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._probe_ready = False
        try:
            self.engine = create_engine(url)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"bad store URL {url!r}: {exc}") from exc
        self.reader = reader(self.engine)  # reads that must not take SQLite's write lock

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine)

    def read_only(self) -> SqlUnitOfWork:
        """A unit of work for reads (validation, status, console pages): on SQLite it takes no write lock, so it
        neither waits for the worker nor makes a submit wait; rolled back at the end, it must not write."""
        return SqlUnitOfWork(self.reader, read_only=True)

    def probe(self) -> None:
        """A real, cheap write (one row of ``store_probe``, committed): ``StoreError`` when the store cannot write
        now (read-only file, full disk, server down). ``/health`` and the in-process worker ask it."""
        try:
            if not self._probe_ready:
                metadata.create_all(self.engine, tables=[store_probe])  # a store initialised before the probe
                self._probe_ready = True
            try:
                probe_writes(self.engine)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                probe_writes(self.engine)  # the pool was dropped: once more on a fresh connection
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store cannot write: {getattr(exc, 'orig', exc)}") from exc

    @contextmanager
    def preview(self, *, carry_changes: bool = False) -> Iterator[Any]:
        """A unit-of-work factory whose units change nothing. By default they read through ``reader`` and write
        nothing (no write lock on SQLite, however large the preview; one event's changes are not seen by the next,
        as on ``sunbird://``: exact for the events of one API request). ``carry_changes``: each event sees the
        changes of those before it (``replay --dry-run``): on a SQLite file the units write to a snapshot of the
        database (a consistent copy taken under a read transaction, in the system's temporary directory, deleted at
        the end), so the store's write lock is never taken; on PostgreSQL they write inside one transaction rolled
        back at the end."""
        if not carry_changes:
            ledger: dict[str, LedgerEntry] = {}
            counted: dict[tuple[str, str], Any] = {}
            yield lambda: SqlUnitOfWork(self.reader, preview=ledger, counted=counted)
            return
        path = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and path and path != ":memory:" and not path.startswith("file:"):
            with _sqlite_snapshot(path) as copy:
                snapshot = SqlStore(f"sqlite:///{copy}")
                try:
                    yield snapshot
                finally:
                    snapshot.engine.dispose()
            return
        with self.connect() as conn:
            outer = conn.begin()
            try:
                yield lambda: SqlUnitOfWork(self.engine, shared=conn)
            finally:
                outer.rollback()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database unavailable: {exc.orig}") from exc
        try:
            yield conn
        finally:
            conn.close()

    def missing_tables(self) -> list[str]:
        """The tables of the schema that the database lacks (all of them before ``handover init``)."""
        try:
            present = set(sa.inspect(self.engine).get_table_names())
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database unavailable: {exc.orig}") from exc
        return [t.name for t in metadata.sorted_tables if t.name not in present]

    def is_empty(self) -> bool:
        """No table of the schema exists yet: a new store."""
        return len(self.missing_tables()) == len(metadata.sorted_tables)

    def init_schema(self) -> None:
        """Create the tables and indexes that are missing (an index or a nullable column added to an existing
        table too)."""
        try:
            metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
            with self.engine.begin() as conn:  # IF NOT EXISTS: checkfirst cannot see an index on an expression
                dialect = conn.dialect.name
                for name in LEGACY_INDEXES.get(dialect, ()):
                    conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
                for table in metadata.sorted_tables:
                    for index in table.indexes:
                        if AUDIT_TEXT_INDEXES.get(str(index.name), dialect) == dialect:
                            conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
        except sa.exc.OperationalError as exc:
            raise StoreError(f"database unavailable: {exc.orig}") from exc

    def load(self, doc: Mapping[str, Any] | FixtureMembers, *, chunk_size: int = LOAD_CHUNK) -> dict[str, int]:
        """Upsert the users, course batches and assets of a fixture, a decoded document or a stream of its members
        (``service.json_stream``: then in the text's order, ``chunk_size`` records parsed and written at a time,
        so that memory does not grow with the fixture), in one transaction. A key given twice: the last one wins
        (its mentor index too), across chunks as well. The counts are of the records read (duplicates included):
        ``{"users": n, "course_batches": n, "assets": n}``. ValueError on a bad fixture, naming the record;
        ``notifications`` are ignored. Any error (the stream's too) rolls back: nothing is written."""
        counts = dict.fromkeys(FIXTURE_KEYS, 0)
        write = {"users": _load_users, "course_batches": _load_batches, "assets": _load_assets}
        with self.connect() as conn, conn.begin():
            for key, records, storable in fixture_records(doc):
                for chunk in batched(records, chunk_size):
                    counts[key] += len(chunk)
                    write[key](conn, chunk, storable)
        return counts

    def dump_sections(self) -> Iterator[tuple[str, Iterable[dict[str, Any]]]]:
        """The store as SPEC 4's dump sections, each streamed in key order."""
        with self.connect() as conn:

            def ordered(table: sa.Table, *keys: str) -> Iterator[Any]:
                return _stream(conn, sa.select(table).order_by(*(_codepoint(conn, table.c[k]) for k in keys)))

            yield "users", (_user(r).to_json() for r in ordered(users, "id"))
            yield "course_batches", (_batch(r).to_json() for r in ordered(course_batch, "courseid", "batchid"))
            yield "assets", (_asset(r).to_json() for r in ordered(asset, "identifier"))
            yield "notifications", (
                {"mid": r.mid, "recipientUserIds": r.recipientUserIds, "assets": r.assets}
                for r in ordered(notification, "mid")
            )


def _load_users(conn: Connection, records: list[Mapping[str, Any]], storable: Callable[[], bool]) -> None:
    parsed = {u.id: u for u in map(user_from_json, records)}  # a key given twice: the last one wins
    upsert_rows(conn, users, [u.to_json() for u in parsed.values()])


def _load_batches(conn: Connection, records: list[Mapping[str, Any]], storable: Callable[[], bool]) -> None:
    # the strings checked all at once (else each record says what is wrong)
    checked = storable() or first_bad_string(records) is None
    parsed = list({b.key: b for b in (batch_from_json(r, text_checked=checked) for r in records)}.values())
    upsert_rows(conn, course_batch, [b.to_json() for b in parsed])
    m = course_batch_mentor
    delete_rows(conn, m, ("courseid", "batchid"), [{"courseid": b.courseid, "batchid": b.batchid} for b in parsed])
    insert_rows(conn, m, [{"userid": x, "courseid": b.courseid, "batchid": b.batchid}
                          for b in parsed for x in dict.fromkeys(b.mentors)])


def _load_assets(conn: Connection, records: list[Mapping[str, Any]], storable: Callable[[], bool]) -> None:
    checked = storable() or first_bad_string(records) is None
    parsed = {a.identifier: a for a in (asset_from_json(r, text_checked=checked) for r in records)}
    upsert_rows(conn, asset, [_asset_row(a) for a in parsed.values()])


def _add_missing_columns(engine: Engine) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for each nullable column of ``metadata`` an existing table lacks (a table
    created by an earlier version)."""
    inspector = sa.inspect(engine)
    missing = []
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing += [(table, c) for c in table.columns if c.name not in present and c.nullable]
    if not missing:
        return
    quote = engine.dialect.identifier_preparer.format_table
    with engine.begin() as conn:
        for table, column in missing:
            spec = sa.schema.CreateColumn(column).compile(dialect=engine.dialect)
            conn.execute(sa.text(f"ALTER TABLE {quote(table)} ADD COLUMN {spec}"))


@contextmanager
def _sqlite_snapshot(path: str) -> Iterator[str]:
    """A consistent copy of the SQLite database at ``path`` (SQLite's online backup, in one step under a read
    transaction: in WAL mode writers go on meanwhile), as a temporary file deleted at the end. ``StoreError``
    when it cannot be read or copied (e.g. the temporary directory is full)."""
    with tempfile.TemporaryDirectory(prefix="handover-dry-run-") as tmp:
        copy = os.path.join(tmp, "snapshot.db")
        try:
            source = sqlite3.connect(path, timeout=30)  # only read (a read-only open can fail on a WAL database)
            try:
                target = sqlite3.connect(copy)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot take a snapshot of {path} for the dry run: {exc}") from exc
        yield copy


def _codepoint(conn: Connection, column: Any) -> Any:
    """Order by code point on every database (PostgreSQL's default collation is locale-aware)."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def _stream(conn: Connection, stmt: Any) -> Iterator[Any]:
    result = conn.execution_options(yield_per=1000).execute(stmt)
    yield from result


