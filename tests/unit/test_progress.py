"""Progress of long work through the service layer (issue 14 point 5): the engine reports each write of records
to ``on_written(course_batches, assets)`` and the undo each page of reverted fields; the reports add up to the
records the event changed and to the fields the undo reverted, on the record-by-record path and on the set-based
one (page size 3, so that pages come back full); ``undo_scope`` gives the true counts of the records an undo
will revert, from the ledger."""

from __future__ import annotations

import json

import pytest

from handover.adapters.sql import SqlStore
from handover.service.engine import Engine, EngineSettings
from handover.service.undo import Undoer, undo_scope
from tests.unit.test_undo import POLICY, delete_user, store, transfer

__all__ = ["store"]  # the fixture: SQLite and PostgreSQL


@pytest.mark.parametrize("bulk", [True, False])
def test_reports_add_up_to_the_changed_and_reverted_records(store: SqlStore, bulk: bool) -> None:
    written: list[tuple[int, int]] = []
    engine = Engine(store, POLICY, EngineSettings(page_size=3, bulk=bulk),
                    on_written=lambda b, a: written.append((b, a)))

    outcome = engine.process(json.dumps(transfer("LP.1")))

    assert outcome.outcome == "applied" and outcome.changed_batches and outcome.changed_assets
    assert len(written) >= 2  # more than one write: the caller sees the work move
    assert all(b >= 0 and a >= 0 and b + a > 0 for b, a in written)
    assert sum(b for b, _ in written) == outcome.changed_batches
    assert sum(a for _, a in written) == outcome.changed_assets

    with store.read_only() as uow:
        scope = undo_scope(uow, mid="LP.1")
        assert undo_scope(uow, request_id="req-1") == scope
    assert (scope.events, scope.course_batches, scope.assets) == (1, outcome.changed_batches, outcome.changed_assets)

    reverted: list[tuple[int, int]] = []
    result = Undoer(store, page_size=3, on_written=lambda b, a: reverted.append((b, a))).undo_event("LP.1")

    assert len(reverted) >= 2  # fields reverted, page by page
    with store.read_only() as uow:
        audited = uow.audit.page(mid="LP.1", limit=1000).records
    assert sum(b for b, _ in reverted) == sum(r.store == "course_batch" for r in audited)
    assert sum(a for _, a in reverted) == sum(r.store == "asset" for r in audited)
    assert sum(b + a for b, a in reverted) == result.reverted
    with store.read_only() as uow:
        assert undo_scope(uow, mid="LP.1").records == 0  # undone: nothing left to revert


def test_undo_scope_leaves_out_what_cannot_be_undone(store: SqlStore) -> None:
    engine = Engine(store, POLICY, EngineSettings(page_size=3))
    engine.process(json.dumps(delete_user("LP.del")))
    with store.read_only() as uow:
        assert undo_scope(uow, mid="LP.del").records == 0
        assert undo_scope(uow, mid="LP.unknown") == undo_scope(uow, request_id="req-unknown")
        assert undo_scope(uow, mid="LP.unknown").events == 0
