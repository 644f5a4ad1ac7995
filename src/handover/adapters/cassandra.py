"""Cassandra: Sunbird's ``course_batch`` table (read by key, prepared UPDATEs grouped
``threshold.batch.write.size`` at a time) and handover's own keyspace (ledger, notification record, audit).

The statement builders at the top are pure (no driver import): every value is a bound ``?`` parameter, never
part of the CQL text; keyspace and table names come from the configuration and are validated.
``CassandraGateway`` runs them with the DataStax driver, imported when a session is first needed.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from handover.adapters.sunbird_errors import StoreErrors, SunbirdStoreError, check_identifier
from handover.domain.model import CourseBatch
from handover.domain.notification import Notification
from handover.domain.rules import BatchUpdate
from handover.service.ports import AuditRecord, LedgerEntry

log = logging.getLogger(__name__)
STORE = "cassandra"
T = TypeVar("T")
Statement = tuple[str, tuple[Any, ...]]  # CQL with ? markers, and its bound values
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BATCH_COLUMNS = "courseid, batchid, name, status, createdby, mentors"

# --- course_batch (owned by the LMS) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CourseBatchTable:
    keyspace: str = "sunbird_courses"
    table: str = "course_batch"

    def __post_init__(self) -> None:
        check_identifier(self.keyspace, "keyspace")
        check_identifier(self.table, "table")

    @property
    def name(self) -> str:
        return f"{self.keyspace}.{self.table}"

    def select_by_key(self) -> str:
        return f"SELECT {BATCH_COLUMNS} FROM {self.name} WHERE courseid = ? AND batchid = ?"

    def update_createdby(self) -> str:
        return f"UPDATE {self.name} SET createdby = ? WHERE courseid = ? AND batchid = ?"

    def update_mentors(self) -> str:
        return f"UPDATE {self.name} SET mentors = ? WHERE courseid = ? AND batchid = ?"

    def insert(self) -> str:
        return f"INSERT INTO {self.name} ({BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"

    def scan(self) -> str:
        return f"SELECT {BATCH_COLUMNS} FROM {self.name}"

    def update_statements(self, updates: Sequence[BatchUpdate]) -> list[Statement]:
        """One UPDATE per written field: createdby and/or the whole mentors list."""
        out: list[Statement] = []
        for u in updates:
            if u.createdby is not None:
                out.append((self.update_createdby(), (u.createdby, u.courseid, u.batchid)))
            if u.mentors is not None:
                out.append((self.update_mentors(), (list(u.mentors), u.courseid, u.batchid)))
        return out

    def insert_statement(self, b: CourseBatch) -> Statement:
        return (self.insert(), (b.courseid, b.batchid, b.name, b.status, b.createdby, list(b.mentors)))


def grouped(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in groups of at most ``size`` (upstream's ``grouped(threshold.batch.write.size)``)."""
    if size < 1:
        raise ValueError("group size must be positive")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def batch_from_row(row: Any) -> CourseBatch:
    return CourseBatch(
        courseid=row.courseid,
        batchid=row.batchid,
        name=row.name or "",
        status=row.status if row.status is not None else 0,
        createdby=row.createdby,
        mentors=tuple(row.mentors or ()),
    )


# --- handover's keyspace ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandoverKeyspace:
    keyspace: str = "handover"
    replication_factor: int = 1

    def __post_init__(self) -> None:
        check_identifier(self.keyspace, "keyspace")

    def ddl(self) -> list[str]:
        ks = self.keyspace
        return [
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {int(self.replication_factor)}}}",
            f"CREATE TABLE IF NOT EXISTS {ks}.ledger (mid text PRIMARY KEY, action text, outcome text, "
            "reason text, skipped list<text>, changed_batches int, changed_assets int, request_id text, "
            "subject_user_id text, processed_at timestamp, detail text)",
            f"CREATE TABLE IF NOT EXISTS {ks}.ledger_by_request (request_id text, mid text, "
            "PRIMARY KEY (request_id, mid))",
            f"CREATE TABLE IF NOT EXISTS {ks}.notification (mid text PRIMARY KEY, recipient_user_ids list<text>, "
            "assets text, subject text, body text, regards text, created_at timestamp, claim_id uuid, "
            "claimed_at timestamp, sent_at timestamp)",
            f"CREATE TABLE IF NOT EXISTS {ks}.audit (mid text, store text, record_key text, field text, "
            "request_id text, before text, after text, at timestamp, PRIMARY KEY (mid, store, record_key, field))",
            f"CREATE TABLE IF NOT EXISTS {ks}.request_log (request_id text, position int, mid text, action_by text, "
            "asset_information text, created_at timestamp, PRIMARY KEY (request_id, position))",
        ]

    # request log: the events each API request produced, in order
    def request_log_statements(
        self, request_id: str, action_by: str, events: Sequence[tuple[str, Any]], now: datetime
    ) -> list[Statement]:
        """One row per (mid, assetInformation) of ``events``, at its position in the request."""
        cql = (
            f"INSERT INTO {self.keyspace}.request_log (request_id, position, mid, action_by, asset_information, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?)"
        )
        return [
            (cql, (request_id, position, mid, action_by, json.dumps(asset, ensure_ascii=False, sort_keys=True), now))
            for position, (mid, asset) in enumerate(events)
        ]

    def select_request_log(self) -> str:
        return (
            "SELECT position, mid, action_by, asset_information "
            f"FROM {self.keyspace}.request_log WHERE request_id = ?"
        )

    def delete_request_log_row(self) -> str:
        return f"DELETE FROM {self.keyspace}.request_log WHERE request_id = ? AND position = ?"

    # ledger
    def select_ledger(self) -> str:
        return (
            "SELECT mid, action, outcome, reason, skipped, changed_batches, changed_assets, request_id, "
            f"subject_user_id, processed_at, detail FROM {self.keyspace}.ledger WHERE mid = ?"
        )

    def ledger_statements(self, e: LedgerEntry) -> list[Statement]:
        out: list[Statement] = [
            (
                f"INSERT INTO {self.keyspace}.ledger (mid, action, outcome, reason, skipped, changed_batches, "
                "changed_assets, request_id, subject_user_id, processed_at, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e.mid,
                    e.action,
                    e.outcome,
                    e.reason,
                    list(e.skipped),
                    e.changed_batches,
                    e.changed_assets,
                    e.request_id,
                    e.subject_user_id,
                    e.processed_at,
                    e.detail,
                ),
            )
        ]
        if e.request_id:
            out.append(
                (
                    f"INSERT INTO {self.keyspace}.ledger_by_request (request_id, mid) VALUES (?, ?)",
                    (e.request_id, e.mid),
                )
            )
        return out

    def select_mids_of_request(self) -> str:
        return f"SELECT mid FROM {self.keyspace}.ledger_by_request WHERE request_id = ?"

    # notification record: claimed with a lightweight transaction before the email is sent
    def claim_notification(self, note: Notification, claim: uuid.UUID, now: datetime) -> Statement:
        return (
            f"INSERT INTO {self.keyspace}.notification (mid, recipient_user_ids, assets, subject, body, regards, "
            "created_at, claim_id, claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
            (
                note.mid,
                list(note.recipient_user_ids),
                json.dumps(dict(note.assets), ensure_ascii=False, sort_keys=True),
                note.subject,
                note.body,
                note.regards,
                now,
                claim,
                now,
            ),
        )

    def reclaim_notification(self, mid: str, old: uuid.UUID | None, claim: uuid.UUID, now: datetime) -> Statement:
        return (
            f"UPDATE {self.keyspace}.notification SET claim_id = ?, claimed_at = ? WHERE mid = ? "
            "IF claim_id = ? AND sent_at = null",
            (claim, now, mid, old),
        )

    def release_notification(self, mid: str, claim: uuid.UUID) -> Statement:
        """Give the claim up at once (the POST failed, so another attempt may send)."""
        return (
            f"UPDATE {self.keyspace}.notification SET claimed_at = ? WHERE mid = ? IF claim_id = ?",
            (EPOCH, mid, claim),
        )

    def mark_notification_sent(self, mid: str, now: datetime) -> Statement:
        return (f"UPDATE {self.keyspace}.notification SET sent_at = ? WHERE mid = ?", (now, mid))

    def select_notification(self) -> str:
        return (
            "SELECT mid, recipient_user_ids, assets, claim_id, claimed_at, sent_at "
            f"FROM {self.keyspace}.notification WHERE mid = ?"
        )

    def scan_notifications(self) -> str:
        return f"SELECT mid, recipient_user_ids, assets, sent_at FROM {self.keyspace}.notification"

    # audit: one row per changed field, keyed so that a redelivered event overwrites instead of adding
    def audit_statements(self, records: Sequence[AuditRecord]) -> list[Statement]:
        cql = (
            f"INSERT INTO {self.keyspace}.audit (mid, store, record_key, field, request_id, before, after, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        return [
            (
                cql,
                (
                    r.mid,
                    r.store,
                    r.record_key,
                    r.change.field,
                    r.request_id,
                    _json_or_null(r.change.before),
                    _json_or_null(r.change.after),
                    r.at,
                ),
            )
            for r in records
        ]

    def audit_page(self, mid: str, after: tuple[str, str, str] | None, limit: int) -> Statement:
        """Audit rows of one event in key order (store, record_key, field), after ``after``."""
        columns = "mid, store, record_key, field, request_id, before, after, at"
        if after is None:
            return (f"SELECT {columns} FROM {self.keyspace}.audit WHERE mid = ? LIMIT ?", (mid, limit))
        return (
            f"SELECT {columns} FROM {self.keyspace}.audit WHERE mid = ? AND (store, record_key, field) > (?, ?, ?) "
            "LIMIT ?",
            (mid, *after, limit),
        )


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def ledger_from_row(row: Any) -> LedgerEntry:
    return LedgerEntry(
        mid=row.mid,
        action=row.action,
        outcome=row.outcome,
        reason=row.reason,
        skipped=tuple(row.skipped or ()),
        changed_batches=row.changed_batches or 0,
        changed_assets=row.changed_assets or 0,
        request_id=row.request_id,
        subject_user_id=row.subject_user_id,
        processed_at=_utc(row.processed_at) or EPOCH,
        detail=row.detail or "",
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class NotificationRow:
    mid: str
    claim_id: uuid.UUID | None
    claimed_at: datetime | None
    sent_at: datetime | None


# --- the gateway ------------------------------------------------------------------------------------


class CassandraGateway:
    """One driver session for both keyspaces; prepared statements are cached. Every driver error becomes a
    ``SunbirdStoreError`` naming cassandra."""

    def __init__(
        self,
        hosts: Sequence[str],
        port: int,
        batches: CourseBatchTable,
        handover: HandoverKeyspace,
        write_group_size: int = 10,
        timeout: float = 10.0,
        *,
        protocol_version: int | None = None,
    ) -> None:
        self.hosts = list(hosts)
        self.protocol_version = protocol_version
        self.port = port
        self.batches = batches
        self.handover = handover
        self.write_group_size = write_group_size
        self.timeout = timeout
        self._session: Any = None
        self._cluster: Any = None
        self._prepared: dict[str, Any] = {}
        self._lock = threading.Lock()

    # connection
    def session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._connect()
        return self._session

    def _connect(self) -> Any:
        try:
            from cassandra.cluster import Cluster
        except ImportError as exc:  # pragma: no cover - the sunbird extra is missing
            raise SunbirdStoreError(STORE, f"cassandra-driver is not installed ({exc})") from exc
        with self.errors(f"cannot connect to {','.join(self.hosts)}:{self.port}"):
            options: dict[str, Any] = {"protocol_version": self.protocol_version} if self.protocol_version else {}
            cluster = Cluster(self.hosts, port=self.port, connect_timeout=self.timeout, **options)
            session = cluster.connect()
            session.default_timeout = self.timeout
            self._cluster = cluster
            return session

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster = self._session = None
        self._prepared.clear()

    def errors(self, doing: str) -> StoreErrors:
        return StoreErrors(STORE, doing, _driver_errors)

    def prepare(self, cql: str) -> Any:
        stmt = self._prepared.get(cql)
        if stmt is None:
            with self.errors(f"preparing {cql.split(' (')[0]}"):
                stmt = self.session().prepare(cql)
            self._prepared[cql] = stmt
        return stmt

    def execute(self, statement: Statement, doing: str) -> Any:
        cql, params = statement
        prepared = self.prepare(cql)
        with self.errors(doing):
            return self.session().execute(prepared, params)

    def execute_plain(self, cql: str, doing: str) -> Any:
        with self.errors(doing):
            return self.session().execute(cql)

    def execute_grouped(self, statements: Sequence[Statement], doing: str) -> int:
        """Statements as LOGGED batches of ``write_group_size`` (each group is applied entirely or not at all).
        Returns the number of groups."""
        from cassandra.query import BatchStatement, BatchType

        groups = grouped(statements, self.write_group_size)
        for group in groups:
            batch = BatchStatement(batch_type=BatchType.LOGGED)
            for cql, params in group:
                batch.add(self.prepare(cql), params)
            with self.errors(doing):
                self.session().execute(batch)
        return len(groups)

    # schema
    def init_schema(self) -> None:
        for cql in self.handover.ddl():
            self.execute_plain(cql, f"creating the {self.handover.keyspace} schema")

    # course batches
    def read_batches(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CourseBatch]:
        """The rows of these (courseid, batchid) keys that exist, read concurrently."""
        if not keys:
            return {}
        from cassandra.concurrent import execute_concurrent_with_args

        prepared = self.prepare(self.batches.select_by_key())
        with self.errors(f"reading {self.batches.name}"):
            results = execute_concurrent_with_args(self.session(), prepared, list(keys), concurrency=32)
        out: dict[tuple[str, str], CourseBatch] = {}
        for key, (ok, result) in zip(keys, results, strict=True):
            if not ok:
                raise SunbirdStoreError(STORE, f"reading {self.batches.name} {key[0]}/{key[1]}: {result}")
            row = result.one()
            if row is not None:
                out[key] = batch_from_row(row)
        return out

    def write_batches(self, updates: Sequence[BatchUpdate]) -> int:
        return self.execute_grouped(self.batches.update_statements(updates), f"updating {self.batches.name}")

    def upsert_batches(self, batches: Sequence[CourseBatch]) -> None:
        self.execute_grouped([self.batches.insert_statement(b) for b in batches], f"loading {self.batches.name}")

    def scan_batches(self) -> Iterator[CourseBatch]:
        from cassandra.query import SimpleStatement

        with self.errors(f"reading {self.batches.name}"):
            rows = self.session().execute(SimpleStatement(self.batches.scan(), fetch_size=1000))
            for row in rows:
                yield batch_from_row(row)

    # ledger
    def ledger_get(self, mid: str) -> LedgerEntry | None:
        row = self.execute((self.handover.select_ledger(), (mid,)), "reading the ledger").one()
        return ledger_from_row(row) if row is not None else None

    def ledger_put(self, entry: LedgerEntry) -> None:
        for statement in self.handover.ledger_statements(entry):
            self.execute(statement, "writing the ledger")

    def ledger_by_request(self, request_id: str) -> list[LedgerEntry]:
        rows = self.execute((self.handover.select_mids_of_request(), (request_id,)), "reading the ledger")
        entries = [self.ledger_get(r.mid) for r in rows]
        return sorted((e for e in entries if e is not None), key=lambda e: e.mid)

    # request log
    def request_log_put(
        self, request_id: str, action_by: str, events: Sequence[tuple[str, Any]], now: datetime
    ) -> None:
        statements = self.handover.request_log_statements(request_id, action_by, events, now)
        if statements:
            self.execute_grouped(statements, "writing the request log")

    def request_log_rows(self, request_id: str) -> list[tuple[int, str, str, dict[str, Any]]]:
        """(position, mid, action_by, assetInformation) of the request's events, in order."""
        rows = self.execute((self.handover.select_request_log(), (request_id,)), "reading the request log")
        return [(r.position, r.mid, r.action_by, _loads(r.asset_information) or {}) for r in rows]

    def request_log_delete(self, request_id: str, positions: Sequence[int]) -> None:
        for position in positions:
            self.execute((self.handover.delete_request_log_row(), (request_id, position)), "writing the request log")

    # notification record
    def notification_get(self, mid: str) -> NotificationRow | None:
        row = self.execute((self.handover.select_notification(), (mid,)), "reading the notification record").one()
        if row is None:
            return None
        return NotificationRow(row.mid, row.claim_id, _utc(row.claimed_at), _utc(row.sent_at))

    def lwt(self, statement: Statement, doing: str) -> tuple[bool, Any]:
        """Run a lightweight transaction: (applied, the current row when not applied)."""
        result = self.execute(statement, doing)
        return bool(result.was_applied), result.one()

    def notification_claim(self, note: Notification, claim: uuid.UUID, now: datetime) -> NotificationRow | None:
        """Create the record, claimed by ``claim`` (``INSERT ... IF NOT EXISTS``). None when it was created;
        else the existing record (read by the transaction itself, so it is current)."""
        applied, row = self.lwt(self.handover.claim_notification(note, claim, now), "claiming the notification")
        if applied:
            return None
        return NotificationRow(note.mid, row.claim_id, _utc(row.claimed_at), _utc(row.sent_at))

    def notification_reclaim(self, mid: str, old: uuid.UUID | None, claim: uuid.UUID, now: datetime) -> bool:
        """Take over an unsent record whose claim is still ``old``."""
        applied, _ = self.lwt(self.handover.reclaim_notification(mid, old, claim, now), "claiming the notification")
        return applied

    def notification_release(self, mid: str, claim: uuid.UUID) -> None:
        self.lwt(self.handover.release_notification(mid, claim), "releasing the notification claim")

    def notification_sent(self, mid: str, now: datetime) -> None:
        self.execute(self.handover.mark_notification_sent(mid, now), "marking the notification sent")

    def scan_notifications(self) -> Iterator[dict[str, Any]]:
        from cassandra.query import SimpleStatement

        with self.errors("reading the notification records"):
            for row in self.session().execute(SimpleStatement(self.handover.scan_notifications(), fetch_size=1000)):
                if row.sent_at is None:
                    continue
                yield {
                    "mid": row.mid,
                    "recipientUserIds": list(row.recipient_user_ids or ()),
                    "assets": json.loads(row.assets) if row.assets else {},
                }

    # audit
    def audit_put(self, records: Sequence[AuditRecord]) -> None:
        if records:
            self.execute_grouped(self.handover.audit_statements(records), "writing the audit trail")

    def audit_rows(self, mid: str, after: tuple[str, str, str] | None, limit: int) -> list[AuditRecord]:
        from handover.domain.rules import FieldChange

        rows = self.execute(self.handover.audit_page(mid, after, limit), "reading the audit trail")
        return [
            AuditRecord(
                r.mid,
                r.request_id,
                r.store,
                r.record_key,
                FieldChange(r.field, _loads(r.before), _loads(r.after)),
                _utc(r.at) or EPOCH,
            )
            for r in rows
        ]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _driver_errors() -> tuple[type[BaseException], ...]:
    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable

    return (DriverException, NoHostAvailable)
