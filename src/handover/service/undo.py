"""Undo of ownership transfers (SPEC 10), over the ports only.

For each audited change of the events undone, newest first: a field that still holds the ``after`` value gets
its ``before`` value back; any other value is left alone and counted as a conflict. The undo of event ``M`` is
itself an event: ledger row ``undo:M`` (outcome applied, detail with ``reverted`` and ``conflicts``) and audit
rows under that mid, all in one unit of work, so undoing twice changes nothing. Delete-user events are refused:
the personal data they removed is gone by design. Audit rows are read a page at a time and each page is
written before the next is read, so memory does not grow with the size of the transfer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from handover.domain.events import DELETE_USER
from handover.domain.model import Asset, CourseBatch
from handover.domain.policy import DEFAULT_REPLACEMENT
from handover.domain.rules import CREATED_BY, AssetUpdate, BatchUpdate, FieldChange, get_path, has_path, set_path
from handover.service.audit_trail import UNDO_ACTION, PageReader, iter_pages, undo_mid
from handover.service.ports import (
    CONTENTION_ATTEMPTS,
    STORE_ASSET,
    STORE_COURSE_BATCH,
    AuditPage,
    AuditRecord,
    AuditStamp,
    LedgerEntry,
    RecordsWritten,
    StoreContention,
    UnitOfWork,
    UnitOfWorkFactory,
)

CONFLICT_SAMPLES = 20

Clock = Callable[[], datetime]


class UndoError(Exception):
    """An undo that cannot be done; the message says why. Nothing was changed."""


class UnknownEvent(UndoError):
    """No such event (mid) or request in the ledger."""


class NotUndoable(UndoError):
    """A delete-user event, an undo, or an event whose changes were not audited."""


@dataclass(slots=True)
class EventUndo:
    """What undoing one event did. An event undone before (``already_undone``) reverts nothing now: ``reverted``
    and ``conflicts`` are 0 and ``note`` says what the earlier undo did."""

    mid: str
    reverted: int = 0
    conflicts: int = 0
    already_undone: bool = False
    note: str = ""
    changed_batches: int = 0
    changed_assets: int = 0
    conflict_samples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "mid": self.mid,
            "undoMid": undo_mid(self.mid),
            "reverted": self.reverted,
            "conflicts": self.conflicts,
            "alreadyUndone": self.already_undone,
            "note": self.note,
            "conflictSamples": self.conflict_samples,
        }

    def message(self) -> str:
        """``already undone, 0 reverted`` or ``11 changes reverted, 0 conflicts``, for the CLI's line of this
        event."""
        return undo_message(self.already_undone, self.reverted, self.conflicts)


def undo_message(already_undone: bool, reverted: int, conflicts: int) -> str:
    """What an undo did in words, the same in the console, the CLI and the API."""
    if already_undone:
        return "already undone, 0 reverted"
    changes = f"{reverted} change{'' if reverted == 1 else 's'} reverted"
    return f"{changes}, {conflicts} conflict{'' if conflicts == 1 else 's'}"


@dataclass(slots=True)
class UndoResult:
    events: list[EventUndo]

    @property
    def already_undone(self) -> bool:
        """Every applied event of it was undone before: this undo changed nothing."""
        return any(e.already_undone for e in self.events) and not any(
            not e.already_undone and not e.note for e in self.events
        )

    def message(self) -> str:
        """What the undo did in words, as the console, the CLI and the API say it: ``already undone, 0 reverted``
        when there was nothing left to undo, else ``11 changes reverted, 0 conflicts``."""
        return undo_message(self.already_undone, self.reverted, self.conflicts)

    @property
    def reverted(self) -> int:
        return sum(e.reverted for e in self.events)

    @property
    def conflicts(self) -> int:
        return sum(e.conflicts for e in self.events)

    def to_json(self) -> dict[str, Any]:
        return {
            "reverted": self.reverted,
            "conflicts": self.conflicts,
            "alreadyUndone": self.already_undone,
            "message": self.message(),
            "events": [e.to_json() for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class UndoScope:
    """What an undo would revert at most: the events still to undo and the records they changed (the ledger's
    counts; fields are more: a course batch has up to two audited fields, an asset several)."""

    events: int
    course_batches: int
    assets: int

    @property
    def records(self) -> int:
        return self.course_batches + self.assets


def undo_scope(uow: UnitOfWork, *, mid: str | None = None, request_id: str | None = None) -> UndoScope:
    """The applied, not yet undone events of event ``mid`` or of request ``request_id`` and the records they
    changed, from the ledger (one read per event; nothing of the audit trail is read). Zeros when there are
    none."""
    if mid is not None:
        found = uow.ledger.get(mid)
        entries = [found] if found is not None else []
    else:
        entries = [e for e in uow.ledger.by_request(request_id or "") if e.action != UNDO_ACTION]
    todo = [e for e in entries if e.outcome == "applied" and e.action != DELETE_USER
            and uow.ledger.get(undo_mid(e.mid)) is None]
    return UndoScope(len(todo), sum(e.changed_batches for e in todo), sum(e.changed_assets for e in todo))


def undo_details(entry: LedgerEntry) -> tuple[int, int]:
    """(reverted, conflicts) of an undo ledger entry."""
    try:
        doc = json.loads(entry.detail)
        return int(doc.get("reverted", 0)), int(doc.get("conflicts", 0))
    except (ValueError, TypeError, AttributeError):
        return 0, 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Undoer:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, *, page_size: int = 1000, audit: bool = True, clock: Clock = _utcnow,
        replacement: str = DEFAULT_REPLACEMENT, on_written: RecordsWritten | None = None,
    ) -> None:
        """``replacement``: what an undo writes instead of a deleted user's personal data (``user_pii_replacement
        _value``, SPEC 10). ``on_written(course_batch_fields, asset_fields)`` after each page: the fields it
        reverted (fields, not records: the audit rows of one record can lie on several pages)."""
        self._on_written = on_written
        self._uow_factory = uow_factory
        self._page_size = page_size
        self._audit = audit
        self._clock = clock
        self._replacement = replacement

    def undo_event(self, mid: str) -> UndoResult:
        """Undo one event. ``UnknownEvent`` / ``NotUndoable`` when it cannot be undone."""

        def run(uow: UnitOfWork) -> UndoResult:
            entry = uow.ledger.get(mid)
            if entry is None:
                raise UnknownEvent(f"no event with mid {mid!r} was processed")
            _check_undoable(entry)

            def read(cursor: str | None) -> AuditPage:
                return uow.audit.page(mid=mid, newest_first=True, cursor=cursor, limit=self._page_size)

            return self._undo(uow, [entry], read)

        return self._retrying(run)

    def undo_request(self, request_id: str) -> UndoResult:
        """Undo every event of an API request, newest change first, in one unit of work."""

        def run(uow: UnitOfWork) -> UndoResult:
            entries = [e for e in uow.ledger.by_request(request_id) if e.action != UNDO_ACTION]
            if not entries:
                raise UnknownEvent(f"no event of request {request_id!r} was processed")
            for entry in entries:
                _check_undoable(entry)

            def read(cursor: str | None) -> AuditPage:
                return uow.audit.page(request_id=request_id, newest_first=True, cursor=cursor, limit=self._page_size)

            return self._undo(uow, entries, read)

        return self._retrying(run)

    def _retrying(self, run: Callable[[UnitOfWork], UndoResult]) -> UndoResult:
        """``run`` in a unit of work, committed; again (a few times) when a concurrent unit of work won."""
        for attempt in range(1, CONTENTION_ATTEMPTS + 1):
            try:
                with self._uow_factory() as uow:
                    result = run(uow)
                    uow.commit()
                return result
            except StoreContention:
                if attempt == CONTENTION_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    # --- one unit of work --------------------------------------------------------------------------

    def _undo(
        self, uow: UnitOfWork, entries: Sequence[LedgerEntry], read: PageReader
    ) -> UndoResult:
        # the users whose records the undo writes, locked before any is read (see UnitOfWork.lock_users): the
        # from-users, and the to-users the newest audit rows name as createdBy's new value
        first = read(None).records
        users = {e.subject_user_id for e in entries if e.subject_user_id}
        users |= {r.change.after for r in first
                  if r.change.field.lower() == "createdby" and isinstance(r.change.after, str)}
        uow.lock_users(users)
        results: dict[str, EventUndo] = {}
        targets: dict[str, LedgerEntry] = {}
        for entry in entries:
            done = uow.ledger.get(undo_mid(entry.mid))
            if done is not None:
                reverted, conflicts = undo_details(done)
                results[entry.mid] = EventUndo(
                    entry.mid, already_undone=True,
                    note=f"already undone at {done.processed_at.isoformat()} (that undo reverted {reverted}, "
                         f"{conflicts} conflicts): nothing changed")
            elif entry.outcome != "applied":
                results[entry.mid] = EventUndo(entry.mid, note=f"{entry.outcome}: it changed nothing")
            else:
                results[entry.mid] = EventUndo(entry.mid)
                targets[entry.mid] = entry
        if targets:
            # the events whose from-user is deleted now: the values before them were that user's (SPEC 10)
            deleted = {mid for mid, entry in targets.items() if _is_deleted(uow, entry.subject_user_id)}
            rest = self._revert_columns(uow, targets, results, deleted)
            seen = self._revert_pages(uow, targets, results, rest or read, deleted)
            if rest is not None and uow.reverts is not None:  # some fields set-based: the records the undo audited
                (mid,) = targets
                seen.add(mid)
                records = uow.reverts.audited_records(undo_mid(mid))
                results[mid].changed_batches = records.get(STORE_COURSE_BATCH, 0)
                results[mid].changed_assets = records.get(STORE_ASSET, 0)
            now = self._clock()
            for mid, entry in targets.items():
                if mid not in seen and entry.changed_batches + entry.changed_assets > 0:
                    raise NotUndoable(f"event {mid} changed records but has no audit trail (audit was off)")
                uow.ledger.record(_undo_entry(entry, results[mid], now))
        return UndoResult([results[e.mid] for e in entries])

    def _revert_columns(
        self, uow: UnitOfWork, targets: dict[str, LedgerEntry], results: dict[str, EventUndo], deleted: set[str]
    ) -> PageReader | None:
        """Where the store can (``UnitOfWork.reverts``), for one event with the audit on whose from-user is not
        deleted: the plain-column fields reverted set-based, and a reader of the event's other audit rows (None:
        nothing was done so, read every row)."""
        reverts = uow.reverts
        if reverts is None or not self._audit or len(targets) != 1 or targets.keys() & deleted:
            return None
        (mid,) = targets
        done = reverts.revert_columns(mid, AuditStamp(undo_mid(mid), targets[mid].request_id, self._clock()))
        if not done:
            return None
        results[mid].reverted += sum(n for _, _, n in done)
        if self._on_written is not None:  # progress: each field done set-based
            for store, _, n in done:
                self._on_written(n if store == STORE_COURSE_BATCH else 0, n if store == STORE_ASSET else 0)
        skip = [(store, field) for store, field, _ in done]
        return lambda cursor: reverts.audit_page_except(mid, skip, cursor=cursor, limit=self._page_size)

    def _revert_pages(
        self,
        uow: UnitOfWork,
        targets: dict[str, LedgerEntry],
        results: dict[str, EventUndo],
        read: PageReader,
        deleted: set[str],
    ) -> set[str]:
        """Revert page after page (each page written before the next is read); the events seen."""
        seen: set[str] = set()
        last_record: dict[str, tuple[str, str]] = {}  # per event: the record last counted as changed
        for page in iter_pages(read):
            rows = [r for r in page if r.mid in targets]
            seen.update(r.mid for r in rows)
            if rows:
                self._revert_page(uow, [self._private(r, deleted) for r in rows], results, last_record)
        return seen

    def _revert_page(
        self,
        uow: UnitOfWork,
        rows: Sequence[AuditRecord],
        results: dict[str, EventUndo],
        last_record: dict[str, tuple[str, str]],
    ) -> None:
        batch_keys = [_batch_key(r.record_key) for r in rows if r.store == STORE_COURSE_BATCH]
        asset_ids = [r.record_key for r in rows if r.store == STORE_ASSET]
        batches = BatchRevert(uow.batches.get_many(batch_keys) if batch_keys else {})
        assets = AssetRevert(uow.assets.get_many(asset_ids) if asset_ids else {})
        reverted: list[AuditRecord] = []
        fields = [0, 0]  # course batch fields, asset fields reverted on this page (progress)
        for row in rows:  # newest first
            result = results[row.mid]
            target = batches if row.store == STORE_COURSE_BATCH else assets
            if target.revert(row.record_key, row.change):
                result.reverted += 1
                fields[row.store != STORE_COURSE_BATCH] += 1
                reverted.append(row)
                if last_record.get(row.mid) != (row.store, row.record_key):
                    last_record[row.mid] = (row.store, row.record_key)
                    if row.store == STORE_COURSE_BATCH:
                        result.changed_batches += 1
                    else:
                        result.changed_assets += 1
            else:
                result.conflicts += 1
                if len(result.conflict_samples) < CONFLICT_SAMPLES:
                    result.conflict_samples.append(
                        {"store": row.store, "key": row.record_key, "field": row.change.field}
                    )
        batch_updates, asset_updates = batches.updates(), assets.updates()
        if batch_updates:
            uow.batches.write(batch_updates)  # the store's one write path: keeps the mentor index in sync
        if asset_updates:
            uow.assets.write(asset_updates)
        if self._on_written is not None and any(fields):
            self._on_written(fields[0], fields[1])
        if self._audit and reverted:
            now = self._clock()
            uow.audit.record([
                AuditRecord(
                    undo_mid(r.mid), r.request_id, r.store, r.record_key,
                    FieldChange(r.change.field, r.change.after, r.change.before), now,
                )
                for r in reverted
            ])


    def _private(self, row: AuditRecord, deleted: set[str]) -> AuditRecord:
        """The row with the replacement value in its ``before`` where that is a deleted user's personal data: in an
        event whose from-user is deleted, the text the transfer replaced in an asset field other than ``createdBy``
        (in a whole object put back because the PII path did not exist, the texts on the way to that path)."""
        change = row.change
        if row.mid not in deleted or row.store != STORE_ASSET or change.field == CREATED_BY:
            return row
        before = _scrub(change.before, change.after, self._replacement)
        if before == change.before:
            return row
        return AuditRecord(row.mid, row.request_id, row.store, row.record_key,
                           FieldChange(change.field, before, change.after), row.at)


def _scrub(before: Any, after: Any, replacement: str) -> Any:
    """``before`` with each text that ``after`` replaced (following the keys where the two objects differ) set to
    ``replacement``; other values kept, and so is a blank text (it holds no one's name)."""
    if isinstance(before, str):
        return replacement if before.strip() and before != after else before
    if isinstance(before, dict) and isinstance(after, dict):
        return {k: _scrub(v, after[k], replacement) if k in after and after[k] != v else v
                for k, v in before.items()}
    return before


def _is_deleted(uow: UnitOfWork, user_id: str | None) -> bool:
    user = uow.users.get(user_id) if user_id else None
    return user is not None and user.isDeleted


def _check_undoable(entry: LedgerEntry) -> None:
    if entry.action == DELETE_USER:
        raise NotUndoable(
            f"event {entry.mid} is a delete-user event: it cannot be undone (the personal data it removed "
            "is gone by design)"
        )
    if entry.action == UNDO_ACTION:
        raise NotUndoable(f"event {entry.mid} is an undo: an undo cannot be undone")


def _undo_entry(entry: LedgerEntry, result: EventUndo, now: datetime) -> LedgerEntry:
    return LedgerEntry(
        mid=undo_mid(entry.mid),
        action=UNDO_ACTION,
        outcome="applied",
        reason=None,
        skipped=(),
        changed_batches=result.changed_batches,
        changed_assets=result.changed_assets,
        request_id=entry.request_id,
        subject_user_id=entry.subject_user_id,
        processed_at=now,
        detail=json.dumps({"undo_of": entry.mid, "reverted": result.reverted, "conflicts": result.conflicts}),
    )


def _batch_key(record_key: str) -> tuple[str, str]:
    courseid, _, batchid = record_key.partition("/")
    return courseid, batchid


class BatchRevert:
    """The batches of one page as they become while changes are reverted, and the writes that follow."""

    FIELDS = ("createdby", "mentors")

    def __init__(self, current: dict[tuple[str, str], CourseBatch]) -> None:
        self._current = current
        self._state: dict[tuple[str, str], dict[str, Any]] = {}
        self._changes: dict[tuple[str, str], list[FieldChange]] = {}

    def revert(self, record_key: str, change: FieldChange) -> bool:
        key = _batch_key(record_key)
        batch = self._current.get(key)
        if batch is None or change.field not in self.FIELDS:
            return False
        state = self._state.setdefault(key, {"createdby": batch.createdby, "mentors": list(batch.mentors)})
        if state[change.field] != change.after:
            return False
        if change.field == "createdby" and not isinstance(change.before, str):
            return False  # a batch's creator is never cleared (the engine never records that)
        if change.field == "mentors" and not _is_str_list(change.before):
            return False
        state[change.field] = change.before
        self._changes.setdefault(key, []).append(FieldChange(change.field, change.after, change.before))
        return True

    def updates(self) -> list[BatchUpdate]:
        out = []
        for key, changes in self._changes.items():
            fields = {c.field for c in changes}
            state = self._state[key]
            out.append(
                BatchUpdate(
                    key[0],
                    key[1],
                    state["createdby"] if "createdby" in fields else None,
                    tuple(state["mentors"]) if "mentors" in fields else None,
                    tuple(changes),
                )
            )
        return out


class AssetRevert:
    """The assets of one page as they become while changes are reverted. A field is a node property, or a
    dotted path into the JSON object held by the first segment's property."""

    def __init__(self, current: dict[str, Asset]) -> None:
        self._current = current
        self._values: dict[str, dict[str, Any]] = {}
        self._changes: dict[str, list[FieldChange]] = {}

    def revert(self, identifier: str, change: FieldChange) -> bool:
        asset = self._current.get(identifier)
        if asset is None or change.field in ("identifier", "objectType"):
            return False
        head, _, rest = change.field.partition(".")
        values = self._values.setdefault(identifier, {})
        top = values[head] if head in values else asset.get(head)
        if rest:
            keys = rest.split(".")
            if not has_path(top, keys) or get_path(top, keys) != change.after:
                return False
            new_top: Any = set_path(top, keys, change.before)
        else:
            if top != change.after:
                return False
            new_top = change.before
        values[head] = new_top
        self._changes.setdefault(identifier, []).append(FieldChange(change.field, change.after, change.before))
        return True

    def updates(self) -> list[AssetUpdate]:
        return [
            AssetUpdate(ident, self._current[ident].objectType, dict(self._values[ident]), tuple(changes))
            for ident, changes in self._changes.items()
        ]


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)

