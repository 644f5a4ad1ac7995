"""The engine: parse, check the ledger, validate against the directory, plan with the pure rules and
write, all in one unit of work. ``replay``, the worker and the API's in-process worker all call this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from handover.domain import rules
from handover.domain.events import DeleteUser, OwnershipTransfer, Reason, Rejection, parse_event, safe_ids
from handover.domain.model import Asset, CourseBatch, User
from handover.domain.notification import AffectedAssets, build_notification
from handover.domain.policy import Policy
from handover.domain.rules import AssetUpdate, BatchUpdate, FieldChange
from handover.service.audit_trail import iter_pages
from handover.service.batch_reads import BatchReads
from handover.service.ports import (
    CONTENTION_ATTEMPTS,
    STORE_ASSET,
    STORE_COURSE_BATCH,
    AuditRecord,
    AuditStamp,
    BulkWrites,
    LedgerEntry,
    Outcome,
    ReadAhead,
    ReadPlan,
    RecordCounts,
    RecordsWritten,
    StoreContention,
    UnitOfWork,
    UnitOfWorkFactory,
)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    page_size: int = 1000
    audit: bool = True
    sample_limit: int = 0  # how many changed records an Outcome carries (previews)
    bulk: bool = True  # use the store's set-based writes where it has them (see ports.BulkWrites)


@dataclass(slots=True)
class _Known:
    """What a micro-batch read ahead: the ledger entries of its mids (and of the events it processed so far), the
    users it names (None: not in the directory; the directory does not change in a unit of work), and where the unit
    of work can read ahead (``ports.ReadAhead``), the records its events walk (``batch_reads``)."""

    ledger: dict[str, LedgerEntry]
    users: dict[str, User | None]
    reads: BatchReads | None = None

    def user(self, uow: UnitOfWork, user_id: str) -> User | None:
        if user_id not in self.users:
            self.users[user_id] = uow.users.get(user_id)
        return self.users[user_id]

    def asset(self, uow: UnitOfWork, identifier: str) -> Asset | None:
        return self.reads.asset(uow, identifier) if self.reads is not None else uow.assets.get(identifier)

    def asset_pages(
        self, uow: UnitOfWork, user_id: str, types: Sequence[str], page_size: int
    ) -> Iterable[Sequence[Asset]]:
        if self.reads is not None:
            return self.reads.asset_pages(uow, user_id, types)
        return uow.assets.pages_created_by(user_id, types, page_size)

    def batch_pages(
        self, uow: UnitOfWork, user_id: str, statuses: frozenset[int], page_size: int
    ) -> Iterable[Sequence[CourseBatch]]:
        if self.reads is not None:
            return self.reads.batch_pages(uow, user_id, statuses)
        return uow.batches.pages_of_user(user_id, statuses, page_size)


class Engine:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        policy: Policy,
        settings: EngineSettings | None = None,
        clock: Clock = utcnow,
        on_written: RecordsWritten | None = None,
    ) -> None:
        """``on_written(course_batches, assets)`` after each write of records (progress of a long event)."""
        self._uow_factory = uow_factory
        self.policy = policy
        self.settings = settings or EngineSettings()
        self._clock = clock
        self._on_written = on_written

    def process(self, data: bytes | str | Any) -> Outcome:
        """Process one event in its own unit of work. Store errors propagate (nothing is committed)."""
        return self.process_batch([data])[0]

    def process_batch(
        self, items: Sequence[bytes | str | Any], should_stop: Callable[[], bool] | None = None
    ) -> list[Outcome]:
        """Process several events in order in one unit of work (one commit). Store errors propagate and
        nothing of the batch is committed; the caller may then retry the events one at a time. When
        ``should_stop()`` is true before an event (it is not asked before the first), the batch ends there:
        the outcomes of the events before it (a prefix of ``items``), committed."""
        parsed = [parse_event(item) for item in items]
        if all(isinstance(p, Rejection) and p.mid is None for p in parsed):
            return [_rejected(p) for p in parsed if isinstance(p, Rejection)]
        for attempt in range(1, CONTENTION_ATTEMPTS + 1):
            outcomes: list[Outcome] = []
            try:
                with self._uow_factory() as uow:
                    known = self._read_ahead(uow, parsed)
                    for event in parsed:
                        if outcomes and should_stop is not None and should_stop():
                            break
                        outcomes.append(self._handle(uow, event, known))
                    if known.reads is not None:
                        known.reads.write_out(uow)
                    uow.commit()
                return outcomes
            except StoreContention:  # a concurrent unit of work won (a deadlock, ...): nothing committed, again
                if attempt == CONTENTION_ATTEMPTS:
                    raise
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _read_ahead(self, uow: UnitOfWork, parsed: Sequence[OwnershipTransfer | DeleteUser | Rejection]) -> _Known:
        """Lock the users of every event (before anything is read: see ``UnitOfWork.lock_users``), then read their
        ledger entries and their users at once: one query each per micro-batch, not per event."""
        user_ids: dict[str, None] = {}
        for event in parsed:
            if isinstance(event, OwnershipTransfer):
                user_ids.update(dict.fromkeys((event.from_user_id, event.to_user_id)))
            elif isinstance(event, DeleteUser):
                user_ids[event.user_id] = None
        if user_ids:
            uow.lock_users(user_ids)
        plan = self._read_plan(parsed)
        reads = uow.read_ahead(plan)  # first: a store may read it meanwhile
        mids = [event.mid for event in parsed if event.mid is not None]
        ledger = dict(uow.ledger.get_many(mids)) if mids else {}
        found = uow.users.get_many(list(user_ids)) if user_ids else {}
        known = _Known(ledger, {u: found.get(u) for u in user_ids})
        if reads is not None:  # the store leaves it to the engine: the records of the events that are not duplicates
            fresh = [e for e in parsed if e.mid is not None and e.mid not in ledger]
            known.reads = self._read_records(reads, fresh, plan if len(fresh) == len(mids) else None)
        return known

    def _read_records(
        self, reads: ReadAhead, parsed: Sequence[OwnershipTransfer | DeleteUser | Rejection], plan: ReadPlan | None
    ) -> BatchReads:
        """The records the events will walk, read at once (``_read_plan``; ``plan``: theirs when already built):
        the named assets and their images, the batches and assets of each from-user of a whole transfer and the
        assets of each deleted user, the assets the audit rows of each clean-up name."""
        if plan is None:
            plan = self._read_plan(parsed)
        assets = dict.fromkeys(i for a in plan.asset_ids for i in (a, rules.image_id(a)))
        batch = BatchReads.read(
            reads, plan.page_size, plan.object_types, plan.batch_statuses, assets=list(assets),
            asset_owners=list(plan.asset_owners), batch_users=list(plan.batch_users),
            audited_mids=list(plan.audit_mids),
        )
        if plan.audit_users:  # the clean-ups' recorded_names, redact and email, without a statement each
            reads.hold_deletions(plan.audit_users, [e.mid for e in parsed if e.mid is not None])
        return batch

    def _read_plan(self, events: Sequence[OwnershipTransfer | DeleteUser | Rejection]) -> ReadPlan:
        """The assets, the users' asset and batch pages and the audit rows the events will read (those of events
        that turn out to be duplicates too: the ledger is read after the plan is handed over)."""
        asset_ids: dict[str, None] = {}
        owners: dict[str, None] = {}
        batch_users: dict[str, None] = {}
        deletions: dict[str, str] = {}  # mid -> user of a clean-up
        for event in events:
            if isinstance(event, OwnershipTransfer):
                if event.asset is not None:
                    asset_ids[event.asset.identifier] = None
                else:
                    owners[event.from_user_id] = None
                    batch_users[event.from_user_id] = None
            elif isinstance(event, DeleteUser):
                owners[event.user_id] = None
                deletions[event.mid] = event.user_id
        return ReadPlan(
            list(asset_ids),
            list(owners),
            self.policy.object_type_names(),
            audit_mids=list(deletions) if self.settings.audit else [],
            audit_users=list(dict.fromkeys(deletions.values())),
            audit_page_size=self.settings.page_size,
            page_size=self.settings.page_size,
            batch_users=list(batch_users),
            batch_statuses=self.policy.course_batch_statuses,
        )

    # --- one event ---------------------------------------------------------------------------------

    def _handle(self, uow: UnitOfWork, event: OwnershipTransfer | DeleteUser | Rejection, known: _Known) -> Outcome:
        if event.mid is None:
            assert isinstance(event, Rejection)
            return _rejected(event)
        if event.mid in known.ledger:
            return Outcome(event.mid, "duplicate", detail="mid already processed", **_ids(event))
        if isinstance(event, Rejection):
            outcome = _rejected(event)
        elif isinstance(event, OwnershipTransfer):
            outcome = self._transfer(uow, event, known)
        else:
            outcome = self._delete_user(uow, event, known)
        entry = self._ledger_entry(event, outcome)
        uow.ledger.record(entry)
        known.ledger[event.mid] = entry
        return outcome

    def _transfer(self, uow: UnitOfWork, event: OwnershipTransfer, known: _Known) -> Outcome:
        from_user = known.user(uow, event.from_user_id)
        to_user = known.user(uow, event.to_user_id)
        reason = rules.check_transfer_users(event, from_user, to_user)
        if reason is not None:
            return Outcome(event.mid, "rejected", reason.value, _user_detail(reason), **_ids(event))
        assert to_user is not None
        outcome = Outcome(event.mid, "applied", **_ids(event))
        if event.asset is None:
            self._transfer_batches(uow, event, outcome, known)
        if not rules.may_receive_assets(to_user, self.policy):
            outcome.skipped.append(Reason.ROLE_NOT_ALLOWED.value)
        elif event.asset is not None:
            self._transfer_one_asset(uow, event, to_user, outcome, known)
        else:
            self._transfer_all_assets(uow, event, to_user, outcome, known)
        return outcome

    def _transfer_batches(self, uow: UnitOfWork, event: OwnershipTransfer, outcome: Outcome, known: _Known) -> None:
        """Record by record through the rules. Once a page comes back full (a large transfer) and the store
        writes set-based: the rest of the batches the user mentors in a few statements (their mentor lists as
        ``rules.replace_mentor`` rewrites them), then every remaining batch the user created in one statement."""
        statuses = self.policy.course_batch_statuses
        bulk, counts = self._bulk(uow), self._counts(uow)
        walked_before = outcome.changed_batches
        for page in known.batch_pages(uow, event.from_user_id, statuses, self.settings.page_size):
            self._transfer_batch_page(uow, event, page, outcome, known)
            if (bulk or counts) is not None and self._past_first_page(page, outcome):
                break
        else:
            return
        if counts is not None:  # a preview: the store counts what the walk would have changed
            outcome.changed_batches = walked_before + counts.batches_of_user(event.from_user_id, statuses)
            return
        assert bulk is not None
        if known.reads is not None:
            known.reads.forget_batches(uow)
        written = bulk.reassign_mentor(event.from_user_id, event.to_user_id, statuses, self._stamp(event))
        written += bulk.reassign_batch_creator(event.from_user_id, event.to_user_id, statuses, self._stamp(event))
        outcome.changed_batches += written
        self._written(written, 0)

    def _transfer_batch_page(
        self, uow: UnitOfWork, event: OwnershipTransfer, page: Sequence[CourseBatch], outcome: Outcome, known: _Known
    ) -> None:
        updates = [
            u
            for b in page
            if (u := rules.transfer_batch(b, event.from_user_id, event.to_user_id, self.policy)) is not None
        ]
        if updates:
            if known.reads is not None:  # written with the micro-batch's others
                known.reads.write_batches({b.key: b for b in page}, updates)
            else:
                uow.batches.write(updates)
            self._audit_batches(uow, event, updates)
            self._sample(outcome, STORE_COURSE_BATCH, updates)
            outcome.changed_batches += len(updates)
            self._written(len(updates), 0)

    def _transfer_all_assets(
        self, uow: UnitOfWork, event: OwnershipTransfer, to_user: User, outcome: Outcome, known: _Known
    ) -> None:
        """Record by record through the rules. Once a page comes back full and the store writes set-based:
        each (type, version) whose new values are the same for every asset in one statement, with the values
        the rules give for a probe of that type and version; the others record by record."""
        name = rules.display_name(to_user)
        bulk, counts = self._bulk(uow), self._counts(uow)
        types = self.policy.object_type_names()
        def transfer(assets: Sequence[Asset]) -> None:
            updates = [rules.transfer_asset(a, to_user.id, name, self.policy) for a in assets]
            self._write_assets(uow, event, updates, outcome, known, assets)

        walked_before = outcome.changed_assets
        for page in known.asset_pages(uow, event.from_user_id, types, self.settings.page_size):
            transfer(self._matching(page, event.from_user_id))
            if (bulk or counts) is not None and self._past_first_page(page, outcome):
                break
        else:
            return
        if counts is not None:  # a preview: every configured asset of the user would get an update
            outcome.changed_assets = walked_before + sum(
                n for object_type, version, n in counts.asset_profile_counts(event.from_user_id, types)
                if rules.is_configured(Asset("", object_type, version, createdBy=event.from_user_id), self.policy)
            )
            return
        assert bulk is not None
        if known.reads is not None:
            known.reads.forget_assets(uow)
        per_record: set[tuple[str, str | None]] = set()
        for object_type, version in bulk.asset_profiles(event.from_user_id, types):
            probe = Asset("", object_type, version, createdBy=event.from_user_id)
            if not rules.is_configured(probe, self.policy):
                continue
            written = None
            if rules.transfer_values_are_uniform(probe, self.policy):
                values = rules.transfer_asset(probe, to_user.id, name, self.policy).values
                written = bulk.set_asset_values(event.from_user_id, object_type, version, values, self._stamp(event))
            if written is None:
                per_record.add((object_type, version))
            else:
                outcome.changed_assets += written
                self._written(0, written)
        if not per_record:
            return
        for page in uow.assets.pages_created_by(event.from_user_id, types, self.settings.page_size):
            mine = self._matching(page, event.from_user_id)
            transfer([a for a in mine if (a.objectType, a.schemaVersion) in per_record])
            if known.reads is not None:  # the next page is read after this one's writes, as without read-ahead
                known.reads.write_out(uow)

    def _transfer_one_asset(
        self, uow: UnitOfWork, event: OwnershipTransfer, to_user: User, outcome: Outcome, known: _Known
    ) -> None:
        assert event.asset is not None
        asset = known.asset(uow, event.asset.identifier)
        owner_in_org = True
        if asset is not None and asset.createdBy != event.from_user_id:
            owner = known.user(uow, asset.createdBy) if asset.createdBy else None
            owner_in_org = owner is not None and owner.rootOrgId == event.organisation_id
        skip = rules.single_asset_skip(asset, event.from_user_id, self.policy, owner_in_org=owner_in_org)
        if skip is not None:
            outcome.skipped.append(skip.value)
            return
        image = known.asset(uow, rules.image_id(event.asset.identifier))
        name = rules.display_name(to_user)
        targets = rules.owned_configured([asset, image], event.from_user_id, self.policy)
        updates = [rules.transfer_asset(a, to_user.id, name, self.policy) for a in targets]
        self._write_assets(uow, event, updates, outcome, known, targets)

    def _delete_user(self, uow: UnitOfWork, event: DeleteUser, known: _Known) -> Outcome:
        user = known.user(uow, event.user_id)
        reason = rules.check_deleted_user(event, user)
        if reason is not None:
            return Outcome(event.mid, "rejected", reason.value, "user is not marked deleted", **_ids(event))
        outcome = Outcome(event.mid, "applied", **_ids(event))
        affected = AffectedAssets()
        # the email lists only what this event cleaned (issue 13 item 11): what it changes now, and, on a store
        # without transactions, what an earlier attempt of this very event changed (its audit rows say which)
        earlier = self._changed_before(uow, event.mid, known)
        for page in self._asset_pages(uow, event.user_id, known):
            updates = [rules.clean_asset(a, self.policy) for a in page]
            self._write_assets(uow, event, updates, outcome, known, page)
            for asset, update in zip(page, updates, strict=True):
                if update.changes or asset.identifier in earlier:
                    affected.add(asset)
        event_name = _str_or_none(event.raw, "userName")
        user_name = (user.userName if user is not None else None) or event_name
        note = build_notification(event.mid, event.user_id, user_name, event.admin_ids, affected, self.policy)
        if note is not None:
            uow.outbox.record(note)
        # the names to redact: the directory's (it may have blanked them already), the event's userName and the
        # names the audit itself recorded for this user (issue 13 item 10)
        names = rules.personal_values(user, user_name, event_name, *uow.audit.recorded_names(event.user_id))
        uow.audit.redact(event.user_id, names, self.policy.replacement_value)
        return outcome

    # --- helpers -----------------------------------------------------------------------------------

    def _changed_before(self, uow: UnitOfWork, mid: str, known: _Known) -> set[str]:
        """The assets the audit says an earlier attempt of event ``mid`` changed (none on a transactional store,
        where a failed attempt left nothing; none without the audit)."""
        if not self.settings.audit:
            return set()
        read_ahead = known.reads.audited_assets(mid) if known.reads is not None else None
        if read_ahead is not None:  # only this event writes audit rows of its mid
            return read_ahead
        read = lambda cursor: uow.audit.page(mid=mid, cursor=cursor, limit=self.settings.page_size)  # noqa: E731
        return {r.record_key for page in iter_pages(read) for r in page if r.store == STORE_ASSET}

    def _bulk(self, uow: UnitOfWork) -> BulkWrites | None:
        """The store's set-based writes, unless they are switched off or the outcome must carry records."""
        if not self.settings.bulk or self.settings.sample_limit:
            return None
        return uow.bulk

    def _counts(self, uow: UnitOfWork) -> RecordCounts | None:
        """The store's counts in place of a walk, where the unit of work writes nothing (a preview) and set-based
        paths are on."""
        return uow.counts if self.settings.bulk else None

    def _past_first_page(self, page: Sequence[Any], outcome: Outcome) -> bool:
        """Whether a walk may stop record by record after ``page`` (the rest set-based or counted): the page came
        back full and the outcome holds every sample it will carry."""
        return len(page) >= self.settings.page_size and len(outcome.samples) >= self.settings.sample_limit

    def _stamp(self, event: OwnershipTransfer | DeleteUser) -> AuditStamp | None:
        return AuditStamp(event.mid, event.request_id, self._clock()) if self.settings.audit else None

    def _asset_pages(self, uow: UnitOfWork, user_id: str, known: _Known) -> Iterable[list[Asset]]:
        types = self.policy.object_type_names()
        for page in known.asset_pages(uow, user_id, types, self.settings.page_size):
            matching = self._matching(page, user_id)
            if matching:
                yield matching

    def _matching(self, page: Sequence[Asset], user_id: str) -> list[Asset]:
        """The assets of a page that ``user_id`` created and the configuration covers."""
        return [a for a in page if a.createdBy == user_id and rules.is_configured(a, self.policy)]

    def _write_assets(
        self,
        uow: UnitOfWork,
        event: OwnershipTransfer | DeleteUser,
        updates: list[AssetUpdate],
        outcome: Outcome,
        known: _Known,
        before: Sequence[Asset],
    ) -> None:
        """``updates`` of the assets ``before`` (as read)."""
        if not updates:
            return
        if known.reads is not None:  # written with the micro-batch's others
            known.reads.write_assets({a.identifier: a for a in before}, updates)
        else:
            uow.assets.write(updates)
        if self.settings.audit:
            now = self._clock()
            uow.audit.record(
                [
                    AuditRecord(event.mid, event.request_id, STORE_ASSET, u.identifier, c, now)
                    for u in updates
                    for c in u.changes
                ]
            )
        self._sample(outcome, STORE_ASSET, updates)
        outcome.changed_assets += len(updates)
        self._written(0, len(updates))

    def _written(self, batches: int, assets: int) -> None:
        if self._on_written is not None and (batches or assets):
            self._on_written(batches, assets)

    def _audit_batches(self, uow: UnitOfWork, event: OwnershipTransfer, updates: list[BatchUpdate]) -> None:
        if not self.settings.audit:
            return
        now = self._clock()
        uow.audit.record(
            [
                AuditRecord(event.mid, event.request_id, STORE_COURSE_BATCH, f"{u.courseid}/{u.batchid}", c, now)
                for u in updates
                for c in u.changes
            ]
        )

    def _sample(self, outcome: Outcome, store: str, updates: Sequence[BatchUpdate | AssetUpdate]) -> None:
        room = self.settings.sample_limit - len(outcome.samples)
        for u in updates[: max(room, 0)]:
            key = f"{u.courseid}/{u.batchid}" if isinstance(u, BatchUpdate) else u.identifier
            outcome.samples.append({"store": store, "key": key, "changes": [_change_json(c) for c in u.changes]})

    def _ledger_entry(self, event: OwnershipTransfer | DeleteUser | Rejection, outcome: Outcome) -> LedgerEntry:
        assert outcome.mid is not None
        return LedgerEntry(
            mid=outcome.mid,
            action=outcome.action,
            outcome=outcome.outcome,
            reason=outcome.reason,
            skipped=tuple(sorted(outcome.skipped)),
            changed_batches=outcome.changed_batches,
            changed_assets=outcome.changed_assets,
            request_id=outcome.request_id,
            subject_user_id=None if isinstance(event, Rejection) else event.subject_user_id,
            processed_at=self._clock(),
            detail=outcome.detail,
        )


def _rejected(rejection: Rejection) -> Outcome:
    action, request_id = _raw_ids(rejection.raw)
    return Outcome(
        rejection.mid, "rejected", rejection.reason.value, rejection.detail, action=action, request_id=request_id
    )


def _ids(event: OwnershipTransfer | DeleteUser | Rejection) -> dict[str, Any]:
    if isinstance(event, Rejection):
        action, request_id = _raw_ids(event.raw)
        return {"action": action, "request_id": request_id}
    return {"action": event.action, "request_id": event.request_id}


def _raw_ids(raw: Any) -> tuple[str | None, str | None]:
    """Best-effort action and request id of an event that failed validation: only values every store can keep
    (an unknown action or an overlong request id would make the rejection's ledger row fail)."""
    return safe_ids(raw)


def _str_or_none(raw: Any, key: str) -> str | None:
    edata = raw.get("edata") if isinstance(raw, dict) else None
    value = edata.get(key) if isinstance(edata, dict) else None
    return value if isinstance(value, str) else None


def _user_detail(reason: Reason) -> str:
    return {
        Reason.UNKNOWN_USER: "from-user or to-user not in the user directory",
        Reason.USER_DELETED: "to-user is deleted",
        Reason.ORG_MISMATCH: "a user's root organisation differs from edata.organisationId",
    }.get(reason, reason.value)


def _change_json(change: FieldChange) -> dict[str, Any]:
    return {"field": change.field, "before": change.before, "after": change.after}
