"""Cassandra: Sunbird's ``course_batch`` table (read by key, prepared UPDATEs grouped
``threshold.batch.write.size`` at a time) and handover's own keyspace (ledger, notification record, audit).

The statement builders at the top are pure (no driver import): every value is a bound ``?`` parameter, never
part of the CQL text; keyspace and table names come from the configuration and are validated.
``CassandraGateway`` runs them with the DataStax driver, imported when a session is first needed.

Connection and consistency (``CassandraConnection``), as Sunbird's own jobs connect (Sunbird-Lern/data-pipeline
``jobs-core/.../util/CassandraUtil.scala``): every statement at ``LOCAL_QUORUM`` (upstream sets it once in the
driver's ``QueryOptions``; here it is set on each statement as well as on the default execution profile, so no
statement falls back to the driver's ``LOCAL_ONE``), lightweight transactions with serial consistency
``LOCAL_SERIAL``; ``lms-cassandra.isMultiDCEnabled`` switches to DC-aware routing (upstream:
``DCAwareRoundRobinPolicy.builder().build()``, whose local datacenter is the first contact point's). Upstream's
Flink jobs send no credentials; lms-service and userorg-service take ``sunbird_cassandra_username`` /
``sunbird_cassandra_password``; here ``lms-cassandra.username`` / ``lms-cassandra.password`` give a
``PlainTextAuthProvider``.

Protocol negotiation: the driver first offers its newest protocol version (DSE v2, 66) and steps down itself when
the server answers with a protocol error. Cassandra 2.1.0 answers instead with a server error ("Invalid or
unsupported protocol version: 66"), so the driver gives up with ``NoHostAvailable``. When
``lms-cassandra.protocol_version`` is not set, the gateway then tries again with v4, then v3, and logs the
version it used; setting the version skips the probe (and the driver's error lines it causes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from handover import metrics
from handover.adapters.sunbird_errors import StoreErrors, SunbirdStoreError, check_identifier
from handover.domain.model import CourseBatch
from handover.domain.notification import Notification
from handover.domain.rules import CREATED_BY, BatchUpdate, FieldChange
from handover.service.ports import STORE_ASSET, AuditRecord, LedgerEntry

log = logging.getLogger(__name__)
STORE = "cassandra"
T = TypeVar("T")
Statement = tuple[str, tuple[Any, ...]]  # CQL with ? markers, and its bound values
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BATCH_COLUMNS = "courseid, batchid, name, status, createdby, mentors"
CONCURRENCY = 32  # requests in flight at once for concurrent reads and batches

# --- connection options ------------------------------------------------------------------------------

# the levels a read or write may use (SERIAL / LOCAL_SERIAL are only for a lightweight transaction's Paxos phase;
# ANY cannot read)
CONSISTENCY_LEVELS = ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
SERIAL_CONSISTENCY_LEVELS = ("SERIAL", "LOCAL_SERIAL")
PROTOCOL_VERSIONS = (1, 2, 3, 4, 5)  # Cassandra's native protocol v1..v5
PROTOCOL_STEP_DOWN = (4, 3)  # tried in turn when the server refuses the driver's own negotiation
PROTOCOL_SETTING = "lms-cassandra.protocol_version"


@dataclass(frozen=True, slots=True)
class CassandraConnection:
    """How to reach the cluster and at which consistency; one session serves both keyspaces.

    ``consistency`` applies to every read, write and batch; ``serial_consistency`` to the Paxos phase of the
    lightweight transactions (the server ignores it on other statements). ``multi_dc`` routes to the local
    datacenter only (``local_dc``, or the first contact point's datacenter as the driver finds it); otherwise
    round robin over every host. ``timeout`` is in seconds, for connecting and for each request. Raises
    ``ValueError`` on a level, protocol version or credential combination that cannot work."""

    hosts: tuple[str, ...]
    port: int = 9042
    protocol_version: int | None = None
    consistency: str = "LOCAL_QUORUM"
    serial_consistency: str = "LOCAL_SERIAL"
    multi_dc: bool = False
    local_dc: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("lms-cassandra.host: no host given")
        object.__setattr__(self, "consistency", self.consistency.strip().upper())
        object.__setattr__(self, "serial_consistency", self.serial_consistency.strip().upper())
        if self.consistency not in CONSISTENCY_LEVELS:
            raise ValueError(
                f"lms-cassandra.consistency_level: {self.consistency!r} is not one of {', '.join(CONSISTENCY_LEVELS)}"
            )
        if self.serial_consistency not in SERIAL_CONSISTENCY_LEVELS:
            raise ValueError(
                f"lms-cassandra.serial_consistency_level: {self.serial_consistency!r} is not SERIAL or LOCAL_SERIAL"
            )
        if self.protocol_version is not None and self.protocol_version not in PROTOCOL_VERSIONS:
            raise ValueError(f"{PROTOCOL_SETTING}: {self.protocol_version} is not a native protocol version (1 to 5)")
        if (self.username is None) != (self.password is None):
            raise ValueError("lms-cassandra.username and lms-cassandra.password must be given together")
        if self.local_dc is not None and not self.multi_dc:
            raise ValueError("lms-cassandra.local_dc is used only with lms-cassandra.isMultiDCEnabled = true")

    @property
    def where(self) -> str:
        return f"{','.join(self.hosts)}:{self.port}"

    def consistency_level(self) -> int:
        from cassandra import ConsistencyLevel

        return int(ConsistencyLevel.name_to_value[self.consistency])

    def serial_consistency_level(self) -> int:
        from cassandra import ConsistencyLevel

        return int(ConsistencyLevel.name_to_value[self.serial_consistency])

    def routing_policy(self) -> Any:
        """DC-aware round robin (multi-DC: hosts of other datacenters are never used) or plain round robin."""
        from cassandra.policies import DCAwareRoundRobinPolicy, RoundRobinPolicy

        return DCAwareRoundRobinPolicy(local_dc=self.local_dc or "") if self.multi_dc else RoundRobinPolicy()

    def cluster_options(self, protocol_version: int | None, routing: Any = None) -> dict[str, Any]:
        """Keyword arguments of ``cassandra.cluster.Cluster``: a default execution profile carrying the load
        balancing policy (token-aware over ``routing``, by default ``routing_policy()``), both consistency levels
        and the request timeout; credentials when configured; ``protocol_version`` only when one is given (else
        the driver negotiates)."""
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
        from cassandra.policies import TokenAwarePolicy

        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(routing if routing is not None else self.routing_policy()),
            consistency_level=self.consistency_level(),
            serial_consistency_level=self.serial_consistency_level(),
            request_timeout=self.timeout,
        )
        options: dict[str, Any] = {
            "contact_points": list(self.hosts),
            "port": self.port,
            "connect_timeout": self.timeout,
            "execution_profiles": {EXEC_PROFILE_DEFAULT: profile},
        }
        if protocol_version is not None:
            options["protocol_version"] = protocol_version
        if self.username is not None:
            from cassandra.auth import PlainTextAuthProvider

            options["auth_provider"] = PlainTextAuthProvider(username=self.username, password=self.password)
        return options

    # statements: each carries both levels itself
    def simple(self, cql: str, fetch_size: int | None = None) -> Any:
        from cassandra.query import SimpleStatement

        return SimpleStatement(
            cql,
            consistency_level=self.consistency_level(),
            serial_consistency_level=self.serial_consistency_level(),
            fetch_size=fetch_size,
        )

    def batch(self) -> Any:
        """A LOGGED batch (all of it is applied or none)."""
        from cassandra.query import BatchStatement, BatchType

        return BatchStatement(
            batch_type=BatchType.LOGGED,
            consistency_level=self.consistency_level(),
            serial_consistency_level=self.serial_consistency_level(),
        )

    def prepared(self, statement: T) -> T:
        """Set both levels on a prepared statement; the statements bound from it inherit them."""
        statement.consistency_level = self.consistency_level()  # type: ignore[attr-defined]
        statement.serial_consistency_level = self.serial_consistency_level()  # type: ignore[attr-defined]
        return statement


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


def counted(requests: int, kind: str) -> None:
    """Count one round trip to Cassandra carrying ``requests`` requests (a batch is one request)."""
    metrics.store_call(STORE, kind, requests)


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


SIMPLE = "SimpleStrategy"
NETWORK_TOPOLOGY = "NetworkTopologyStrategy"
_STRATEGY_PREFIX = "org.apache.cassandra.locator."


@dataclass(frozen=True, slots=True)
class Replication:
    """The replication of handover's keyspace: ``SimpleStrategy`` with ``factor`` copies, or
    ``NetworkTopologyStrategy`` with a factor per datacenter (``datacenters``: (name, factor) pairs). Raises
    ``ValueError`` on an unknown class, a factor below 1, a bad or missing datacenter name."""

    strategy: str = SIMPLE
    factor: int = 1
    datacenters: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        strategy = self.strategy.strip().removeprefix(_STRATEGY_PREFIX)
        object.__setattr__(self, "strategy", strategy)
        if strategy == SIMPLE:
            if self.datacenters:
                raise ValueError("handover-cassandra.datacenters is for NetworkTopologyStrategy, not SimpleStrategy")
            if self.factor < 1:
                raise ValueError(f"handover-cassandra.replication_factor: {self.factor} is below 1")
        elif strategy == NETWORK_TOPOLOGY:
            if not self.datacenters:
                raise ValueError("NetworkTopologyStrategy needs handover-cassandra.datacenters (e.g. 'dc1:3,dc2:3')")
            for name, factor in self.datacenters:
                if not name or not all(c.isascii() and (c.isalnum() or c in "_.-") for c in name):
                    raise ValueError(f"handover-cassandra.datacenters: invalid datacenter name {name!r}")
                if factor < 1:
                    raise ValueError(f"handover-cassandra.datacenters: factor {factor} of {name} is below 1")
            if len({name for name, _ in self.datacenters}) != len(self.datacenters):
                raise ValueError("handover-cassandra.datacenters: a datacenter is named twice")
        else:
            raise ValueError(
                f"handover-cassandra.replication_class: {self.strategy!r} is not {SIMPLE} or {NETWORK_TOPOLOGY}"
            )

    @classmethod
    def parse_datacenters(cls, items: Sequence[str]) -> tuple[tuple[str, int], ...]:
        """``["dc1:3", "dc2:3"]`` -> ``(("dc1", 3), ("dc2", 3))``."""
        out: list[tuple[str, int]] = []
        for item in items:
            name, sep, factor = item.rpartition(":")
            if not sep or not factor.strip().isdigit():
                raise ValueError(f"handover-cassandra.datacenters: {item!r} is not <datacenter>:<factor>")
            out.append((name.strip(), int(factor)))
        return tuple(out)

    def options(self) -> dict[str, str]:
        """The replication map as Cassandra reports it (values as text)."""
        if self.strategy == SIMPLE:
            return {"class": SIMPLE, "replication_factor": str(self.factor)}
        return {"class": NETWORK_TOPOLOGY, **{name: str(factor) for name, factor in self.datacenters}}

    def cql(self) -> str:
        """The CQL map literal (names are validated, factors are integers)."""
        if self.strategy == SIMPLE:
            return f"{{'class': '{SIMPLE}', 'replication_factor': {self.factor}}}"
        factors = "".join(f", '{name}': {factor}" for name, factor in self.datacenters)
        return f"{{'class': '{NETWORK_TOPOLOGY}'{factors}}}"

    @property
    def single_copy(self) -> bool:
        return self.strategy == SIMPLE and self.factor == 1


def replication_of(strategy: Any) -> dict[str, str] | None:
    """The driver's ``ReplicationStrategy`` of an existing keyspace in ``Replication.options`` form (None for a
    class handover does not create)."""
    if hasattr(strategy, "dc_replication_factors"):
        return {"class": NETWORK_TOPOLOGY, **{dc: str(f) for dc, f in strategy.dc_replication_factors.items()}}
    if type(strategy).__name__ == SIMPLE:
        return {"class": SIMPLE, "replication_factor": str(strategy.replication_factor)}
    return None


@dataclass(frozen=True, slots=True)
class HandoverKeyspace:
    keyspace: str = "handover"
    replication: Replication = Replication()

    def __post_init__(self) -> None:
        check_identifier(self.keyspace, "keyspace")

    def ddl(self) -> list[str]:
        ks = self.keyspace
        return [
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {self.replication.cql()}",
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
            # the audited asset records whose createdBy changed from (side 'before') or to (side 'after') a user:
            # where that user's names are in the audit (redacted when the user is deleted)
            f"CREATE TABLE IF NOT EXISTS {ks}.audit_by_user (user_id text, mid text, store text, record_key text, "
            "side text, PRIMARY KEY (user_id, mid, store, record_key, side))",
            f"CREATE TABLE IF NOT EXISTS {ks}.request_log (request_id text, position int, mid text, action_by text, "
            "asset_information text, created_at timestamp, PRIMARY KEY (request_id, position))",
            # the request history: one partition per UTC day, newest first; request_days lists the days
            f"CREATE TABLE IF NOT EXISTS {ks}.request_by_day (day text, created_at timestamp, request_id text, "
            "action_by text, organisation_id text, from_user text, to_user text, "
            "PRIMARY KEY (day, created_at, request_id)) WITH CLUSTERING ORDER BY (created_at DESC, request_id DESC)",
            f"CREATE TABLE IF NOT EXISTS {ks}.request_days (bucket int, day text, PRIMARY KEY (bucket, day)) "
            "WITH CLUSTERING ORDER BY (day DESC)",
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

    def select_request_created(self) -> str:
        return f"SELECT created_at FROM {self.keyspace}.request_log WHERE request_id = ? LIMIT 1"

    # request history: request_by_day (one partition per UTC day) and request_days (the days, newest first)
    def request_head_statements(self, head: RequestHead) -> list[Statement]:
        day = request_day(head.created_at)
        return [
            (f"INSERT INTO {self.keyspace}.request_days (bucket, day) VALUES (?, ?)", (0, day)),
            (
                f"INSERT INTO {self.keyspace}.request_by_day (day, created_at, request_id, action_by, "
                "organisation_id, from_user, to_user) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (day, head.created_at, head.request_id, head.action_by, head.organisation_id, head.from_user,
                 head.to_user),
            ),
        ]

    def select_request_days(self) -> str:
        return f"SELECT day FROM {self.keyspace}.request_days WHERE bucket = 0"

    _HEAD = "SELECT created_at, request_id, action_by, organisation_id, from_user, to_user FROM {}.request_by_day "

    def select_requests_of_day(self) -> str:
        return self._HEAD.format(self.keyspace) + "WHERE day = ? LIMIT ?"

    def select_requests_of_day_before(self) -> str:
        return self._HEAD.format(self.keyspace) + "WHERE day = ? AND (created_at, request_id) < (?, ?) LIMIT ?"

    def select_request_head(self) -> str:
        return self._HEAD.format(self.keyspace) + "WHERE day = ? AND created_at = ? AND request_id = ?"

    def delete_request_head(self) -> str:
        return f"DELETE FROM {self.keyspace}.request_by_day WHERE day = ? AND created_at = ? AND request_id = ?"

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
        """The audit rows, and for each asset record whose ``createdBy`` change is among ``records`` an
        ``audit_by_user`` row for the user it was (``before``) and the one it became (``after``)."""
        cql = (
            f"INSERT INTO {self.keyspace}.audit (mid, store, record_key, field, request_id, before, after, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        by_user = (
            f"INSERT INTO {self.keyspace}.audit_by_user (user_id, mid, store, record_key, side) VALUES (?, ?, ?, ?, ?)"
        )
        about = [
            (by_user, (user, r.mid, r.store, r.record_key, side))
            for r in records
            if r.store == STORE_ASSET and r.change.field == CREATED_BY
            for side, user in (("before", r.change.before), ("after", r.change.after))
            if isinstance(user, str) and user
        ]
        return about + [
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

    def select_audit_by_user(self) -> str:
        return f"SELECT mid, store, record_key, side FROM {self.keyspace}.audit_by_user WHERE user_id = ?"

    def audit_of_record(self, mid: str, store: str, record_key: str) -> Statement:
        """The audit rows of one record in one event."""
        return (
            "SELECT mid, store, record_key, field, request_id, before, after, at "
            f"FROM {self.keyspace}.audit WHERE mid = ? AND store = ? AND record_key = ?",
            (mid, store, record_key),
        )

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
    """One driver session for both keyspaces; prepared statements are cached. Every statement carries the
    connection's consistency levels. Every driver error becomes a ``SunbirdStoreError`` naming cassandra."""

    def __init__(
        self,
        connection: CassandraConnection,
        batches: CourseBatchTable,
        handover: HandoverKeyspace,
        write_group_size: int = 10,
    ) -> None:
        self.connection = connection
        self.batches = batches
        self.handover = handover
        self.write_group_size = write_group_size
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

    @property
    def protocol_version(self) -> int | None:
        """The native protocol version of the open session (None before the first connection)."""
        return None if self._cluster is None else int(self._cluster.protocol_version)

    def _connect(self) -> Any:
        try:
            from cassandra.cluster import Cluster
        except ImportError as exc:  # pragma: no cover - the sunbird extra is missing
            raise SunbirdStoreError(STORE, f"cassandra-driver is not installed ({exc})") from exc
        c = self.connection
        attempts: tuple[int | None, ...] = (c.protocol_version,) if c.protocol_version else (None, *PROTOCOL_STEP_DOWN)
        refusal = ""
        for i, version in enumerate(attempts):
            routing = c.routing_policy()
            cluster = Cluster(**c.cluster_options(version, routing))
            try:
                with self.errors(f"cannot connect to {c.where}"):
                    session = cluster.connect()
            except SunbirdStoreError as exc:
                cluster.shutdown()
                refused = protocol_refusal(exc.__cause__)
                if refused and i + 1 < len(attempts):
                    refusal = refusal or refused
                    log.info(
                        "cassandra: %s refused the protocol offered (%s); trying v%d", c.where, refused, attempts[i + 1]
                    )
                    continue
                if refused and c.protocol_version:
                    raise SunbirdStoreError(
                        STORE,
                        f"{exc.args[0].removeprefix(STORE + ': ')}; the server does not speak v{version}: "
                        f"unset {PROTOCOL_SETTING} to negotiate, or set the version it speaks",
                    ) from exc.__cause__
                if c.multi_dc and c.local_dc:
                    raise SunbirdStoreError(
                        STORE,
                        f"{exc.args[0].removeprefix(STORE + ': ')}; is lms-cassandra.local_dc = {c.local_dc!r} "
                        "the datacenter of a contact point?",
                    ) from exc.__cause__
                raise
            self._cluster = cluster
            used = int(cluster.protocol_version)
            if refusal:
                log.warning(
                    "cassandra: connected to %s with native protocol v%d after the server refused the driver's "
                    "negotiation (%s); set %s = %d to avoid this probe and the driver's errors it logs",
                    c.where,
                    used,
                    refusal,
                    PROTOCOL_SETTING,
                    used,
                )
            elif c.protocol_version is None:
                log.info(
                    "cassandra: connected to %s with native protocol v%d (negotiated; %s = %d skips the negotiation)",
                    c.where,
                    used,
                    PROTOCOL_SETTING,
                    used,
                )
            else:
                log.info("cassandra: connected to %s with native protocol v%d (%s)", c.where, used, PROTOCOL_SETTING)
            self._check_datacenters(cluster, routing)
            return session
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def datacenters(self) -> set[str]:
        """The datacenters of the cluster's hosts, as the driver knows them."""
        self.session()
        return {h.datacenter for h in self._cluster.metadata.all_hosts() if h.datacenter}

    def _check_datacenters(self, cluster: Any, routing: Any) -> None:
        """Multi-DC: the local datacenter must be one of the cluster's (else every request would find no host).
        Single-DC: warn when the cluster has several."""
        dcs = {h.datacenter for h in cluster.metadata.all_hosts() if h.datacenter}
        if self.connection.multi_dc:
            local = routing.local_dc
            if not local or local not in dcs:
                cluster.shutdown()
                self._cluster = None
                raise SunbirdStoreError(
                    STORE,
                    f"the local datacenter {local or '(none found)'!r} is not one of the cluster's "
                    f"({', '.join(sorted(dcs)) or 'none known'}): set lms-cassandra.local_dc",
                )
            log.info("cassandra: DC-aware routing, local datacenter %s (of %s)", local, ", ".join(sorted(dcs)))
        elif len(dcs) > 1:
            log.warning(
                "cassandra: the cluster has datacenters %s but lms-cassandra.isMultiDCEnabled is false: requests go "
                "to every datacenter and LOCAL_* consistency is counted in whichever one coordinates",
                ", ".join(sorted(dcs)),
            )

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster = self._session = None
        self._prepared.clear()

    def errors(self, doing: str) -> StoreErrors:
        return CassandraErrors(STORE, doing, _driver_errors)

    def prepare(self, cql: str) -> Any:
        """The prepared statement of ``cql`` (cached), carrying the connection's consistency levels."""
        stmt = self._prepared.get(cql)
        if stmt is None:
            with self.errors(f"preparing {cql.split(' (')[0]}"):
                stmt = self.connection.prepared(self.session().prepare(cql))
            self._prepared[cql] = stmt
        return stmt

    def execute(self, statement: Statement, doing: str) -> Any:
        cql, params = statement
        bound = self.prepare(cql).bind(params)
        counted(1, "read" if cql.startswith("SELECT") else "write")
        with self.errors(doing):
            return self.session().execute(bound)

    def execute_concurrently(self, statements: Sequence[Statement], doing: str) -> list[Any]:
        """Independent statements sent concurrently (at most ``CONCURRENCY`` in flight), counted as one round trip:
        their results, in order. SunbirdStoreError when one failed (the others may have been applied)."""
        if len(statements) <= 1:
            return [self.execute(statement, doing) for statement in statements]
        from cassandra.concurrent import execute_concurrent

        bound = [(self.prepare(cql).bind(params), None) for cql, params in statements]
        counted(len(bound), "read" if all(cql.startswith("SELECT") for cql, _ in statements) else "write")
        with self.errors(doing):
            results = execute_concurrent(self.session(), bound, concurrency=CONCURRENCY)
        for ok, result in results:
            if not ok:
                raise SunbirdStoreError(STORE, f"{doing}: {describe(result)}")
        return [result for _, result in results]

    def execute_plain(self, cql: str, doing: str) -> Any:
        counted(1, "read" if cql.startswith("SELECT") else "write")
        with self.errors(doing):
            return self.session().execute(self.connection.simple(cql))

    def execute_grouped(self, statements: Sequence[Statement], doing: str) -> int:
        """Statements as LOGGED batches of ``write_group_size`` (each group is applied entirely or not at all),
        the batches sent concurrently (the statements must not depend on each other's order). Returns the number
        of groups; SunbirdStoreError when a batch failed (the others may have been applied)."""
        return self.execute_batches(grouped(statements, self.write_group_size), doing)

    def execute_batches(self, groups: Sequence[Sequence[Statement]], doing: str) -> int:
        """Each group as one LOGGED batch, the batches sent concurrently (at most ``CONCURRENCY`` in flight)."""
        batches = []
        for group in groups:
            batch = self.connection.batch()
            for cql, params in group:
                batch.add(self.prepare(cql), params)
            batches.append(batch)
        if not batches:
            return 0
        counted(len(batches), "write")
        if len(batches) == 1:
            with self.errors(doing):
                self.session().execute(batches[0])
            return 1
        from cassandra.concurrent import execute_concurrent

        with self.errors(doing):
            results = execute_concurrent(self.session(), [(b, None) for b in batches], concurrency=CONCURRENCY)
        for ok, result in results:
            if not ok:
                raise SunbirdStoreError(STORE, f"{doing}: {describe(result)}")
        return len(batches)

    # schema
    def init_schema(self) -> None:
        """handover's keyspace and tables (``IF NOT EXISTS``). A keyspace created with a single copy, one that
        exists with another replication than configured (init does not alter it), and SimpleStrategy on a
        multi-DC setup are named in warnings; a NetworkTopologyStrategy datacenter the cluster does not have
        is refused (no LOCAL_QUORUM could ever be met there)."""
        ks, wanted = self.handover.keyspace, self.handover.replication
        dcs = self.datacenters()
        existing = self._cluster.metadata.keyspaces.get(ks)
        if existing is None:
            unknown = sorted({name for name, _ in wanted.datacenters} - dcs)
            if unknown:
                raise SunbirdStoreError(
                    STORE,
                    f"creating keyspace {ks}: handover-cassandra.datacenters names {', '.join(unknown)}, not a "
                    f"datacenter of the cluster ({', '.join(sorted(dcs))})",
                )
            if wanted.single_copy:
                log.warning(
                    "cassandra: creating keyspace %s with SimpleStrategy, replication_factor 1: one copy of the "
                    "ledger, notification records and audit, lost with that node; set "
                    "handover-cassandra.replication_factor, or replication_class = NetworkTopologyStrategy with "
                    "handover-cassandra.datacenters, before init on a production cluster",
                    ks,
                )
            if wanted.strategy == SIMPLE and self.connection.multi_dc:
                log.warning(
                    "cassandra: creating keyspace %s with SimpleStrategy although lms-cassandra.isMultiDCEnabled: "
                    "replicas ignore datacenters; use NetworkTopologyStrategy with handover-cassandra.datacenters",
                    ks,
                )
        else:
            found = replication_of(existing.replication_strategy)
            if found != wanted.options():
                log.warning(
                    "cassandra: keyspace %s exists with replication %s, configured %s: init leaves it as it is "
                    "(ALTER KEYSPACE, then a repair, changes it)",
                    ks,
                    found or type(existing.replication_strategy).__name__,
                    wanted.options(),
                )
        for cql in self.handover.ddl():
            self.execute_plain(cql, f"creating the {ks} schema")

    # course batches
    def read_batches(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CourseBatch]:
        """The rows of these (courseid, batchid) keys that exist, read concurrently."""
        if not keys:
            return {}
        from cassandra.concurrent import execute_concurrent_with_args

        prepared = self.prepare(self.batches.select_by_key())
        counted(len(keys), "read")
        with self.errors(f"reading {self.batches.name}"):
            results = execute_concurrent_with_args(self.session(), prepared, list(keys), concurrency=CONCURRENCY)
        out: dict[tuple[str, str], CourseBatch] = {}
        for key, (ok, result) in zip(keys, results, strict=True):
            if not ok:
                raise SunbirdStoreError(STORE, f"reading {self.batches.name} {key[0]}/{key[1]}: {describe(result)}")
            row = result.one()
            if row is not None:
                out[key] = batch_from_row(row)
        return out

    def write_batches(self, updates: Sequence[BatchUpdate]) -> int:
        return self.execute_grouped(self.batches.update_statements(updates), f"updating {self.batches.name}")

    def upsert_batches(self, batches: Sequence[CourseBatch]) -> None:
        self.execute_grouped([self.batches.insert_statement(b) for b in batches], f"loading {self.batches.name}")

    def scan_batches(self) -> Iterator[CourseBatch]:
        with self.errors(f"reading {self.batches.name}"):
            rows = self.session().execute(self.connection.simple(self.batches.scan(), fetch_size=1000))
            for row in rows:
                yield batch_from_row(row)

    # ledger
    def ledger_get(self, mid: str) -> LedgerEntry | None:
        row = self.execute((self.handover.select_ledger(), (mid,)), "reading the ledger").one()
        return ledger_from_row(row) if row is not None else None

    def ledger_get_many(self, mids: Sequence[str]) -> dict[str, LedgerEntry | None]:
        """The ledger rows of ``mids`` (None where there is none), read concurrently."""
        if not mids:
            return {}
        from cassandra.concurrent import execute_concurrent_with_args

        prepared = self.prepare(self.handover.select_ledger())
        counted(len(mids), "read")
        with self.errors("reading the ledger"):
            results = execute_concurrent_with_args(
                self.session(), prepared, [(m,) for m in mids], concurrency=CONCURRENCY
            )
        out: dict[str, LedgerEntry | None] = {}
        for mid, (ok, result) in zip(mids, results, strict=True):
            if not ok:
                raise SunbirdStoreError(STORE, f"reading the ledger {mid}: {describe(result)}")
            row = result.one()
            out[mid] = ledger_from_row(row) if row is not None else None
        return out

    def ledger_put(self, entry: LedgerEntry) -> None:
        self.ledger_put_many([entry])

    def ledger_put_many(self, entries: Sequence[LedgerEntry]) -> None:
        """The ledger rows of ``entries`` (each with its ``ledger_by_request`` row in the same LOGGED batch),
        packed into batches of at least one entry and about ``write_group_size`` statements, sent concurrently."""
        groups: list[list[Statement]] = []
        for entry in entries:
            statements = self.handover.ledger_statements(entry)
            if groups and len(groups[-1]) + len(statements) <= self.write_group_size:
                groups[-1].extend(statements)
            else:
                groups.append(list(statements))
        self.execute_batches(groups, "writing the ledger")

    def ledger_by_request(self, request_id: str) -> list[LedgerEntry]:
        rows = self.execute((self.handover.select_mids_of_request(), (request_id,)), "reading the ledger")
        entries = [self.ledger_get(r.mid) for r in rows]
        return sorted((e for e in entries if e is not None), key=lambda e: e.mid)

    # request log
    def request_log_put(
        self,
        request_id: str,
        action_by: str,
        events: Sequence[tuple[str, Any]],
        now: datetime,
        parties: tuple[str | None, str | None, str | None] = (None, None, None),
    ) -> bool:
        """Record the request's events and its history row (``parties``: organisationId, from-user, to-user);
        False (nothing written) when the request id is taken. The first row is written with ``IF NOT EXISTS``
        (a lightweight transaction), so two requests reusing one id at the same moment cannot both record."""
        statements = self.handover.request_log_statements(request_id, action_by, events, now)
        if not statements:
            return True
        (cql, params), rest = statements[0], statements[1:]
        applied, _ = self.lwt((cql + " IF NOT EXISTS", params), "claiming the request id")
        if not applied:
            return False
        rest += self.handover.request_head_statements(RequestHead(request_id, now, action_by, *parties))
        try:
            self.execute_grouped(rest, "writing the request log")
        except Exception:  # leave no half-recorded request holding the id (e.g. before `init` made the tables)
            with contextlib.suppress(Exception):
                self.request_log_delete(request_id, range(len(statements)))
            raise
        return True

    def request_created_at(self, request_id: str) -> datetime | None:
        row = self.execute((self.handover.select_request_created(), (request_id,)), "reading the request log").one()
        return _utc(row.created_at) if row is not None else None

    def request_head(self, request_id: str) -> RequestHead | None:
        """The history row of a request (None when the request is not recorded)."""
        created = self.request_created_at(request_id)
        if created is None:
            return None
        params = (request_day(created), created, request_id)
        row = self.execute((self.handover.select_request_head(), params), "reading the request history").one()
        return _head(row) if row is not None else RequestHead(request_id, created, None, None, None, None)

    def request_head_delete(self, request_id: str, created_at: datetime) -> None:
        params = (request_day(created_at), created_at, request_id)
        self.execute((self.handover.delete_request_head(), params), "writing the request history")

    def request_days(self) -> list[str]:
        """The UTC days that have requests, newest first (one row per day)."""
        rows = self.execute((self.handover.select_request_days(), ()), "reading the request history")
        return [r.day for r in rows]

    def requests_of_day(self, day: str, before: tuple[datetime, str] | None, limit: int) -> list[RequestHead]:
        """At most ``limit`` requests of ``day``, newest first, older than ``before`` (created_at, request_id)."""
        if before is None:
            statement: Statement = (self.handover.select_requests_of_day(), (day, limit))
        else:
            statement = (self.handover.select_requests_of_day_before(), (day, before[0], before[1], limit))
        return [_head(r) for r in self.execute(statement, "reading the request history")]

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
        return self.notification_claim_many([(note, claim)], now)[0]

    def notification_claim_many(
        self, claims: Sequence[tuple[Notification, uuid.UUID]], now: datetime
    ) -> list[NotificationRow | None]:
        """``notification_claim`` of each note, the lightweight transactions sent concurrently (one round trip;
        each is a Paxos round on its own partition)."""
        statements = [self.handover.claim_notification(note, claim, now) for note, claim in claims]
        results = self.execute_concurrently(statements, "claiming the notification")
        out: list[NotificationRow | None] = []
        for (note, _), result in zip(claims, results, strict=True):
            row = result.one()
            applied = bool(result.was_applied)
            if applied:
                out.append(None)
            else:
                out.append(NotificationRow(note.mid, row.claim_id, _utc(row.claimed_at), _utc(row.sent_at)))
        return out

    def notification_reclaim(self, mid: str, old: uuid.UUID | None, claim: uuid.UUID, now: datetime) -> bool:
        """Take over an unsent record whose claim is still ``old``."""
        applied, _ = self.lwt(self.handover.reclaim_notification(mid, old, claim, now), "claiming the notification")
        return applied

    def notification_release(self, mid: str, claim: uuid.UUID) -> None:
        self.lwt(self.handover.release_notification(mid, claim), "releasing the notification claim")

    def notification_sent(self, mid: str, now: datetime) -> None:
        self.notification_sent_many([mid], now)

    def notification_sent_many(self, mids: Sequence[str], now: datetime) -> None:
        statements = [self.handover.mark_notification_sent(mid, now) for mid in mids]
        self.execute_concurrently(statements, "marking the notification sent")

    def scan_notifications(self) -> Iterator[dict[str, Any]]:
        scan = self.connection.simple(self.handover.scan_notifications(), fetch_size=1000)
        with self.errors("reading the notification records"):
            for row in self.session().execute(scan):
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
            statements = self.handover.audit_statements(records)
            # the audit_by_user rows (first in the list) are written before the audit rows they point to
            by_user = f"INSERT INTO {self.handover.keyspace}.audit_by_user "
            split = sum(1 for cql, _ in statements if cql.startswith(by_user))
            for part in (statements[:split], statements[split:]):
                if part:
                    self.execute_grouped(part, "writing the audit trail")

    def audit_rows(self, mid: str, after: tuple[str, str, str] | None, limit: int) -> list[AuditRecord]:
        rows = self.execute(self.handover.audit_page(mid, after, limit), "reading the audit trail")
        return [_audit_record(r) for r in rows]

    def audit_about_user(self, user_id: str) -> list[tuple[str, str, str, str]]:
        """(mid, store, record_key, side) of the audited records whose ``createdBy`` changed from (side
        ``before``) or to (``after``) ``user_id`` (``audit_by_user``, one partition)."""
        rows = self.execute((self.handover.select_audit_by_user(), (user_id,)), "reading the audit trail")
        return [(r.mid, r.store, r.record_key, r.side) for r in rows]

    def audit_read_ahead(
        self, mids: Sequence[str], limit: int, users: Sequence[str]
    ) -> tuple[dict[str, list[AuditRecord]], dict[str, list[tuple[str, str, str, str]]]]:
        """The first ``limit`` audit rows of each of ``mids`` (``audit_rows``) and the ``audit_about_user`` of each
        of ``users``, read concurrently (one round trip)."""
        statements = [self.handover.audit_page(mid, None, limit) for mid in mids]
        statements += [(self.handover.select_audit_by_user(), (user,)) for user in users]
        results = self.execute_concurrently(statements, "reading the audit trail")
        rows = {mid: [_audit_record(r) for r in result] for mid, result in zip(mids, results, strict=False)}
        about = {
            user: [(r.mid, r.store, r.record_key, r.side) for r in result]
            for user, result in zip(users, results[len(mids) :], strict=True)
        }
        return rows, about

    def audit_record_rows(self, mid: str, store: str, record_key: str) -> list[AuditRecord]:
        """The audit rows of one record in one event."""
        return self.audit_records_rows([(mid, store, record_key)])[0]

    def audit_records_rows(self, records: Sequence[tuple[str, str, str]]) -> list[list[AuditRecord]]:
        """``audit_record_rows`` of each (mid, store, record_key), read concurrently (one round trip)."""
        statements = [self.handover.audit_of_record(mid, store, key) for mid, store, key in records]
        results = self.execute_concurrently(statements, "reading the audit trail")
        return [[_audit_record(r) for r in rows] for rows in results]


def _audit_record(r: Any) -> AuditRecord:
    return AuditRecord(
        r.mid, r.request_id, r.store, r.record_key, FieldChange(r.field, _loads(r.before), _loads(r.after)),
        _utc(r.at) or EPOCH,
    )


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request's row in the history (``request_by_day``)."""

    request_id: str
    created_at: datetime
    action_by: str | None
    organisation_id: str | None
    from_user: str | None
    to_user: str | None


def request_day(at: datetime) -> str:
    """The history partition of a request: its UTC day, ``yyyy-mm-dd``."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d")


def _head(row: Any) -> RequestHead:
    return RequestHead(row.request_id, _utc(row.created_at) or row.created_at, row.action_by, row.organisation_id,
                       row.from_user, row.to_user)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class CassandraErrors(StoreErrors):
    """``StoreErrors`` whose message says what each host answered (``describe``)."""

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, SunbirdStoreError):
            return
        if isinstance(exc, (*_driver_errors(), OSError)):
            raise SunbirdStoreError(self.store, f"{self.doing}: {describe(exc)}") from exc


def describe(exc: BaseException) -> str:
    """A driver error in one line. ``NoHostAvailable`` is unwrapped to each host's answer, and an
    ``Unavailable`` answer says which consistency level needed how many live replicas."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        answers = "; ".join(f"{host}: {describe(error)}" for host, error in errors.items())
        return f"{type(exc).__name__} ({answers})"
    if type(exc).__name__ == "Unavailable" and getattr(exc, "consistency", None) is not None:
        from cassandra import ConsistencyLevel

        level = ConsistencyLevel.value_to_name.get(exc.consistency, exc.consistency)  # type: ignore[attr-defined]
        return (
            f"Unavailable: consistency {level} needs {exc.required_replicas} live replicas, "  # type: ignore[attr-defined]
            f"{exc.alive_replicas} alive"  # type: ignore[attr-defined]
        )
    return f"{type(exc).__name__}: {exc}"


def protocol_refusal(exc: BaseException | None) -> str:
    """A host's refusal of the protocol version offered, in the server's words, or '' when the failure was
    something else. Cassandra 2.1 answers with a server error ("Invalid or unsupported protocol version: N")
    that the driver does not step down on; a ``ProtocolVersionUnsupported`` is the driver's own name for it."""
    from cassandra.connection import ProtocolVersionUnsupported

    errors = getattr(exc, "errors", None)
    for error in errors.values() if isinstance(errors, dict) else [exc]:
        if isinstance(error, ProtocolVersionUnsupported):
            return str(error)
        text = str(error)
        at = text.lower().find("unsupported protocol version")
        if at >= 0:
            start = text.rfind(": ", 0, at)  # from the server's own words, e.g. "Invalid or unsupported ..."
            return text[start + 2 if start >= 0 else at :].split('"')[0].strip()
    return ""


def _driver_errors() -> tuple[type[BaseException], ...]:
    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable

    return (DriverException, NoHostAvailable)
