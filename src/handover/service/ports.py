"""Ports: what the engine needs from the outside world. Adapters implement these protocols.

A ``UnitOfWork`` groups the repositories of one store; everything an event changes, its ledger row, its
outbox row and its audit rows are written between ``__enter__`` and ``commit()`` and become durable together
wherever the store has transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from handover.domain.model import Asset, CourseBatch, User
from handover.domain.notification import Notification
from handover.domain.rules import AssetUpdate, BatchUpdate, FieldChange

OutcomeKind = Literal["applied", "rejected", "duplicate"]
STORE_COURSE_BATCH = "course_batch"
STORE_ASSET = "asset"


RecordsWritten = Callable[[int, int], None]
"""Progress of long work (a replay, an undo): called after each write with the number of course batches and of
assets that write changed (either may be 0). It runs inside the unit of work: keep it quick, raise nothing."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One processed event (applied or rejected), keyed by ``mid``."""

    mid: str
    action: str | None
    outcome: OutcomeKind
    reason: str | None
    skipped: tuple[str, ...]
    changed_batches: int
    changed_assets: int
    request_id: str | None
    subject_user_id: str | None
    processed_at: datetime
    detail: str = ""


@dataclass(slots=True)
class AuditRecord:
    """One changed field of one record, as SPEC 10 keeps it."""

    mid: str
    request_id: str | None
    store: str  # STORE_COURSE_BATCH or STORE_ASSET
    record_key: str  # "courseid/batchid" or the asset identifier
    change: FieldChange
    at: datetime


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of audit records and where the next page starts (None: this was the last page)."""

    records: Sequence[AuditRecord]
    next_cursor: str | None


class UserDirectory(Protocol):
    """The users. Optional, where the directory can (``getattr``): ``organisation_exists(org_id) -> bool`` and
    ``find(org_id, text, limit) -> list[User]`` (users of the root organisation whose id or names contain ``text``,
    for the console's look-up)."""

    def get(self, user_id: str) -> User | None: ...

    def get_many(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The users with these ids that the directory has (a micro-batch reads its users at once)."""
        ...


class DeletedUserSearch(Protocol):
    """An optional capability of a unit of work's user directory (``uow.users``): the users marked deleted, a page
    at a time, for the deleted-owner report (``service.reports``). SQL store: ``users.isDeleted``; Sunbird:
    userorg's user search (status 2, as Lern's report reads ``status = 2`` from the user table)."""

    def deleted_users(self, organisation_id: str | None, after: str, limit: int) -> Sequence[User]:
        """Up to ``limit`` deleted users whose root organisation is ``organisation_id`` (None: any), with an id
        greater than ``after`` ("" for the first page), in id order; fewer than ``limit`` means the last page."""
        ...


class BatchRepository(Protocol):
    def pages_of_user(
        self, user_id: str, statuses: frozenset[int], page_size: int
    ) -> Iterator[Sequence[CourseBatch]]:
        """Every batch with one of ``statuses`` that ``user_id`` created or mentors, each once, in pages.
        The caller may write the rows of a page before it asks for the next one."""
        ...

    def write(self, updates: Sequence[BatchUpdate]) -> None: ...

    def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CourseBatch]:
        """The batches with these (courseid, batchid) keys that exist, locked until the unit of work ends
        where the store can lock rows."""
        ...


class AssetRepository(Protocol):
    """The assets. Optional, where the store can (``getattr``): ``types_created_by(user_id) -> dict[str, int]``,
    how many assets the user created by objectType (the preview's "stays with the old owner")."""

    def get(self, identifier: str) -> Asset | None: ...

    def pages_created_by(
        self, user_id: str, object_types: Sequence[str], page_size: int
    ) -> Iterator[Sequence[Asset]]:
        """Every asset with one of ``object_types`` whose createdBy is ``user_id``, each once, in pages."""
        ...

    def write(self, updates: Sequence[AssetUpdate]) -> None:
        """Write ``values`` of each update; a None value of a property that is not a column removes it."""
        ...

    def get_many(self, identifiers: Sequence[str]) -> dict[str, Asset]:
        """The assets with these identifiers that exist, locked like ``BatchRepository.get_many``."""
        ...


class Ledger(Protocol):
    def get(self, mid: str) -> LedgerEntry | None: ...

    def get_many(self, mids: Sequence[str]) -> dict[str, LedgerEntry]:
        """The entries of these mids that exist (a micro-batch reads its mids at once)."""
        ...

    def record(self, entry: LedgerEntry) -> None: ...

    def by_request(self, request_id: str) -> list[LedgerEntry]:
        """Every entry with this request id (a request has a handful of events)."""
        ...


class Outbox(Protocol):
    def record(self, notification: Notification) -> bool:
        """Keep (or send) the email for ``notification.mid``; False when one exists already for that mid."""
        ...


class AuditLog(Protocol):
    def record(self, records: Sequence[AuditRecord]) -> None: ...

    def redact(self, user_id: str, values: Sequence[str], replacement: str) -> int:
        """Replace every audited value (before or after) equal to one of ``values`` by ``replacement``, at
        least in the rows of every change of an asset's ``createdBy`` from or to ``user_id`` (the SQL audit: in
        every row): a deleted user's names then stay in no audit row, also not in those of transfers made before
        the deletion. Returns how many values were replaced."""
        ...

    def recorded_names(self, user_id: str) -> Sequence[str]:
        """The string values the audit recorded for ``user_id`` beside a change of an asset's ``createdBy``
        (same mid and record): of the other fields of that change, the value before when ``createdBy`` was
        ``user_id`` before, the value after when it became ``user_id``. These are the names a transfer replaced
        or wrote for that user, whatever the user directory holds now."""
        ...

    def page(
        self,
        *,
        mid: str | None = None,
        request_id: str | None = None,
        newest_first: bool = False,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> AuditPage:
        """Up to ``limit`` records of one event (``mid``) or one request, in the order they were written (or
        newest first), starting after ``cursor`` (from the previous page's ``next_cursor``)."""
        ...


@dataclass(frozen=True, slots=True)
class AuditStamp:
    """What every audit row of one event carries besides the change itself."""

    mid: str
    request_id: str | None
    at: datetime


class BulkWrites(Protocol):
    """An optional capability of a store that can write set-based (the SQL store). The engine uses it for the
    part of a transfer whose new values do not depend on each record; the pure rules still decide those
    values, and the store writes them, with their audit rows, in one statement per (type, version). Mentor lists
    are the one exception: the store applies ``rules.replace_mentor`` itself (the differential property test
    holds it to the rule)."""

    def reassign_mentor(self, from_id: str, to_id: str, statuses: frozenset[int], stamp: AuditStamp | None) -> int:
        """On every batch with one of ``statuses`` that ``from_id`` mentors: ``from_id`` -> ``to_id`` in the mentor
        list (``rules.replace_mentor``: duplicates dropped, the first kept) and in the mentor index, and
        ``createdby`` too where it is ``from_id``; audited as ``rules.transfer_batch`` audits it when ``stamp`` is
        given. Returns how many batches were written."""
        ...

    def reassign_batch_creator(
        self, from_id: str, to_id: str, statuses: frozenset[int], stamp: AuditStamp | None
    ) -> int:
        """``createdby`` from -> to on every batch with one of ``statuses``; audited when ``stamp`` is given.
        Returns how many batches were written."""
        ...

    def asset_profiles(self, owner: str, object_types: Sequence[str]) -> Sequence[tuple[str, str | None]]:
        """The distinct (objectType, schemaVersion) of ``owner``'s assets of these types."""
        ...

    def set_asset_values(
        self, owner: str, object_type: str, schema_version: str | None, values: Mapping[str, Any],
        stamp: AuditStamp | None,
    ) -> int | None:
        """Write ``values`` on every asset of ``owner`` with this type and version; audited when ``stamp`` is
        given. Returns how many assets were written, or None (nothing written) when these values cannot be
        written set-based by this store."""
        ...


class RecordCounts(Protocol):
    """An optional capability of a unit of work that writes nothing (the SQL store's previews and read-only units;
    never one that writes, since the engine counts instead of writing where it is there): how many records a
    whole-user transfer would change, counted by the store. A preview walks the first page record by record (the
    records it shows) and counts the rest instead of walking it."""

    def batches_of_user(self, user_id: str, statuses: frozenset[int]) -> int:
        """How many batches with one of ``statuses`` ``user_id`` created or mentors, each once (the batches
        ``BatchRepository.pages_of_user`` yields)."""
        ...

    def asset_profile_counts(self, owner: str, object_types: Sequence[str]) -> Sequence[tuple[str, str | None, int]]:
        """(objectType, schemaVersion, how many) of ``owner``'s assets of these types, per distinct pair."""
        ...

    def asset_types(self, owner: str) -> Mapping[str, int]:
        """How many assets ``owner`` created, by objectType (every type; a preview's "stays with the old owner")."""
        ...


class ColumnReverts(Protocol):
    """An optional capability of a store that can undo set-based (the SQL store, as ``BulkWrites``): the undo of
    one event's changes to plain columns in one statement per field, and the rest of its audit read without them."""

    def revert_columns(self, mid: str, stamp: AuditStamp) -> Sequence[tuple[str, str, int]]:
        """Undo event ``mid``'s audited changes of each plain-column field (a text column the event changed at most
        once per record, from and to a string or null; a batch's creator from a string) for which every record
        still holds the change's ``after``: its ``before`` written back, and an audit row under ``stamp`` with
        ``before`` and ``after`` swapped. (store, field, how many changes reverted) for each field done; the others
        are left as they are, for the record-by-record undo."""
        ...

    def audit_page_except(
        self, mid: str, skip: Sequence[tuple[str, str]], *, cursor: str | None, limit: int
    ) -> AuditPage:
        """A page of event ``mid``'s audit rows, newest first, without those of the (store, field) pairs ``skip``;
        as ``AuditLog.page``."""
        ...

    def audited_records(self, mid: str) -> Mapping[str, int]:
        """How many distinct records of each store (``STORE_COURSE_BATCH``, ``STORE_ASSET``) the audit rows of
        event ``mid`` name."""
        ...


class ReadAhead(Protocol):
    """What ``UnitOfWork.read_ahead`` returns on a store that leaves the caching to the engine (the SQL store on
    SQLite): a micro-batch's reads of several events in one query per kind (``service.batch_reads``, which keeps
    what they return equal to the store with the engine's writes)."""

    def assets_by_id(self, identifiers: Sequence[str]) -> Mapping[str, Asset]:
        """The assets with these identifiers that exist."""
        ...

    def assets_of_users(
        self, user_ids: Sequence[str], object_types: Sequence[str], limit: int
    ) -> Mapping[str, Sequence[Asset]]:
        """For each user, the first ``limit`` assets with one of ``object_types`` that the user created, by
        identifier (the first page ``AssetRepository.pages_created_by`` gives)."""
        ...

    def batches_of_users(
        self, user_ids: Sequence[str], statuses: frozenset[int], limit: int
    ) -> Mapping[str, tuple[Sequence[CourseBatch], Sequence[CourseBatch]]]:
        """For each user, the first ``limit`` batches with one of ``statuses`` that the user created, and the first
        ``limit`` that the user mentors and did not create, each by (courseid, batchid) (the first pages of the two
        parts of ``BatchRepository.pages_of_user``)."""
        ...

    def audited_assets(self, mids: Sequence[str]) -> Mapping[str, Sequence[str]]:
        """For each of ``mids`` that has audit rows of assets, the identifiers they name."""
        ...

    def hold_deletions(self, user_ids: Sequence[str], mids: Sequence[str]) -> None:
        """The clean-ups of ``user_ids`` by events among ``mids`` (those that will write): until the audit is next
        read by page, written set-based or committed, ``AuditLog.recorded_names`` of ``user_ids`` and
        ``AuditLog.redact`` need no statement each (the audit rows they can read are read now), nor ``Outbox.record``
        of one of ``mids``; with the same results."""
        ...


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What the events of a micro-batch will read, known before the first of them is processed: the single
    assets (``AssetRepository.get``; their Image nodes too), the users whose assets of ``object_types`` are
    paged (``AssetRepository.pages_created_by``), the users whose course batches with one of ``batch_statuses``
    are paged (``BatchRepository.pages_of_user``), the events whose audit rows are read (``AuditLog.page`` by
    ``mid``, pages of ``audit_page_size``) and the users whose audited names are read (``AuditLog.recorded_names``
    and ``redact``). Batch pages have ``page_size`` rows."""

    asset_ids: Sequence[str] = ()
    asset_owners: Sequence[str] = ()
    object_types: Sequence[str] = ()
    audit_mids: Sequence[str] = ()
    audit_users: Sequence[str] = ()
    audit_page_size: int = 1000
    page_size: int = 1000
    batch_users: Sequence[str] = ()
    batch_statuses: frozenset[int] = frozenset()


class UnitOfWork(Protocol):
    users: UserDirectory
    batches: BatchRepository
    assets: AssetRepository
    ledger: Ledger
    outbox: Outbox
    audit: AuditLog
    bulk: BulkWrites | None  # None: the store writes record by record only
    reverts: ColumnReverts | None  # None: an undo reverts record by record only
    counts: RecordCounts | None  # None: a preview walks every record (and always in a unit of work that writes)

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None: ...

    def lock_users(self, user_ids: Iterable[str]) -> None:
        """Serialise the units of work about the same users: each lock is held until this unit ends. Taken before
        any record is read for writing, all at once (sorted), so that an undo and a transfer of the same user, or
        two undos, wait for each other instead of locking records in opposite orders (PostgreSQL: transaction
        advisory locks; SQLite: nothing, ``BEGIN IMMEDIATE`` already serialises writers; Sunbird: nothing)."""
        ...

    def read_ahead(self, plan: ReadPlan) -> ReadAhead | None:
        """After ``lock_users``: the reads ``plan`` names will follow. A store whose reads are round trips may
        make them now, a few requests for the micro-batch, and answer the later reads from them as long as no
        write of this unit of work could have changed the answer (Sunbird: the graph's nodes, the audit rows, the
        course batches; it returns None). The SQL store reads nothing here; on SQLite it returns its
        ``ReadAhead``, with which the engine reads the records of the events that are not duplicates and keeps
        them itself (``service.batch_reads``); elsewhere None."""
        ...


class StoreContention(Exception):
    """The store gave up a unit of work because of a concurrent one (a deadlock, a serialization failure, a unique
    key another unit took first): nothing was committed and the same work may simply run again (the engine and
    the undo do, a few times, before they let it through)."""


CONTENTION_ATTEMPTS = 5


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


@dataclass(slots=True)
class Outcome:
    """What processing one event did: the replay report line of SPEC 4, plus a few records for previews."""

    mid: str | None
    outcome: OutcomeKind
    reason: str | None = None
    detail: str = ""
    skipped: list[str] = field(default_factory=list)
    changed_batches: int = 0
    changed_assets: int = 0
    action: str | None = None
    request_id: str | None = None
    samples: list[dict[str, object]] = field(default_factory=list)

    def report(self, line: int | None = None, *, with_mid: bool = True) -> dict[str, object]:
        out: dict[str, object] = {}
        if line is not None:
            out["line"] = line
        if with_mid:
            out["mid"] = self.mid
        out.update(
            outcome=self.outcome,
            reason=self.reason,
            skipped=sorted(self.skipped),
            changed={"course_batches": self.changed_batches, "assets": self.changed_assets},
        )
        return out


class DuplicateRequest(Exception):
    """A request id (``X-Request-ID``) that an earlier request already used: nothing was recorded or published."""


class PublishError(RuntimeError):
    """Events could not be handed to the event sink (the caller must report failure, never success)."""


class EventSink(Protocol):
    """Where produced events go: Kafka topics, or the embedded store's queue."""

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Publish all events durably (topic by ``edata.action``, key = the user the event is about) or raise
        ``PublishError``."""
        ...


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """What became of the events of one API request: ``events`` holds, per event in the order produced,
    ``mid``, ``assetInformation``, ``outcome`` (``pending`` until processed; ``failed`` when processing gave
    up), ``reason``, ``skipped`` and ``changed`` (as in the replay report)."""

    request_id: str
    action_by: str | None
    events: list[dict[str, Any]]


class RequestLog(Protocol):
    """The events each API request produced, so that its status can be shown before they are processed."""

    def record(self, request_id: str, action_by: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Keep the request's events; ``DuplicateRequest`` when ``request_id`` is taken (where the store can tell
        at once)."""
        ...

    def forget(self, request_id: str, mids: Sequence[str]) -> None:
        """Drop what ``record`` kept for events that could not be published."""
        ...

    def status(self, request_id: str) -> RequestStatus | None:
        """None when no request has this id."""
        ...


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """A queued event that processing gave up on after ``max_attempts`` (reason ``PROCESSING_FAILED``)."""

    mid: str
    request_id: str | None
    action: str | None
    organisation_id: str | None
    from_user: str | None
    to_user: str | None
    attempts: int
    error: str
    failed_at: datetime


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """One API request in the history: who, when, and how many of its events ended how (``outcomes``:
    applied / undone / rejected / duplicate / failed / pending counts, an undone event counted as ``undone`` only;
    ``reasons``: the rejection and failure reasons; ``assets``: how many events name an asset, 0 when the request
    was about everything of the from-user)."""

    request_id: str
    created_at: datetime
    action_by: str | None
    organisation_id: str | None
    from_user: str | None
    to_user: str | None
    outcomes: dict[str, int]
    reasons: list[str]
    assets: int = 0

    @property
    def events(self) -> int:
        return sum(self.outcomes.values())

    @property
    def title(self) -> str:
        """``u-ann → u-ravi: everything`` (or ``: 2 assets``), for lists and headings."""
        what = "everything" if not self.assets else f"{self.assets} asset{'' if self.assets == 1 else 's'}"
        return f"{self.from_user or '?'} → {self.to_user or '?'}: {what}"


class RequestHistory(Protocol):
    """The API requests of the past, newest first, for the console's history (SQL: ``request_log`` and
    ``request_summary``; Sunbird: handover's keyspace, ``request_by_day``)."""

    def history(
        self,
        *,
        user: str | None = None,
        outcome: str | None = None,
        action_by: str | None = None,
        limit: int = 25,
        offset: int = 0,
    ) -> list[RequestSummary]:
        """At most ``limit`` requests after the first ``offset`` that match, newest first. ``user``: the request's
        admin, from-user or to-user; ``outcome``: at least one event ended so (applied and not undone, undone,
        rejected, duplicate, failed, pending); ``action_by``: only that admin's."""
        ...

    def summary(self, request_id: str) -> RequestSummary | None:
        """None when no request has this id."""
        ...

    def processed_counts(self) -> list[tuple[str | None, str, str | None, int]]:
        """(action, outcome, reason, count) over every processed event, for the console's counters."""
        ...


class FailedEvents(Protocol):
    """Events processing gave up on, where the store keeps them (the embedded queue; with Kafka they are on the
    failed topic, read by ``handover redrive``)."""

    def failed(self, *, request_id: str | None = None, mid: str | None = None, limit: int = 100) -> list[FailedEvent]:
        """Of one request, or the one ``mid``; the most recent failure first."""
        ...

    def redrive(self, mid: str) -> bool:
        """Queue the failed event ``mid`` again; False when no failed event has this ``mid``."""
        ...


class Backlog(Protocol):
    """How many events wait in the embedded queue, for the console's counters."""

    def counts(self) -> dict[str, int]:
        """Events by queue status (pending, processing, done, failed)."""
        ...

    def oldest_pending_at(self) -> datetime | None:
        """When the oldest event still waiting was queued."""
        ...
