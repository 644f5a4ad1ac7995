"""The engine: parse, check the ledger, validate against the directory, plan with the pure rules and
write, all in one unit of work. ``replay``, the worker and the API's in-process worker all call this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from handover.domain import rules
from handover.domain.events import DeleteUser, OwnershipTransfer, Reason, Rejection, parse_event
from handover.domain.model import Asset, User
from handover.domain.notification import AffectedAssets, build_notification
from handover.domain.policy import Policy
from handover.domain.rules import AssetUpdate, BatchUpdate, FieldChange
from handover.service.ports import (
    STORE_ASSET,
    STORE_COURSE_BATCH,
    AuditRecord,
    LedgerEntry,
    Outcome,
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


class Engine:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        policy: Policy,
        settings: EngineSettings | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._uow_factory = uow_factory
        self.policy = policy
        self.settings = settings or EngineSettings()
        self._clock = clock

    def process(self, data: bytes | str | Any) -> Outcome:
        """Process one event in its own unit of work. Store errors propagate (nothing is committed)."""
        return self.process_batch([data])[0]

    def process_batch(self, items: Sequence[bytes | str | Any]) -> list[Outcome]:
        """Process several events in order in one unit of work (one commit). Store errors propagate and
        nothing of the batch is committed; the caller may then retry the events one at a time."""
        parsed = [parse_event(item) for item in items]
        if all(isinstance(p, Rejection) and p.mid is None for p in parsed):
            return [_rejected(p) for p in parsed if isinstance(p, Rejection)]
        outcomes: list[Outcome] = []
        with self._uow_factory() as uow:
            for event in parsed:
                outcomes.append(self._handle(uow, event))
            uow.commit()
        return outcomes

    # --- one event ---------------------------------------------------------------------------------

    def _handle(self, uow: UnitOfWork, event: OwnershipTransfer | DeleteUser | Rejection) -> Outcome:
        if event.mid is None:
            assert isinstance(event, Rejection)
            return _rejected(event)
        if uow.ledger.get(event.mid) is not None:
            return Outcome(event.mid, "duplicate", detail="mid already processed", **_ids(event))
        if isinstance(event, Rejection):
            outcome = _rejected(event)
        elif isinstance(event, OwnershipTransfer):
            outcome = self._transfer(uow, event)
        else:
            outcome = self._delete_user(uow, event)
        uow.ledger.record(self._ledger_entry(event, outcome))
        return outcome

    def _transfer(self, uow: UnitOfWork, event: OwnershipTransfer) -> Outcome:
        from_user = uow.users.get(event.from_user_id)
        to_user = uow.users.get(event.to_user_id)
        reason = rules.check_transfer_users(event, from_user, to_user)
        if reason is not None:
            return Outcome(event.mid, "rejected", reason.value, _user_detail(reason), **_ids(event))
        assert to_user is not None
        outcome = Outcome(event.mid, "applied", **_ids(event))
        if event.asset is None:
            self._transfer_batches(uow, event, outcome)
        if not rules.may_receive_assets(to_user, self.policy):
            outcome.skipped.append(Reason.ROLE_NOT_ALLOWED.value)
        elif event.asset is not None:
            self._transfer_one_asset(uow, event, to_user, outcome)
        else:
            self._transfer_all_assets(uow, event, to_user, outcome)
        return outcome

    def _transfer_batches(self, uow: UnitOfWork, event: OwnershipTransfer, outcome: Outcome) -> None:
        statuses = self.policy.course_batch_statuses
        for page in uow.batches.pages_of_user(event.from_user_id, statuses, self.settings.page_size):
            updates = [
                u
                for b in page
                if (u := rules.transfer_batch(b, event.from_user_id, event.to_user_id, self.policy)) is not None
            ]
            if updates:
                uow.batches.write(updates)
                self._audit_batches(uow, event, updates)
                self._sample(outcome, STORE_COURSE_BATCH, updates)
                outcome.changed_batches += len(updates)

    def _transfer_all_assets(self, uow: UnitOfWork, event: OwnershipTransfer, to_user: User, outcome: Outcome) -> None:
        name = rules.display_name(to_user)
        for page in self._asset_pages(uow, event.from_user_id):
            updates = [rules.transfer_asset(a, to_user.id, name, self.policy) for a in page]
            self._write_assets(uow, event, updates, outcome)

    def _transfer_one_asset(self, uow: UnitOfWork, event: OwnershipTransfer, to_user: User, outcome: Outcome) -> None:
        assert event.asset is not None
        asset = uow.assets.get(event.asset.identifier)
        skip = rules.single_asset_skip(asset, event.from_user_id, self.policy)
        if skip is not None:
            outcome.skipped.append(skip.value)
            return
        image = uow.assets.get(rules.image_id(event.asset.identifier))
        name = rules.display_name(to_user)
        targets = rules.owned_configured([asset, image], event.from_user_id, self.policy)
        updates = [rules.transfer_asset(a, to_user.id, name, self.policy) for a in targets]
        self._write_assets(uow, event, updates, outcome)

    def _delete_user(self, uow: UnitOfWork, event: DeleteUser) -> Outcome:
        user = uow.users.get(event.user_id)
        reason = rules.check_deleted_user(event, user)
        if reason is not None:
            return Outcome(event.mid, "rejected", reason.value, "user is not marked deleted", **_ids(event))
        outcome = Outcome(event.mid, "applied", **_ids(event))
        affected = AffectedAssets()
        for page in self._asset_pages(uow, event.user_id):
            updates = [rules.clean_asset(a, self.policy) for a in page]
            self._write_assets(uow, event, updates, outcome)
            for asset in page:
                affected.add(asset)
        user_name = user.userName if user is not None else _str_or_none(event.raw, "userName")
        note = build_notification(event.mid, event.user_id, user_name, event.admin_ids, affected, self.policy)
        if note is not None:
            uow.outbox.record(note)
        return outcome

    # --- helpers -----------------------------------------------------------------------------------

    def _asset_pages(self, uow: UnitOfWork, user_id: str) -> Iterable[list[Asset]]:
        types = self.policy.object_type_names()
        for page in uow.assets.pages_created_by(user_id, types, self.settings.page_size):
            matching = [a for a in page if a.createdBy == user_id and rules.is_configured(a, self.policy)]
            if matching:
                yield matching

    def _write_assets(
        self, uow: UnitOfWork, event: OwnershipTransfer | DeleteUser, updates: list[AssetUpdate], outcome: Outcome
    ) -> None:
        if not updates:
            return
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
    """Best-effort action and request id of an event that failed validation."""
    if not isinstance(raw, dict):
        return None, None
    edata, context = raw.get("edata"), raw.get("context")
    action = edata.get("action") if isinstance(edata, dict) else None
    cdata = context.get("cdata") if isinstance(context, dict) else None
    rid = cdata.get("id") if isinstance(cdata, dict) else None
    return (action if isinstance(action, str) else None, rid if isinstance(rid, str) else None)


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
