"""The SQL store's tables (SPEC 3, plus the ledger, outbox and audit) and its engine: SQLite (the embedded
default) and PostgreSQL through the same SQLAlchemy Core code.

``course_batch_mentor`` indexes the mentors lists, so that a user's batches are found without a scan.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from datetime import UTC, datetime
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: each process's own turns only
    fcntl = None  # type: ignore[assignment]

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(255), primary_key=True),
    sa.Column("userName", sa.Text, nullable=False, default=""),
    sa.Column("firstName", sa.Text, nullable=False, default=""),
    sa.Column("lastName", sa.Text, nullable=False, default=""),
    sa.Column("rootOrgId", sa.String(255), nullable=False, default=""),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("isDeleted", sa.Boolean, nullable=False, default=False),
    sa.Index("ix_users_root_org", "rootOrgId"),
)

course_batch = sa.Table(
    "course_batch",
    metadata,
    sa.Column("courseid", sa.String(255), primary_key=True),
    sa.Column("batchid", sa.String(255), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, default=""),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("createdby", sa.String(255)),
    sa.Column("mentors", sa.JSON, nullable=False),
    sa.Index("ix_course_batch_createdby", "createdby", "courseid", "batchid"),
)

course_batch_mentor = sa.Table(
    "course_batch_mentor",
    metadata,
    sa.Column("userid", sa.String(255), primary_key=True),
    sa.Column("courseid", sa.String(255), primary_key=True),
    sa.Column("batchid", sa.String(255), primary_key=True),
    sa.Index("ix_course_batch_mentor_batch", "courseid", "batchid"),
)

asset = sa.Table(
    "asset",
    metadata,
    sa.Column("identifier", sa.String(255), primary_key=True),
    sa.Column("objectType", sa.String(255), nullable=False),
    sa.Column("schemaVersion", sa.String(64)),
    sa.Column("status", sa.String(64)),
    sa.Column("visibility", sa.String(64)),
    sa.Column("createdBy", sa.String(255)),
    sa.Column("creator", sa.Text),
    sa.Column("originData", sa.JSON(none_as_null=True)),
    sa.Column("extra", sa.JSON(none_as_null=True)),
    sa.Index("ix_asset_created_by", "createdBy", "identifier"),
)

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("mid", sa.String(512), primary_key=True),
    sa.Column("action", sa.String(64)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("skipped", sa.JSON, nullable=False),
    sa.Column("changed_batches", sa.Integer, nullable=False),
    sa.Column("changed_assets", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(255)),
    sa.Column("subject_user_id", sa.String(255)),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Index("ix_ledger_request", "request_id"),
)

notification = sa.Table(
    "notification",
    metadata,
    sa.Column("mid", sa.String(512), primary_key=True),
    sa.Column("recipientUserIds", sa.JSON, nullable=False),
    sa.Column("assets", sa.JSON, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("regards", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("mid", sa.String(512), nullable=False),
    sa.Column("request_id", sa.String(255)),
    sa.Column("store", sa.String(32), nullable=False),
    sa.Column("record_key", sa.String(512), nullable=False),
    sa.Column("field", sa.String(255), nullable=False),
    sa.Column("before", sa.JSON(none_as_null=True)),
    sa.Column("after", sa.JSON(none_as_null=True)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_audit_mid", "mid", "id"),  # (.., id): a page of one event or request is an index range
    sa.Index("ix_audit_request", "request_id", "id"),
)
# A deleted user's names are found (``SqlAudit.recorded_names``) and redacted (``SqlAudit.redact``) by the JSON
# text of a value (``audit_text_key``): without these indexes, every delete-user event scanned the whole audit
# (issue 15). On PostgreSQL a B-tree on the text's md5: a B-tree entry may not exceed ~2.7 kB (a long mentor list
# can), and a hash index, which has no such limit, chains the many equal values a transfer writes (every row of
# one field has the same ``before``) into overflow pages that each insert walks: a 200,000-asset transfer took
# 122 s instead of 6.7 s (bench/bulk_transfer.py).
AUDIT_TEXT_INDEXES = {  # index -> the one dialect it is for
    "ix_audit_before_text": "sqlite", "ix_audit_after_text": "sqlite",
    "ix_audit_before_md5": "postgresql", "ix_audit_after_md5": "postgresql",
}
LEGACY_INDEXES = {"postgresql": ("ix_audit_before_text", "ix_audit_after_text")}  # hash indexes of an earlier version


def audit_text_key(column: Any, dialect_name: str) -> Any:
    """The indexed key of an audit value's JSON text: the text on SQLite, its md5 on PostgreSQL."""
    text = sa.cast(column, sa.Text)
    return sa.func.md5(text) if dialect_name == "postgresql" else text


for _side in ("before", "after"):
    sa.Index(f"ix_audit_{_side}_text", audit_text_key(audit.c[_side], "sqlite")).ddl_if(dialect="sqlite")
    sa.Index(f"ix_audit_{_side}_md5", audit_text_key(audit.c[_side], "postgresql")).ddl_if(dialect="postgresql")


store_probe = sa.Table(
    "store_probe",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

# SQLite errors after which a pooled connection is no good even once the cause is gone: a connection opened
# while the file could not be written stays read-only; one that saw an I/O error or a full disk may keep a
# broken state. SQLAlchemy then drops every pooled connection (as after a lost server connection).
SQLITE_BROKEN = ("readonly database", "disk i/o error", "unable to open database", "database or disk is full",
                 "disk image is malformed")


PG_BROKEN = frozenset({"25006"})  # read_only_sql_transaction


class StoreError(RuntimeError):
    """The database cannot be reached or refused an operation."""


def engine_url(url: str) -> str:
    """Pick the psycopg (3) driver for a plain ``postgresql://`` URL."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


# As many pooled SQLite connections as the API's thread pool has threads (anyio's default limiter: 40): with
# SQLAlchemy's default of 5 (+ 10 overflow), concurrent requests opened and closed connections all the time, each
# new one setting its pragmas and reading the schema again (py-spy of `handover serve` in bench/api_latency.py:
# `Pool._create_connection` in 388 of 5,783 samples). A SQLite connection is a file handle and a page cache, not a
# server process; PostgreSQL keeps SQLAlchemy's defaults (its connections count against `max_connections`).
SQLITE_POOL_SIZE = 40


def create_engine(url: str) -> Engine:
    url = engine_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                  pool_size=SQLITE_POOL_SIZE, max_overflow=10)
        _sqlite_transactions(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    _heal_after_faults(engine)
    return engine


def _heal_after_faults(engine: Engine) -> None:
    """After an error that leaves pooled connections unusable even once its cause is gone (``SQLITE_BROKEN``; on
    PostgreSQL a read-only transaction, SQLSTATE 25006, from a session opened read-only), every pooled connection
    is dropped, as after a lost server connection: the next unit of work opens a fresh one."""

    @sa.event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        error = context.original_exception
        if getattr(error, "sqlstate", None) in PG_BROKEN or any(m in str(error).lower() for m in SQLITE_BROKEN):
            context.is_disconnect = True


MIN_ROOM_BYTES = 1 << 20  # a SQLite store with less room to grow than this counts as full


def probe_writes(engine: Engine, lock_timeout_ms: int = 2000) -> None:
    """Write and commit one row (``store_probe``): raises when the store cannot write (read-only file, full disk,
    server down). On SQLite, a write lock held longer than ``lock_timeout_ms`` by another unit of work counts as
    writable (writes wait, they do not fail); and ``StoreError`` when the database has less than
    ``MIN_ROOM_BYTES`` of room to grow (``sqlite_room``): at its ``max_page_count`` the probe's one-row update
    still fits in its page, new requests and ledger rows do not."""
    now = datetime.now(UTC)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # on the driver's connection: a statement through SQLAlchemy would begin a transaction
            driver = conn.connection.driver_connection
            room = sqlite_room(driver, engine.url.database)
            if room < MIN_ROOM_BYTES:
                raise StoreError(f"database or disk is full: {room} bytes of room to grow")
            driver.execute(f"PRAGMA busy_timeout={int(lock_timeout_ms)}")  # type: ignore[union-attr]
            conn = conn.execution_options(**{WRITER_WAIT: 0.0})  # no wait for the writers' turn: SQLite's, above
        try:
            with conn.begin():
                done = conn.execute(store_probe.update().where(store_probe.c.id == 1).values(at=now))
                if done.rowcount == 0:
                    conn.execute(store_probe.insert().values(id=1, at=now))
        except sa.exc.OperationalError as exc:
            if "database is locked" not in str(exc.orig):
                raise
        finally:
            if sqlite and not conn.invalidated:
                conn.connection.driver_connection.execute("PRAGMA busy_timeout=30000")  # type: ignore[union-attr]


def sqlite_room(driver: Any, path: str | None) -> int:
    """Bytes a SQLite database can still grow by on this connection: its free pages, plus the pages it may add
    (``max_page_count``) as far as the file system's free space (of ``path``'s directory; not for an in-memory
    database) allows."""
    page_size = driver.execute("PRAGMA page_size").fetchone()[0]
    pages = driver.execute("PRAGMA page_count").fetchone()[0]
    limit = driver.execute("PRAGMA max_page_count").fetchone()[0]
    free = driver.execute("PRAGMA freelist_count").fetchone()[0]
    growth = max(limit - pages, 0) * page_size
    if path and path != ":memory:" and not path.startswith("file:"):
        with contextlib.suppress(OSError):  # the write itself will tell
            growth = min(growth, shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free)
    return int(free * page_size + growth)


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, open transactions (so SAVEPOINT works), as BEGIN IMMEDIATE so that a
    read-then-write unit of work never fails on a lock upgrade (reads through ``reader``: plain BEGIN); WAL for
    concurrent readers.

    The writers of one process take turns on a lock of the database file (``_writer_turns``) before BEGIN
    IMMEDIATE: SQLite's own wait for its write lock sleeps in steps of up to 100 ms, so that under many
    concurrent writers (API requests and the in-process worker) most of a write's latency was sleep (issue 15)."""
    turns = _writer_turns(engine)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(READ_ONLY):  # a deferred transaction, which in WAL mode neither waits for nor blocks a writer
            conn.exec_driver_sql("BEGIN")
            return
        dbapi = conn.connection.dbapi_connection
        turns.take(dbapi, options.get(WRITER_WAIT, SQLITE_BUSY_S))
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            turns.give_back(dbapi)
            raise

    dialect = engine.dialect
    commit, rollback, close = dialect.do_commit, dialect.do_rollback, dialect.do_close

    def after(action: Any) -> Any:
        def run(dbapi: Any) -> None:
            try:
                action(dbapi)
            finally:  # after the COMMIT or ROLLBACK itself: the next writer finds SQLite's lock free
                turns.give_back(dbapi)

        return run

    dialect.do_commit, dialect.do_rollback, dialect.do_close = after(commit), after(rollback), after(close)  # type: ignore[method-assign]


SQLITE_BUSY_S = 30.0  # PRAGMA busy_timeout of the store's SQLite connections
WRITER_WAIT = "handover_writer_wait"  # execution option: seconds a writer waits for its turn (then SQLite's wait)


class _WriterTurns:
    """One lock per database file for the write transactions of this process, held from before BEGIN IMMEDIATE to
    after COMMIT or ROLLBACK; and, for a file (``path``), an exclusive ``flock`` of ``<path>-turns`` after it, so
    that the writers of several processes on the file (``handover serve --workers N`` and its queue worker, a
    ``queue-worker`` beside ``serve``) take turns too, rather than meet in SQLite's busy wait, which sleeps in
    steps of up to 100 ms (issue 15). A writer that waits longer than its wait for this process's turn goes on
    without it (SQLite's lock then decides, as before), so that a process never waits on itself for good; the
    turn across processes is waited for as ``_flock`` says. Where the lock file cannot be opened (a read-only
    directory) or there is no ``fcntl``: this process's lock only."""

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None  # id() of the DB-API connection whose transaction holds the turn
        self._path = path
        self._fd: int | None = None
        self._pid = 0  # the process that opened ``_fd`` (a forked child opens its own: flock is per open file)

    def take(self, dbapi: Any, wait: float) -> None:
        if not (self._lock.acquire(timeout=wait) if wait > 0 else self._lock.acquire(blocking=False)):
            return
        fd = self._file()
        if fd is not None and not _flock(fd, wait):
            self._lock.release()  # no turn across processes in time: on without one, as without the lock
            return
        self._holder = _raw_id(dbapi)

    def give_back(self, dbapi: Any) -> None:
        if self._holder == _raw_id(dbapi):
            self._holder = None
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._lock.release()

    def _file(self) -> int | None:
        """The lock file's descriptor in this process (called with ``_lock`` held)."""
        if self._path is None or fcntl is None:
            return None
        if self._fd is None or self._pid != os.getpid():
            try:
                self._fd = os.open(self._path + "-turns", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._path = None
                return None
            self._pid = os.getpid()
        return self._fd


def _flock(fd: int, wait: float) -> bool:
    """An exclusive ``flock`` of ``fd``: with ``wait`` 0 only if it is free, else waiting for it (the system call
    releases the GIL and is woken when the holder lets go; trying again after sleeps of 0.2 to 2 ms instead cost
    0.7-0.8 s more server CPU for 2,000 requests in ``bench/api_latency.py --serve-workers 2``: two pairs, load
    5.5-6.5 from other work). That wait lasts as long as the other process's write transaction (a process that
    dies gives its turn back: the kernel drops its lock). False when it was not taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if wait <= 0 else 0))
    except BlockingIOError:
        return False
    return True


def _raw_id(dbapi: Any) -> int:
    """The id of the driver's connection (the dialect is handed either it or the pool's wrapper of it)."""
    return id(getattr(dbapi, "dbapi_connection", dbapi))


_TURNS: dict[str, _WriterTurns] = {}
_TURNS_LOCK = threading.Lock()


def _writer_turns(engine: Engine) -> _WriterTurns:
    """The turns of ``engine``'s database file (shared by every engine of this process on that file)."""
    database = engine.url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return _WriterTurns()
    with _TURNS_LOCK:
        path = os.path.realpath(database)
        return _TURNS.setdefault(path, _WriterTurns(path))


READ_ONLY = "handover_read_only"  # execution option of the connections that only read (see ``reader``)


def reader(engine: Engine) -> Engine:
    """The engine's view for reads: on SQLite its transactions do not take the write lock (``BEGIN`` instead of
    ``BEGIN IMMEDIATE``), so a long read (a preview, a status page) never makes writers wait. Same pool."""
    return engine.execution_options(**{READ_ONLY: True})

