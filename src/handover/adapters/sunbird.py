"""``--store sunbird://``: handover on a live Sunbird deployment's own stores.

Course batches: Elasticsearch ``course-batch`` finds the candidates, the Cassandra ``course_batch`` row is the
source of truth (the engine re-checks it with ``rules.transfer_batch``), Cassandra is written first and the
Elasticsearch document second. Assets: Neo4j. Users and the admin email: userorg over HTTP. Ledger,
notification record and audit: handover's own Cassandra keyspace.

There is no transaction across these stores. The order of writes, and why a redelivered event converges:

1. Audit rows, then the records they describe (Cassandra batches, then their Elasticsearch documents; Neo4j
   nodes). Both are held in the unit of work and written together at a flush (``SunbirdUnitOfWork.flush``:
   the audit rows first, so a crash never leaves a change without its audit row); audit rows are keyed (mid,
   store, record, field), so writing them again overwrites instead of adding. A flush comes before a read
   whose answer a held write could change (a search or page of a user a held write names, a row or node a
   held write changes), when ``FLUSH_AT`` are held, and at commit: the writes of the events of a micro-batch
   that do not touch each other's records go out together, one round trip per kind of write.
2. At commit: the notification record, claimed with a lightweight transaction (``INSERT ... IF NOT EXISTS``)
   before the email is POSTed, then marked sent.
3. The ledger row, last.

A crash anywhere before 3 leaves no ledger row, so the event is processed again. Records already changed no
longer match the rules (their ``createdby`` / ``mentors`` / ``createdBy`` no longer name the from-user; a
cleaned PII field already holds the replacement) and are skipped; an Elasticsearch document that missed its
update still names the from-user, so the search finds it again and it is re-synced from its Cassandra row; the
claimed notification record stops a second email (a claim whose sender died is taken over after
``notification.claim.lease.seconds``). After 3 the event is a duplicate. The counts of a re-run event only
include what the re-run changed.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from handover.adapters.cassandra import (
    CassandraConnection,
    CassandraGateway,
    CourseBatchTable,
    HandoverKeyspace,
    Replication,
    RequestHead,
)
from handover.adapters.elasticsearch import (
    BatchHit,
    CourseBatchIndex,
    RefreshMode,
    base_urls,
    check_refresh_mode,
    parse_version,
)
from handover.adapters.neo4j import TRANSPORTS, AssetCypher, AssetGraph, default_http_base, with_values
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.adapters.userorg import UserOrgClient, UserOrgEndpoints
from handover.config import ConfigError, Settings
from handover.domain.fixture import FixtureMembers, fixture_records
from handover.domain.model import Asset, CourseBatch, User, asset_from_json, batch_from_json, user_from_json
from handover.domain.notification import Notification
from handover.domain.policy import IMAGE_ID_SUFFIX, IMAGE_SUFFIX
from handover.domain.rules import CREATED_BY, AssetUpdate, BatchUpdate, FieldChange, image_id
from handover.service.audit_trail import undo_mid
from handover.service.ports import (
    AssetRepository,
    AuditLog,
    AuditPage,
    AuditRecord,
    BatchRepository,
    BulkWrites,
    ColumnReverts,
    DuplicateRequest,
    Ledger,
    LedgerEntry,
    Outbox,
    ReadPlan,
    RecordCounts,
    RequestHistory,
    RequestLog,
    RequestStatus,
    RequestSummary,
    UnitOfWorkFactory,
    UserDirectory,
)
from handover.service.requests import event_status, parties_of, summary_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SunbirdConfig:
    """The settings of SPEC 7 that the Sunbird adapters use, checked once at start-up."""

    cassandra: CassandraConnection
    course_batch: CourseBatchTable
    handover: HandoverKeyspace
    write_group_size: int
    es_base_path: str
    es_index: str
    es_version: str | None
    es_refresh: RefreshMode
    neo4j_uri: str
    neo4j_user: str | None
    neo4j_password: str | None
    neo4j_label: str
    neo4j_transport: str
    neo4j_http_base: str | None
    neo4j_database: str | None
    userorg: UserOrgEndpoints
    timeout: float
    http_attempts: int
    claim_lease: timedelta
    object_types: tuple[str, ...]  # configured asset types and their Image types (dump reads only these)

    @classmethod
    def from_settings(cls, s: Settings) -> SunbirdConfig:
        base = s["userorg_service_base_url"]
        if not base:
            raise ConfigError("sunbird store: userorg_service_base_url (or service.userorg.basePath) is not set")
        try:
            return cls(
                cassandra=CassandraConnection(
                    hosts=tuple(h.strip() for h in s["lms-cassandra.host"].split(",") if h.strip()),
                    port=s["lms-cassandra.port"],
                    protocol_version=s["lms-cassandra.protocol_version"],
                    consistency=s["lms-cassandra.consistency_level"],
                    serial_consistency=s["lms-cassandra.serial_consistency_level"],
                    multi_dc=s["lms-cassandra.isMultiDCEnabled"],
                    local_dc=s["lms-cassandra.local_dc"],
                    username=s["lms-cassandra.username"],
                    password=s["lms-cassandra.password"],
                    timeout=float(s["http.timeout.seconds"]),
                ),
                course_batch=CourseBatchTable(s["lms-cassandra.keyspace"], s["lms-cassandra.course_batch.table"]),
                handover=HandoverKeyspace(
                    s["handover-cassandra.keyspace"],
                    Replication(
                        s["handover-cassandra.replication_class"],
                        s["handover-cassandra.replication_factor"],
                        Replication.parse_datacenters(s["handover-cassandra.datacenters"]),
                    ),
                ),
                write_group_size=s["threshold.batch.write.size"],
                es_base_path=",".join(base_urls(s["es.basePath"])),
                es_index=s["es.course_batch.index"],
                es_version=_checked_version(s["es.version"]),
                es_refresh=check_refresh_mode(s["es.refresh"]),
                neo4j_uri=s["neo4j.routePath"],
                neo4j_user=s["neo4j.user"],
                neo4j_password=s["neo4j.password"],
                neo4j_label=AssetCypher(s["neo4j.graph"]).label,
                neo4j_transport=_neo4j_transport(s["neo4j.transport"]),
                neo4j_http_base=s["neo4j.http.basePath"] or default_http_base(s["neo4j.routePath"]),
                neo4j_database=s["neo4j.database"],
                userorg=UserOrgEndpoints(base, s["user_read_api"], s["user_search_api"]),
                timeout=float(s["http.timeout.seconds"]),
                http_attempts=s["http.retry.attempts"],
                claim_lease=timedelta(seconds=s["notification.claim.lease.seconds"]),
                object_types=tuple(
                    sorted({n for base in s["target_object_types"] for n in (base, base + IMAGE_SUFFIX)})
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"sunbird store: {exc}") from exc


def _neo4j_transport(value: str) -> str:
    transport = value.strip().lower()
    if transport not in TRANSPORTS:
        raise ConfigError(f"neo4j.transport: expected one of {', '.join(TRANSPORTS)}, got {value!r}")
    return transport


def _checked_version(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_version(value)
        except ValueError as exc:
            raise ValueError(f"es.version: {exc}") from exc
    return value


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SunbirdStore:
    """A ``UnitOfWorkFactory`` over the Sunbird stores, plus the store operations the CLI uses. Nothing
    connects until it is first used."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = _utcnow) -> None:
        self.config = c = SunbirdConfig.from_settings(settings)
        self.clock = clock
        self.cassandra = CassandraGateway(c.cassandra, c.course_batch, c.handover, c.write_group_size)
        self.index = CourseBatchIndex(
            c.es_base_path, c.es_index, c.timeout, c.http_attempts, version=c.es_version, refresh=c.es_refresh
        )
        self.graph = AssetGraph(
            c.neo4j_uri,
            c.neo4j_user,
            c.neo4j_password,
            AssetCypher(c.neo4j_label),
            c.timeout,
            transport=c.neo4j_transport,
            http_base=c.neo4j_http_base,
            database=c.neo4j_database,
            http_attempts=c.http_attempts,
        )
        self.userorg = UserOrgClient(c.userorg, c.timeout, c.http_attempts)

    def __call__(self) -> SunbirdUnitOfWork:
        return SunbirdUnitOfWork(self, writes=True)

    def read_only(self) -> SunbirdUnitOfWork:
        """A unit of work for reads (no lock is taken on these stores anyway)."""
        return self()

    @contextmanager
    def preview(self, *, carry_changes: bool = False) -> Iterator[Callable[[], SunbirdUnitOfWork]]:
        """A factory whose units of work read the stores and write nothing. Ledger rows they would write are
        kept in memory for the preview, so a repeated ``mid`` is still a duplicate; record changes are not
        carried from one event to the next (``carry_changes`` cannot be had here and is ignored)."""
        ledger: dict[str, LedgerEntry] = {}
        yield lambda: SunbirdUnitOfWork(self, writes=False, preview_ledger=ledger)

    def close(self) -> None:
        self.cassandra.close()
        self.graph.close()
        self.index.close()
        self.userorg.close()

    # --- CLI operations ------------------------------------------------------------------------------

    def init_schema(self) -> None:
        """handover's keyspace and tables (idempotent). The Sunbird tables, index and graph are not touched."""
        self.cassandra.init_schema()

    def load(self, doc: Mapping[str, Any] | FixtureMembers) -> dict[str, int]:
        """Write a fixture's course batches (Cassandra row, then Elasticsearch document) and assets (Neo4j
        nodes), setting only the fixture's fields: a live row keeps its other columns (a CQL ``INSERT`` of six
        columns), a live document its other fields (bulk ``update`` with ``doc_as_upsert``), a live node its
        other properties (``SET n +=``). Users live in userorg and are not written; they are still validated.
        ValueError on a bad fixture (nothing written). A streamed fixture (``service.json_stream``) is read whole
        before anything is written: these stores have no transaction to roll back."""
        parse: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "users": user_from_json, "course_batches": batch_from_json, "assets": asset_from_json}
        records: dict[str, list[Any]] = {key: [] for key in parse}
        for key, values, _ in fixture_records(doc):
            records[key] = [parse[key](v) for v in values]
        users, batches, assets = records["users"], records["course_batches"], records["assets"]
        if users:
            log.warning("sunbird store: %d fixture users not loaded: users are read from userorg", len(users))
        self.cassandra.upsert_batches(batches)
        self.index.index_batches(batches)
        self.graph.upsert(assets)
        return {"course_batches": len(batches), "assets": len(assets)}

    def dump_sections(self) -> Iterator[tuple[str, Iterable[dict[str, Any]]]]:
        """SPEC 4's dump, streamed: course batches by (courseid, batchid) and the sent notifications by mid
        (Cassandra has no global order: sorted on disk in runs of ``DUMP_RUN`` records, then merged, so memory
        does not grow with the table); the data nodes of the configured types by identifier, a page at a time
        (a deployment's graph holds every other kind of content too). ``users`` is empty: the directory is
        userorg's and handover keeps no copy."""
        yield "users", iter(())
        batches = (b.to_json() for b in self.cassandra.scan_batches())
        yield "course_batches", sorted_on_disk(batches, key=lambda b: (b["courseid"], b["batchid"]))
        yield "assets", (a.to_json() for a in self.graph.all_assets(self.config.object_types))
        yield "notifications", sorted_on_disk(self.cassandra.scan_notifications(), key=lambda n: str(n["mid"]))

    def ledger_by_request(self, request_id: str) -> list[LedgerEntry]:
        return self.cassandra.ledger_by_request(request_id)


DUMP_RUN = 50_000  # records sorted in memory at a time by sorted_on_disk


def sorted_on_disk(
    records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any], run: int = DUMP_RUN
) -> Iterator[dict[str, Any]]:
    """``records`` (JSON objects) sorted by ``key``, at most ``run`` of them in memory: sorted runs are written to
    temporary files as JSON lines and merged (``heapq.merge``). The files are removed when the iterator ends or
    is closed."""
    with tempfile.TemporaryDirectory(prefix="handover-dump-") as directory:
        paths: list[str] = []
        chunk: list[dict[str, Any]] = []
        for record in records:
            chunk.append(record)
            if len(chunk) >= run:
                paths.append(_write_run(directory, len(paths), sorted(chunk, key=key)))
                chunk = []
        if not paths:  # everything fitted in one run
            yield from sorted(chunk, key=key)
            return
        if chunk:
            paths.append(_write_run(directory, len(paths), sorted(chunk, key=key)))
        with ExitStack() as files:
            readers = [(json.loads(line) for line in files.enter_context(open(p, encoding="utf-8"))) for p in paths]
            yield from heapq.merge(*readers, key=key)


def _write_run(directory: str, number: int, records: Sequence[dict[str, Any]]) -> str:
    path = os.path.join(directory, f"run-{number}.jsonl")
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return path


# --- the unit of work -------------------------------------------------------------------------------

FLUSH_AT = 2000  # held audit rows and record writes that make a unit of work flush
READ_AHEAD_NODES = 5000  # nodes a micro-batch's read ahead takes at most (SunbirdAssets.read_ahead)


@dataclass
class PendingWrites:
    """What a unit of work holds until its next flush, and what it touches: the users (lower-cased) that the
    written course-batch rows name before or after the write (the searches those writes could change), the
    course-batch keys, and the node identifiers with the values held for each (in order) and the owners
    (``createdBy``) the held node writes give."""

    audit: list[AuditRecord] = field(default_factory=list)
    batches: list[BatchUpdate] = field(default_factory=list)
    assets: list[AssetUpdate] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    keys: set[tuple[str, str]] = field(default_factory=set)
    ids: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)
    new_owners: set[str] = field(default_factory=set)
    audit_mids: set[str] = field(default_factory=set)

    def size(self) -> int:
        return len(self.audit) + len(self.batches) + len(self.assets)

    def touch(self, *users: str | None) -> None:
        self.users.update(u.lower() for u in users if u)

    def affects(self, users: Iterable[str], keys: Iterable[tuple[str, str]], ids: Iterable[str]) -> bool:
        """Whether a held write could change a course-batch search of ``users``, a row of ``keys`` or a node of
        ``ids``."""
        return (
            (bool(self.batches) and any(u.lower() in self.users for u in users))
            or (bool(self.batches) and any(k in self.keys for k in keys))
            or (bool(self.assets) and any(i in self.ids for i in ids))
        )


def _users_of_row(row: CourseBatch) -> tuple[str, ...]:
    return (row.createdby or "", *row.mentors)


def _change_values(changes: Sequence[FieldChange]) -> Iterator[str]:
    """The text values before and after of ``changes`` (user ids among them), lists flattened."""
    for change in changes:
        for value in (change.before, change.after):
            if isinstance(value, str):
                yield value
            elif isinstance(value, list | tuple):
                yield from (v for v in value if isinstance(v, str))


class SunbirdUnitOfWork:
    users: UserDirectory
    batches: BatchRepository
    assets: AssetRepository
    ledger: Ledger
    outbox: Outbox
    audit: AuditLog
    bulk: BulkWrites | None = None  # the Sunbird stores are written record by record
    counts: RecordCounts | None = None  # and their previews walk every record
    reverts: ColumnReverts | None = None  # and undone record by record

    def __init__(
        self, store: SunbirdStore, *, writes: bool, preview_ledger: dict[str, LedgerEntry] | None = None
    ) -> None:
        self.store = store
        self.writes = writes
        self._preview_ledger = preview_ledger
        self._pending = PendingWrites()  # audit rows and record writes, written together at the next flush
        self._ahead_futures: list[Future[None]] = []  # the read ahead in flight (read_ahead, ready)
        self.audit_version = 0  # audit rows held or written so far in this unit of work (SunbirdAudit's reads)
        # every node write of this unit of work, flushed or not: the values of each node, in order, and the users
        # the writes made creators (the nodes read ahead are answered with these laid over them)
        self.node_values: dict[str, list[Mapping[str, Any]]] = {}
        self.new_creators: set[str] = set()
        # the events whose audit rows, and the users whose audit_by_user rows, this unit of work wrote or holds
        self.audited_mids: set[str] = set()
        self.audited_users: set[str] = set()
        # every course-batch write of this unit of work, flushed or not: the users it names (lower-cased), its keys
        self.batch_users: set[str] = set()
        self.batch_keys: set[tuple[str, str]] = set()

    def __enter__(self) -> Self:
        self._ledger = SunbirdLedger(self, self._preview_ledger)
        self._outbox = SunbirdOutbox(self)
        self.users = SunbirdUsers(self.store.userorg)
        self.batches = self._batches = SunbirdBatches(self)
        self.assets = self._assets = SunbirdAssets(self)
        self.ledger = self._ledger
        self.outbox = self._outbox
        self.audit = self._audit = SunbirdAudit(self)
        return self

    def lock_users(self, user_ids: Iterable[str]) -> None:
        """Nothing: these stores have no transactions to serialise (a redelivered or concurrent event converges)."""
        return None

    def read_ahead(self, plan: ReadPlan) -> None:
        """``plan`` read in the background, the three parts at the same time (each on its own thread), while the
        engine reads the ledger and the users: the graph's in two queries (``SunbirdAssets.read_ahead``), the
        audit's in one or two rounds of concurrent Cassandra reads (``SunbirdAudit.read_ahead``), the course
        batches' in one round of searches and one of row reads (``SunbirdBatches.read_ahead``). Every read and
        write of the unit of work first waits for them (``ready``)."""
        self.ready()
        parts = (self._assets.read_ahead, self._audit.read_ahead, self._batches.read_ahead)
        pool = ThreadPoolExecutor(len(parts), thread_name_prefix="read-ahead")
        self._ahead_futures = [pool.submit(part, plan) for part in parts]
        pool.shutdown(wait=False)  # its threads end with their part

    def ready(self) -> None:
        """Wait for the read ahead in flight, if any; its first failure is raised once every part has ended."""
        futures, self._ahead_futures = self._ahead_futures, []
        errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error

    def hold_audit(self, records: Sequence[AuditRecord]) -> None:
        self.ready()
        if self.writes:
            self._pending.audit.extend(records)
            self._pending.audit_mids.update(r.mid for r in records)
            self.audit_version += 1
            self.audited_mids.update(r.mid for r in records)
            for r in records:
                if r.change.field == CREATED_BY:
                    self.audited_users.update(v for v in (r.change.before, r.change.after) if isinstance(v, str))

    def hold_batches(self, updates: Sequence[BatchUpdate], rows: Mapping[tuple[str, str], CourseBatch]) -> None:
        self.ready()
        """``rows``: the rows the updates were planned from (their users are the searches they affect)."""
        if self.writes:
            self._pending.batches.extend(updates)
            for u in updates:
                row = rows.get(u.key)
                named = [u.createdby, *(u.mentors or ()), *(_users_of_row(row) if row else ())]
                named += _change_values(u.changes)
                self._pending.touch(*named)
                self._pending.keys.add(u.key)
                self.batch_users.update(n.lower() for n in named if n)
                self.batch_keys.add(u.key)

    def hold_assets(self, updates: Sequence[AssetUpdate]) -> None:
        self.ready()
        if self.writes:
            self._pending.assets.extend(updates)
            for u in updates:
                self._pending.ids.setdefault(u.identifier, []).append(u.values)
                self.node_values.setdefault(u.identifier, []).append(u.values)
                created_by = u.values.get("createdBy")
                if isinstance(created_by, str):
                    self._pending.new_owners.add(created_by)
                    self.new_creators.add(created_by)

    def held_asset_values(self, user_id: str) -> Mapping[str, Sequence[Mapping[str, Any]]] | None:
        """The values held for each node, in order, to be laid over the nodes a page of ``user_id``'s assets reads
        (``SunbirdAssets.pages_created_by``). A held write that makes a node ``user_id``'s is made first (with
        everything held): the page's query could not find that node before."""
        if user_id in self._pending.new_owners:
            self.flush()
        return self._pending.ids

    def flush_if_large(self) -> None:
        """Flush when ``FLUSH_AT`` audit rows and writes are held (called between pages, where every held
        write has its audit rows)."""
        if self._pending.size() >= FLUSH_AT:
            self.flush()

    def holds_audit_of(self, mid: str) -> bool:
        return mid in self._pending.audit_mids

    def holds_audit_about(self, user_id: str) -> bool:
        """Whether a held audit row records a ``createdBy`` change from or to ``user_id`` (``audit_by_user``)."""
        return any(
            r.change.field == CREATED_BY and user_id in (r.change.before, r.change.after) for r in self._pending.audit
        )

    def flush_for(
        self, users: Iterable[str] = (), keys: Iterable[tuple[str, str]] = (), ids: Iterable[str] = ()
    ) -> None:
        """Flush before a read whose answer a held write could change: a search or page of one of ``users``
        (compared lower-cased, as the course-batch search is), a row of ``keys``, a node of ``ids``."""
        if self._pending.affects(users, keys, ids):
            self.flush()

    def flush(self) -> None:
        """Write what is held: the audit rows (one round of Cassandra batches), then the records they describe:
        the course-batch rows (Cassandra, the source of truth), their documents (one ``_bulk``), the nodes
        (``UNWIND`` pages). Held across the events of a unit of work until a read needs them (``flush_for``),
        ``FLUSH_AT`` are held or the unit of work commits."""
        self.ready()
        pending, self._pending = self._pending, PendingWrites()
        store = self.store
        if pending.audit:
            store.cassandra.audit_put(pending.audit)
            self.audit_version += 1
        if pending.batches:
            store.cassandra.write_batches(pending.batches)
            store.index.write(pending.batches)
        if pending.assets:
            store.graph.write(pending.assets)

    def commit(self) -> None:
        self.ready()
        self.flush()
        self._outbox.flush()
        self._ledger.flush()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Nothing can be rolled back across these stores: writes already made stay (a redelivered event
        converges, see the module doc); held writes, the email and the ledger row are dropped."""
        try:
            self.ready()
        except Exception as error:  # the unit of work failed or was left without reading it
            log.debug("sunbird store: read ahead failed: %s", error)
        if exc is not None and (self._pending.size() or self._ledger.pending):
            log.warning("sunbird store: unit of work failed (%s); ledger not written, the event will run again", exc)
        self._pending = PendingWrites()


class SunbirdUsers:
    def __init__(self, client: UserOrgClient) -> None:
        self._client = client
        self._cache: dict[str, User | None] = {}

    def get(self, user_id: str) -> User | None:
        if user_id not in self._cache:
            self._cache[user_id] = self._client.get_user(user_id)
        return self._cache[user_id]

    def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The users not read before in this unit of work read concurrently (``UserOrgClient.get_users``): one
        round trip for a micro-batch's users, and one more for the deleted ones among them."""
        wanted = [u for u in dict.fromkeys(user_ids) if u not in self._cache]
        if wanted:
            self._cache.update(self._client.get_users(wanted))
        return {u: found for u in dict.fromkeys(user_ids) if (found := self._cache[u]) is not None}

    def organisation_exists(self, organisation_id: str) -> bool:
        """Whether userorg knows the organisation (the API answers ``UOS_UOWNTRANS0028`` when not)."""
        return self._client.organisation_exists(organisation_id)

    def deleted_users(self, organisation_id: str | None, after: str, limit: int) -> list[User]:
        """``DeletedUserSearch`` through userorg's user search (``UserOrgClient.deleted_users``)."""
        return self._client.deleted_users(organisation_id, after, limit)

    def find(self, organisation_id: str, text: str, limit: int) -> list[User]:
        """Users of the organisation userorg's search finds for ``text`` (the console's look-up)."""
        return self._client.find_users(organisation_id, text, limit)


def drifted(hit: BatchHit, row: CourseBatch) -> bool:
    """Whether the Elasticsearch copy differs from the Cassandra row in the fields handover writes."""
    return hit.created_by != row.createdby or tuple(hit.mentors) != tuple(row.mentors)


class SunbirdBatches:
    def __init__(self, uow: SunbirdUnitOfWork) -> None:
        self._uow = uow
        self._store = uow.store
        self._rows: dict[tuple[str, str], CourseBatch] = {}  # rows read and not yet written
        self._refreshed: int | None = None  # the index's ``writes`` at this unit of work's last refresh
        self._repairs = 0  # documents re-synced by this unit of work
        # read ahead: each user's hits (the first and only page), the rows of their keys, what was asked
        self._ahead: dict[str, list[BatchHit]] = {}
        self._ahead_rows: dict[tuple[str, str], CourseBatch] = {}
        self._ahead_query: tuple[frozenset[int], int, int] | None = None  # statuses, page size, repairs then

    def read_ahead(self, plan: ReadPlan) -> None:
        """The first page of each ``plan.batch_users`` search, the searches sent concurrently (after the unit of
        work's refresh), then the rows of every key found in one round of concurrent reads. ``pages_of_user`` of
        such a user answers from them (once) when that page was its last, no write of this unit of work named the
        user or changed one of those rows, and no document was re-synced since; otherwise it searches."""
        users = list(dict.fromkeys(plan.batch_users))
        if not users:
            return
        index = self._store.index
        refresh = self._refreshed != index.writes
        self._refreshed = index.writes
        self._ahead = index.first_pages(users, sorted(plan.batch_statuses), plan.page_size, refresh=refresh)
        keys = list(dict.fromkeys((h.course_id, h.batch_id) for hits in self._ahead.values() for h in hits))
        self._ahead_rows = self._store.cassandra.read_batches(keys) if keys else {}
        self._ahead_query = (frozenset(plan.batch_statuses), plan.page_size, self._repairs)

    def pages_of_user(self, user_id: str, statuses: frozenset[int], page_size: int) -> Iterator[Sequence[CourseBatch]]:
        """Elasticsearch finds the candidates (every hit, ``search_after``); each is read from Cassandra and
        kept when the row itself has one of ``statuses`` and names the user as creator or mentor. A document
        whose ``createdBy`` / ``mentors`` differ from its row is re-synced from the row.

        Held writes that name the user (of earlier events of this unit of work) are made before the search, so
        that the search and the rows see them (``es.refresh`` makes them searchable: a refresh before the unit of
        work's first search and before one after a write of the index); the others stay held (they
        cannot change which batches the search finds, nor their rows). A page's own writes need no flush before
        the next page: ``search_after`` pages past them."""
        self._uow.ready()
        ahead = self._ahead.pop(user_id, None)
        if ahead is not None and self._ahead_query == (frozenset(statuses), page_size, self._repairs):
            keys = [(h.course_id, h.batch_id) for h in ahead]
            uow = self._uow
            if user_id.lower() not in uow.batch_users and not any(k in uow.batch_keys for k in keys):
                page = self._page(user_id, statuses, ahead, self._ahead_rows, set())
                if page:
                    yield page
                self._uow.flush_if_large()
                return
        seen: set[tuple[str, str]] = set()
        self._uow.flush_for(users=(user_id,))
        index = self._store.index
        refresh = self._refreshed != index.writes  # the first search of the unit of work, or a write since
        self._refreshed = index.writes
        for hits in index.search_pages(user_id, sorted(statuses), page_size, refresh=refresh):
            fresh = [h for h in hits if (h.course_id, h.batch_id) not in seen]
            keys = [(h.course_id, h.batch_id) for h in fresh]
            self._uow.flush_for(keys=keys)
            page = self._page(user_id, statuses, fresh, self._store.cassandra.read_batches(keys), seen)
            if page:
                yield page
            self._uow.flush_if_large()

    def _page(
        self,
        user_id: str,
        statuses: frozenset[int],
        hits: Sequence[BatchHit],
        rows: Mapping[tuple[str, str], CourseBatch],
        seen: set[tuple[str, str]],
    ) -> list[CourseBatch]:
        """The rows of ``hits`` that have one of ``statuses`` and name the user; documents that drifted from their
        rows re-synced."""
        page: list[CourseBatch] = []
        repairs: list[tuple[str, dict[str, Any]]] = []
        for hit in hits:
            key = (hit.course_id, hit.batch_id)
            seen.add(key)
            row = rows.get(key)
            if row is None:
                log.warning("sunbird store: batch %s/%s is indexed but has no Cassandra row", *key)
                continue
            if drifted(hit, row):
                repairs.append((row.batchid, {"createdBy": row.createdby, "mentors": list(row.mentors)}))
            if row.status in statuses and (row.createdby == user_id or user_id in row.mentors):
                page.append(row)
                self._rows[key] = row
        if repairs and self._uow.writes:
            log.info("sunbird store: %d course-batch documents re-synced from Cassandra", len(repairs))
            self._store.index.update_fields(repairs)
            self._repairs += 1
        return page

    def write(self, updates: Sequence[BatchUpdate]) -> None:
        """Held until the unit of work flushes: Cassandra (the source of truth) first, then exactly the written
        fields of the documents."""
        if updates:
            rows = {u.key: row for u in updates if (row := self._rows.pop(u.key, None)) is not None}
            self._uow.hold_batches(list(updates), rows)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CourseBatch]:
        """The rows (no locks: Cassandra has none; an undo re-checks each field's value)."""
        self._uow.ready()
        wanted = list(dict.fromkeys(keys))
        self._uow.flush_for(keys=wanted)
        rows = self._store.cassandra.read_batches(wanted)
        self._rows.update(rows)
        return rows


class SunbirdAssets:
    def __init__(self, uow: SunbirdUnitOfWork) -> None:
        self._uow = uow
        self._graph = uow.store.graph
        self._image: tuple[str, Asset | None] | None = None  # the Image node read with the asset before
        self._ahead: dict[str, Asset | None] = {}  # nodes read ahead by identifier (None: no such node)
        self._ahead_owned: dict[str, list[Asset]] = {}  # every node of these users read ahead, of _ahead_types
        self._ahead_types: tuple[str, ...] = ()

    def read_ahead(self, plan: ReadPlan) -> None:
        """The micro-batch's single assets with their Image nodes in one query, and every node of the types
        of the users whose assets are paged in another (``AssetGraph.created_by_any``; nothing kept when they
        have more than ``READ_AHEAD_NODES`` together: those users are paged from the graph). ``get`` and
        ``pages_created_by`` then answer from these with the unit of work's node writes laid over them, unless a
        write of this unit of work made the user a creator (that node was not read ahead) or wrote the node
        asked by ``get``: then they read the graph. The nodes are read at the start of the micro-batch."""
        wanted = [i for a in plan.asset_ids for i in ((a,) if a.endswith(IMAGE_ID_SUFFIX) else (a, image_id(a)))]
        wanted = [i for i in dict.fromkeys(wanted) if i not in self._uow.node_values]
        if wanted:
            found = self._graph.get_many(wanted)
            self._ahead.update({i: found.get(i) for i in wanted})
        owners = list(dict.fromkeys(plan.asset_owners))
        if owners:
            self._ahead_types = tuple(plan.object_types)
            self._ahead_owned = self._graph.created_by_any(owners, plan.object_types, READ_AHEAD_NODES)

    def get(self, identifier: str) -> Asset | None:
        """The node. Reading an asset also reads its Image node (one query): a ``get`` of that Image right
        after, with no other read or write of nodes between, is answered from it. A node read ahead and not
        written since is answered from that read."""
        self._uow.ready()
        if identifier in self._ahead and identifier not in self._uow.node_values:
            self._image = None
            return self._ahead[identifier]
        image, self._image = self._image, None
        if image is not None and image[0] == identifier:
            return image[1]
        wanted = [identifier] if identifier.endswith(IMAGE_ID_SUFFIX) else [identifier, image_id(identifier)]
        self._uow.flush_for(ids=wanted)
        found = self._graph.get_many(wanted)
        if len(wanted) > 1:
            self._image = (wanted[1], found.get(wanted[1]))
        return found.get(identifier)

    def get_many(self, identifiers: Sequence[str]) -> dict[str, Asset]:
        self._uow.ready()
        self._image = None
        wanted = list(dict.fromkeys(identifiers))
        self._uow.flush_for(ids=wanted)
        return self._graph.get_many(wanted)

    def types_created_by(self, user_id: str) -> dict[str, int]:
        """How many assets ``user_id`` created, by objectType (the graph's count)."""
        self._uow.flush()  # (waits for the read ahead)
        return self._graph.types_created_by(user_id)

    def pages_created_by(self, user_id: str, object_types: Sequence[str], page_size: int) -> Iterator[Sequence[Asset]]:
        """The graph's pages with the node writes the unit of work holds laid over them (``with_values``): a node
        a held write takes from the user is left out, one it changes otherwise comes with the change, as the
        graph would answer after the writes; a held write that gives a node to the user is made first
        (``held_asset_values``). Held writes then need no flush before the pages are read (a user's earlier
        single-asset transfer in the micro-batch); a page's own writes need none before the next page (keyset
        paging by identifier pages past them)."""
        self._uow.ready()
        self._image = None
        owned = self._ahead_owned.get(user_id)
        if owned is not None and tuple(object_types) == self._ahead_types and user_id not in self._uow.new_creators:
            written = self._uow.node_values
            mine = [a for a in (_laid_over(a, written) for a in owned) if a.createdBy == user_id]
            for start in range(0, len(mine), max(page_size, 1)):
                yield mine[start : start + page_size]
                self._uow.flush_if_large()
            return
        held = self._uow.held_asset_values(user_id)
        for page in self._graph.pages_created_by(user_id, object_types, page_size):
            if held:
                page = [a for a in (_laid_over(a, held) for a in page) if a.createdBy == user_id]
            if page:
                yield page
            self._uow.flush_if_large()

    def write(self, updates: Sequence[AssetUpdate]) -> None:
        """Held until the unit of work flushes: the updates' top-level properties (a None value removes the
        property)."""
        self._image = None
        if updates:
            self._uow.hold_assets(list(updates))


def _laid_over(asset: Asset, held: Mapping[str, Sequence[Mapping[str, Any]]]) -> Asset:
    for values in held.get(asset.identifier, ()):
        asset = with_values(asset, values)
    return asset


class SunbirdLedger:
    def __init__(self, uow: SunbirdUnitOfWork, preview: dict[str, LedgerEntry] | None) -> None:
        self._uow = uow
        self._cassandra = uow.store.cassandra
        self._preview = preview
        self.pending: dict[str, LedgerEntry] = {}

    def get(self, mid: str) -> LedgerEntry | None:
        if mid in self.pending:
            return self.pending[mid]
        if self._preview is not None and mid in self._preview:
            return self._preview[mid]
        return self._cassandra.ledger_get(mid)

    def get_many(self, mids: Sequence[str]) -> dict[str, LedgerEntry]:
        """The ledger rows of a micro-batch's mids read at once (concurrently): one round trip instead of one
        per event."""
        kept = {**(self._preview or {}), **self.pending}
        wanted = [m for m in dict.fromkeys(mids) if m not in kept]
        found = {m: e for m, e in self._cassandra.ledger_get_many(wanted).items() if e is not None}
        return {**found, **{m: kept[m] for m in mids if m in kept}}

    def record(self, entry: LedgerEntry) -> None:
        """Kept until commit: the ledger row is the last write of an event."""
        self.pending[entry.mid] = entry

    def by_request(self, request_id: str) -> list[LedgerEntry]:
        entries = {e.mid: e for e in self._cassandra.ledger_by_request(request_id)}
        for source in (self._preview or {}, self.pending):
            entries.update({m: e for m, e in source.items() if e.request_id == request_id})
        return sorted(entries.values(), key=lambda e: e.mid)

    def flush(self) -> None:
        """The ledger rows of the unit of work's events, in one round of concurrent batches."""
        if self._uow.writes:
            self._cassandra.ledger_put_many(list(self.pending.values()))
        elif self._preview is not None:
            self._preview.update(self.pending)
        self.pending.clear()


class SunbirdOutbox:
    """One email per ``mid``: a notification record claimed with a lightweight transaction before the POST,
    marked sent after it. The emails of a unit of work are sent at commit, after the records were written, all
    together (``send_all``: the claims, the POSTs and the marks each in one round trip)."""

    def __init__(self, uow: SunbirdUnitOfWork) -> None:
        self._uow = uow
        self._store = uow.store
        self._pending: dict[str, Notification] = {}

    def record(self, note: Notification) -> bool:
        """Kept for commit. False when this unit of work keeps one for the mid already, or (a preview, which
        claims nothing) when the record says it was sent; a unit of work that writes learns that from the claim
        at commit, which then sends nothing."""
        if note.mid in self._pending:
            return False
        if not self._uow.writes:
            existing = self._store.cassandra.notification_get(note.mid)
            if existing is not None and existing.sent_at is not None:
                return False
        self._pending[note.mid] = note
        return True

    def flush(self) -> None:
        notes, self._pending = list(self._pending.values()), {}
        if self._uow.writes and notes:
            self.send_all(notes)

    def send_once(self, note: Notification) -> bool:
        """True when this call sent the email; False when it had been sent. SunbirdStoreError when another
        worker holds a live claim (the caller retries) or the POST failed (the claim is released)."""
        return self.send_all([note])[0]

    def send_all(self, notes: Sequence[Notification]) -> list[bool]:
        """``send_once`` of each note: the claims sent concurrently, then the POSTs, then the marks of the emails
        sent. When one failed (a live claim, a POST), the others are still sent and marked, and the first error
        is raised after them."""
        cassandra, now = self._store.cassandra, self._store.clock()
        claims = [uuid.uuid4() for _ in notes]
        existing = cassandra.notification_claim_many(list(zip(notes, claims, strict=True)), now)
        errors: list[BaseException] = []
        to_send: list[tuple[Notification, uuid.UUID]] = []
        for note, claim, row in zip(notes, claims, existing, strict=True):
            if row is None:
                to_send.append((note, claim))
            elif row.sent_at is not None:
                continue
            elif row.claimed_at is not None and now - row.claimed_at < self._store.config.claim_lease:
                busy = f"the notification of {note.mid} is being sent by another worker; retry later"
                errors.append(SunbirdStoreError("cassandra", busy))
            elif not cassandra.notification_reclaim(note.mid, row.claim_id, claim, now):
                taken = f"the notification of {note.mid} was claimed concurrently"
                errors.append(SunbirdStoreError("cassandra", taken))
            else:
                to_send.append((note, claim))
        failures = self._store.userorg.send_notifications([note for note, _ in to_send])
        sent: list[str] = []
        for (note, claim), failure in zip(to_send, failures, strict=True):
            if failure is None:
                sent.append(note.mid)
            else:
                cassandra.notification_release(note.mid, claim)
                errors.append(failure)
        if sent:
            cassandra.notification_sent_many(sent, self._store.clock())
        if errors:
            raise errors[0]
        done = set(sent)
        return [note.mid in done for note in notes]


class SunbirdAudit:
    def __init__(self, uow: SunbirdUnitOfWork) -> None:
        self._uow = uow
        self._cassandra = uow.store.cassandra
        self._about_read: tuple[str, int, list[tuple[str, list[AuditRecord]]]] | None = None
        self._ahead_rows: dict[str, list[AuditRecord]] = {}  # first page of events' rows read ahead
        self._ahead_limit = 0
        self._ahead_about: dict[str, list[tuple[str, list[AuditRecord]]]] = {}  # users' _about read ahead

    def read_ahead(self, plan: ReadPlan) -> None:
        """The first page of each ``plan.audit_mids`` and the ``audit_by_user`` partition of each
        ``plan.audit_users`` in one round of concurrent reads, then the rows of the records those name in another.
        ``page`` of such an event and ``recorded_names`` / ``redact`` of such a user answer from them until this
        unit of work holds or writes audit rows of that event, or about that user."""
        if not (plan.audit_mids or plan.audit_users):
            return
        rows, about = self._cassandra.audit_read_ahead(plan.audit_mids, plan.audit_page_size, plan.audit_users)
        keys = [(mid, store, key) for entries in about.values() for mid, store, key, _ in entries]
        records = iter(self._cassandra.audit_records_rows(keys) if keys else [])
        self._ahead_about = {u: [(side, next(records)) for _, _, _, side in entries] for u, entries in about.items()}
        self._ahead_rows, self._ahead_limit = rows, plan.audit_page_size

    def record(self, records: Sequence[AuditRecord]) -> None:
        """Held until the unit of work flushes, which writes them before the record writes they describe."""
        self._uow.hold_audit(records)

    def redact(self, user_id: str, values: Sequence[str], replacement: str) -> int:
        """In the audit rows of the records whose ``createdBy`` changed from or to ``user_id`` (``audit_by_user``:
        where a transfer put that user's names), every value equal to one of ``values`` becomes ``replacement``;
        rows written back in place (same key, time and request). Returns how many values were replaced."""
        self._uow.ready()
        wanted = set(values) - {replacement}
        if not wanted:
            return 0

        def hit(value: Any) -> bool:
            return isinstance(value, str) and value in wanted

        replaced, changed = 0, []
        for _, rows in self._about(user_id):
            for row in rows:
                old = row.change
                if hit(old.before) or hit(old.after):
                    replaced += hit(old.before) + hit(old.after)
                    before = replacement if hit(old.before) else old.before
                    after = replacement if hit(old.after) else old.after
                    changed.append(replace(row, change=FieldChange(old.field, before, after)))
        if changed and self._uow.writes:
            self._cassandra.audit_put(changed)
            self._uow.audit_version += 1
            self._uow.audited_users.add(user_id)
        return replaced

    def recorded_names(self, user_id: str) -> list[str]:
        """From ``audit_by_user``: one read of the user's partition, then one of each such record's rows."""
        names: set[str] = set()
        for side, rows in self._about(user_id):
            for row in rows:
                value = row.change.before if side == "before" else row.change.after
                if row.change.field != CREATED_BY and isinstance(value, str):
                    names.add(value)
        return sorted(names)

    def _about(self, user_id: str) -> list[tuple[str, list[AuditRecord]]]:
        """(side, audit rows of the record) for each audited record whose ``createdBy`` was (``before``) or
        became (``after``) ``user_id``: one read of the user's partition, then the records' rows concurrently.
        Held audit rows about the user are written first. Kept until the next audit row is held or written
        (``recorded_names`` then ``redact`` of a clean-up read it once)."""
        self._uow.ready()
        if user_id in self._ahead_about and user_id not in self._uow.audited_users:
            return self._ahead_about[user_id]
        if self._uow.holds_audit_about(user_id):
            self._uow.flush()
        kept = self._about_read
        if kept is not None and kept[:2] == (user_id, self._uow.audit_version):
            return kept[2]
        about = self._cassandra.audit_about_user(user_id)
        rows = self._cassandra.audit_records_rows([(mid, store, key) for mid, store, key, _ in about]) if about else []
        out = [(side, found) for (_, _, _, side), found in zip(about, rows, strict=True)]
        self._about_read = (user_id, self._uow.audit_version, out)
        return out

    def page(
        self,
        *,
        mid: str | None = None,
        request_id: str | None = None,
        newest_first: bool = False,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> AuditPage:
        """Rows of one event, or of every event of a request (events oldest first, or newest first). Within
        one event rows come in key order (store, record, field): an event changes each field once, so the
        order inside it does not matter to undo."""
        self._uow.ready()
        ahead = self._ahead_rows.get(mid) if mid is not None and cursor is None else None
        if ahead is not None and mid is not None and mid not in self._uow.audited_mids and limit == self._ahead_limit:
            if len(ahead) >= limit:
                last = ahead[limit - 1]
                return AuditPage(ahead[:limit], _encode_cursor(mid, (last.store, last.record_key, last.change.field)))
            return AuditPage(ahead, None)
        if mid is None or self._uow.holds_audit_of(mid):
            self._uow.flush()
        if mid is not None:
            mids = [mid]
        elif request_id is not None:
            entries = sorted(self._uow._ledger.by_request(request_id), key=lambda e: (e.processed_at, e.mid))
            mids = [e.mid for e in (reversed(entries) if newest_first else entries)]
        else:
            raise ValueError("audit page: give a mid or a request id")
        position = _decode_cursor(cursor)
        if position is not None and position[0] not in mids:
            raise ValueError(f"bad audit cursor {cursor!r}: not an event of this query")
        start = mids.index(position[0]) if position else 0
        after = position[1] if position else None
        records: list[AuditRecord] = []
        for index in range(start, len(mids)):
            current = mids[index]
            rows = self._cassandra.audit_rows(current, after if index == start else None, limit - len(records))
            records.extend(rows)
            if len(records) >= limit:
                last = records[-1]
                return AuditPage(records, _encode_cursor(current, (last.store, last.record_key, last.change.field)))
        return AuditPage(records, None)


def _encode_cursor(mid: str, after: tuple[str, str, str]) -> str:
    return json.dumps([mid, list(after)], ensure_ascii=False)


def _decode_cursor(cursor: str | None) -> tuple[str, tuple[str, str, str]] | None:
    if cursor is None:
        return None
    try:
        mid, after = json.loads(cursor)
        store, key, field = after
        return str(mid), (str(store), str(key), str(field))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad audit cursor {cursor!r}") from exc


class SunbirdRequestLog:
    """``RequestLog`` and ``RequestHistory`` in handover's Cassandra keyspace (table ``request_log``, one partition
    per request; ``request_by_day``, one partition per UTC day, newest first, and ``request_days``, the days); an
    event's outcome is its ledger row's. With Kafka, an event that ended in the failed topic has no ledger row and
    shows as pending until it is re-driven."""

    HISTORY_CHUNK = 100  # history rows read per query while looking for a page

    def __init__(self, store: SunbirdStore) -> None:
        self._store = store

    def record(self, request_id: str, action_by: str, events: Sequence[Mapping[str, Any]]) -> None:
        rows = []
        for event in events:
            edata = event.get("edata")
            asset = edata.get("assetInformation") if isinstance(edata, Mapping) else None
            rows.append((str(event["mid"]), dict(asset) if isinstance(asset, Mapping) else {}))
        parties = parties_of(events[0]) if events else (None, None, None)
        if not self._store.cassandra.request_log_put(request_id, action_by, rows, self._store.clock(), parties):
            raise DuplicateRequest(request_id)

    def forget(self, request_id: str, mids: Sequence[str]) -> None:
        drop = set(mids)
        cassandra = self._store.cassandra
        created = cassandra.request_created_at(request_id)
        rows = cassandra.request_log_rows(request_id)
        cassandra.request_log_delete(request_id, [position for position, mid, _, _ in rows if mid in drop])
        if created is not None and all(mid in drop for _, mid, _, _ in rows):
            cassandra.request_head_delete(request_id, created)

    def status(self, request_id: str) -> RequestStatus | None:
        rows = self._store.cassandra.request_log_rows(request_id)
        if not rows:
            return None
        events = []
        for _, mid, _, asset in rows:
            entry = self._store.cassandra.ledger_get(mid)
            if entry is None:
                events.append(event_status(mid, asset))
            else:
                undone = entry.outcome == "applied" and self._store.cassandra.ledger_get(undo_mid(mid)) is not None
                events.append(
                    event_status(
                        mid,
                        asset,
                        entry.outcome,
                        entry.reason,
                        entry.skipped,
                        entry.changed_batches,
                        entry.changed_assets,
                        undone=undone,
                    )
                )
        return RequestStatus(request_id, rows[0][2], events)

    def history(
        self,
        *,
        user: str | None = None,
        outcome: str | None = None,
        action_by: str | None = None,
        limit: int = 25,
        offset: int = 0,
    ) -> list[RequestSummary]:
        """As ``RequestHistory.history``. Reads the days newest first and each day in chunks of
        ``HISTORY_CHUNK`` (keyset on created_at, request_id), and stops as soon as the page is full: a page reads
        the requests up to it (and, with a filter, the ones the filter leaves out), never the whole history."""
        out: list[RequestSummary] = []
        to_skip = offset
        for head in self._heads():
            if action_by is not None and head.action_by != action_by:
                continue
            if user and user not in (head.action_by, head.from_user, head.to_user):
                continue
            if not outcome and to_skip:  # no need to read the events of a request before the page
                to_skip -= 1
                continue
            found = self._summary(head)
            if found is None or (outcome and not found.outcomes.get(outcome)):
                continue
            if to_skip:
                to_skip -= 1
                continue
            out.append(found)
            if len(out) >= limit:
                break
        return out

    def summary(self, request_id: str) -> RequestSummary | None:
        head = self._store.cassandra.request_head(request_id)
        return self._summary(head) if head is not None else None

    def processed_counts(self) -> list[tuple[str | None, str, str | None, int]]:
        """Not kept on the Sunbird store: the ledger is keyed by mid, and counting it would read every row (the
        worker's Prometheus counters have the numbers)."""
        return []

    def _heads(self) -> Iterator[RequestHead]:
        cassandra = self._store.cassandra
        for day in cassandra.request_days():
            before: tuple[datetime, str] | None = None
            while True:
                chunk = cassandra.requests_of_day(day, before, self.HISTORY_CHUNK)
                yield from chunk
                if len(chunk) < self.HISTORY_CHUNK:
                    break
                before = (chunk[-1].created_at, chunk[-1].request_id)

    def _summary(self, head: RequestHead) -> RequestSummary | None:
        found = self.status(head.request_id)
        if found is None:
            return None
        parties = (head.organisation_id, head.from_user, head.to_user)
        return summary_of(head.request_id, head.created_at, head.action_by or found.action_by, parties, found.events)


def _satisfies_the_ports(store: SunbirdStore) -> tuple[UnitOfWorkFactory, RequestLog, RequestHistory]:
    """For mypy: the store is a ``UnitOfWorkFactory`` (its units of work have every port of ``UnitOfWork``), and
    its request log a ``RequestLog`` and a ``RequestHistory``."""
    log = SunbirdRequestLog(store)
    return store, log, log
