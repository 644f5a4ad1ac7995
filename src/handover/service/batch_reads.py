"""What a micro-batch read ahead of its records, kept equal to the store by the engine's own writes.

Where the unit of work can (``ports.ReadAhead``), the engine reads at the start of a micro-batch, in one query per
kind, what its events would each read: the named assets and their images, the assets and the batches of each user
whose records a transfer or a clean-up walks, the assets the audit says each clean-up changed before. An event then
reads them here instead of in the store. Every record the engine writes is written here too (the same values as in
the store), so that a later event of the batch reads what the store would give it. A user whose records did not all
fit in the read (a page or more) is read from the store as before, and so are all records after a set-based write
(the cache is dropped: the store changed records the engine did not see).

Pages come out as the store's do: by identifier (assets), by (courseid, batchid) (batches; first those the user
created, then those the user mentors and did not create), ``page_size`` at a time, each computed when asked, after
the writes of the pages before it. The order is that of code points, which is SQLite's (the SQL store offers the
read-ahead only there).

The engine's writes of records are kept here too and written to the store together (``write_out``: one write per
kind for the micro-batch, not one per event), each record once with what its updates of the batch amount to
(``merge_asset_updates``, ``merge_batch_updates``); before any read from the store (a record or a user not read
ahead, a set-based write) and before the commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from handover.domain.model import ASSET_COLUMNS, Asset, CourseBatch
from handover.domain.rules import AssetUpdate, BatchUpdate
from handover.service.ports import ReadAhead, UnitOfWork

BatchKey = tuple[str, str]


_FLAT = frozenset({str, int, float, bool, type(None)})


def _stored(value: Any) -> Any:
    """A value as the store gives it back (JSON: tuples become lists)."""
    if type(value) in _FLAT or isinstance(value, str | int | float | bool):
        return value
    return json.loads(json.dumps(value))


def apply_asset_update(asset: Asset, update: AssetUpdate) -> Asset:
    """The asset as the store holds it after ``update`` (``AssetRepository.write``: a property that is not a column
    with a None value is removed)."""
    new = Asset(asset.identifier, asset.objectType, asset.schemaVersion, asset.status, asset.visibility,
                asset.createdBy, asset.creator, asset.originData, asset.extra)  # a copy (``replace`` is slower)
    extras: dict[str, Any] = {}
    for k, v in update.values.items():
        if k not in ASSET_COLUMNS:
            extras[k] = v
        elif k != "identifier":
            setattr(new, k, _stored(v))
    if extras:
        extra = {**asset.extra, **{k: _stored(v) for k, v in extras.items()}}
        new.extra = {k: v for k, v in extra.items() if k not in extras or v is not None}
    return new


def apply_batch_update(batch: CourseBatch, update: BatchUpdate) -> CourseBatch:
    if update.createdby is None and update.mentors is None:
        return batch
    return CourseBatch(  # not ``replace``: slower
        batch.courseid, batch.batchid, batch.name, batch.status,
        update.createdby if update.createdby is not None else batch.createdby,
        tuple(update.mentors) if update.mentors is not None else batch.mentors,
    )


def merge_asset_updates(first: AssetUpdate, then: AssetUpdate) -> AssetUpdate:
    """One update with the effect of ``first`` then ``then`` on one asset (``AssetRepository.write``: each property
    gets its last value; a property of ``extra`` set to None is removed, so the last value decides there too)."""
    return AssetUpdate(first.identifier, then.objectType, {**first.values, **then.values}, first.changes + then.changes)


def merge_batch_updates(first: BatchUpdate, then: BatchUpdate) -> BatchUpdate:
    """One update with the effect of ``first`` then ``then`` on one batch. Its first ``mentors`` change stays the
    first one's (``BatchRepository.write`` takes its ``before`` as the stored list)."""
    return BatchUpdate(
        first.courseid,
        first.batchid,
        then.createdby if then.createdby is not None else first.createdby,
        then.mentors if then.mentors is not None else first.mentors,
        first.changes + then.changes,
    )


def _keyset_pages(select: Callable[[Any], list[Any]], page_size: int) -> Iterator[list[Any]]:
    """Pages of ``select(last)`` (the sorted keys after ``last``), each asked for after the previous one was used."""
    last: Any = None
    while True:
        keys = select(last)[:page_size]
        if keys:
            yield keys
        if len(keys) < page_size:
            return
        last = keys[-1]


class BatchReads:
    """The records a micro-batch read ahead (see the module docstring)."""

    def __init__(self, page_size: int, object_types: Sequence[str], statuses: frozenset[int]) -> None:
        self._page_size = page_size
        self._types = frozenset(object_types)
        self._statuses = statuses
        self._assets: dict[str, Asset | None] = {}  # None: known not to exist
        self._assets_of: dict[str, set[str]] = {}  # user -> every asset of ``_types`` the user created
        self._batches: dict[BatchKey, CourseBatch] = {}
        self._created: dict[str, set[BatchKey]] = {}  # user -> every batch of ``_statuses`` the user created
        self._mentored: dict[str, set[BatchKey]] = {}  # user -> every batch of ``_statuses`` the user mentors
        self._audited: dict[str, set[str]] = {}  # mid -> assets its audit rows name (read before the batch)
        self._asset_writes: dict[str, AssetUpdate] = {}  # not yet written to the store, one per asset
        self._batch_writes: dict[BatchKey, BatchUpdate] = {}

    @classmethod
    def read(
        cls,
        reads: ReadAhead,
        page_size: int,
        object_types: Sequence[str],
        statuses: frozenset[int],
        *,
        assets: Sequence[str] = (),
        asset_owners: Sequence[str] = (),
        batch_users: Sequence[str] = (),
        audited_mids: Sequence[str] = (),
    ) -> BatchReads:
        """Read ``assets`` (identifiers), the assets of ``asset_owners``, the batches of ``batch_users`` and the
        assets the audit rows of ``audited_mids`` name, one query (or a few) each."""
        self = cls(page_size, object_types, statuses)
        if assets:
            found = reads.assets_by_id(assets)
            self._assets.update({i: found.get(i) for i in assets})
        if asset_owners:
            for user, owned in reads.assets_of_users(asset_owners, sorted(self._types), page_size).items():
                if len(owned) < page_size:  # all of them
                    self._assets.update((a.identifier, a) for a in owned)
                    self._assets_of[user] = {a.identifier for a in owned}
        if batch_users:
            for user, (created, mentored) in reads.batches_of_users(batch_users, statuses, page_size).items():
                if len(created) < page_size and len(mentored) < page_size:
                    self._batches.update((b.key, b) for b in (*created, *mentored))
                    self._created[user] = {b.key for b in created}
                    self._mentored[user] = {b.key for b in (*created, *mentored) if user in b.mentors}
        if audited_mids:
            self._audited = {m: set(keys) for m, keys in reads.audited_assets(audited_mids).items()}
            self._audited.update({m: set() for m in audited_mids if m not in self._audited})
        return self

    # --- reads -------------------------------------------------------------------------------------

    def asset(self, uow: UnitOfWork, identifier: str) -> Asset | None:
        if identifier not in self._assets:
            self.write_out(uow)
            self._assets[identifier] = uow.assets.get(identifier)
        return self._assets[identifier]

    def asset_pages(self, uow: UnitOfWork, user_id: str, object_types: Sequence[str]) -> Iterator[Sequence[Asset]]:
        """As ``uow.assets.pages_created_by(user_id, object_types, page_size)``."""
        owned = self._assets_of.get(user_id)
        if owned is None or frozenset(object_types) != self._types:
            yield from self._from_store(uow, lambda: uow.assets.pages_created_by(user_id, object_types,
                                                                                 self._page_size))
            return

        def after(last: str | None) -> list[str]:
            return sorted(i for i in owned if last is None or i > last)

        for ids in _keyset_pages(after, self._page_size):
            yield [a for i in ids if (a := self._assets[i]) is not None]

    def batch_pages(self, uow: UnitOfWork, user_id: str, statuses: frozenset[int]) -> Iterator[Sequence[CourseBatch]]:
        """As ``uow.batches.pages_of_user(user_id, statuses, page_size)``."""
        if user_id not in self._created or statuses != self._statuses:
            yield from self._from_store(uow, lambda: uow.batches.pages_of_user(user_id, statuses, self._page_size))
            return
        created, mentored = self._created[user_id], self._mentored[user_id]

        def created_after(last: BatchKey | None) -> list[BatchKey]:
            return sorted(k for k in created if last is None or k > last)

        def mentored_after(last: BatchKey | None) -> list[BatchKey]:
            return sorted(k for k in mentored if self._batches[k].createdby != user_id and (last is None or k > last))

        for select in (created_after, mentored_after):
            for keys in _keyset_pages(select, self._page_size):
                yield [self._batches[k] for k in keys]

    def _from_store(self, uow: UnitOfWork, pages: Callable[[], Iterable[Sequence[Any]]]) -> Iterator[Sequence[Any]]:
        """The pages of a read from the store, the writes kept written out before each (the engine writes between
        pages)."""
        self.write_out(uow)
        for page in pages():
            yield page
            self.write_out(uow)

    def audited_assets(self, mid: str) -> set[str] | None:
        """The assets the audit rows of ``mid`` named before the batch; None when not read ahead."""
        return self._audited.get(mid)

    # --- the engine's writes -----------------------------------------------------------------------

    def write_assets(self, before: Mapping[str, Asset], updates: Sequence[AssetUpdate]) -> None:
        """Write ``updates`` of the assets ``before`` (by identifier, as they were read): here now, in the store at
        the next ``write_out``."""
        for update in updates:
            kept = self._asset_writes.get(update.identifier)
            self._asset_writes[update.identifier] = update if kept is None else merge_asset_updates(kept, update)
            old = before[update.identifier]
            new = apply_asset_update(old, update)
            self._assets[update.identifier] = new
            if old.createdBy != new.createdBy:
                if old.createdBy in self._assets_of:
                    self._assets_of[old.createdBy].discard(new.identifier)
                if new.createdBy in self._assets_of and new.objectType in self._types:
                    self._assets_of[new.createdBy].add(new.identifier)

    def write_batches(self, before: Mapping[BatchKey, CourseBatch], updates: Sequence[BatchUpdate]) -> None:
        """As ``write_assets``."""
        for update in updates:
            kept = self._batch_writes.get(update.key)
            self._batch_writes[update.key] = update if kept is None else merge_batch_updates(kept, update)
            old = before[update.key]
            new = apply_batch_update(old, update)
            self._batches[update.key] = new
            if new.status not in self._statuses:  # not in any user's pages
                continue
            for user in {old.createdby, new.createdby, *old.mentors, *new.mentors}:
                if user is None or user not in self._created:
                    continue
                for index, holds in ((self._created, new.createdby == user), (self._mentored, user in new.mentors)):
                    if holds:
                        index[user].add(update.key)
                    else:
                        index[user].discard(update.key)

    def write_out(self, uow: UnitOfWork) -> None:
        """Write the kept writes to the store: one ``write`` of the assets, one of the batches."""
        if self._asset_writes:
            uow.assets.write(list(self._asset_writes.values()))
            self._asset_writes = {}
        if self._batch_writes:
            uow.batches.write(list(self._batch_writes.values()))
            self._batch_writes = {}

    def forget_assets(self, uow: UnitOfWork) -> None:
        """A set-based write is about to change assets: the kept writes go to the store, and from now on the assets
        are read from there."""
        self.write_out(uow)
        self._assets.clear()
        self._assets_of.clear()

    def forget_batches(self, uow: UnitOfWork) -> None:
        self.write_out(uow)
        self._batches.clear()
        self._created.clear()
        self._mentored.clear()
