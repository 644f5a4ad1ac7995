"""An undo and a transfer of the same user at once, and two undos at once (issue 13 item 8), on PostgreSQL (row locks,
deadlocks) and SQLite: no deadlock reaches the caller (per-user advisory locks in one order, contention retried
transparently); one undo reverts, the other reports "already undone"; the records end as one order or the other
would leave them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from handover.adapters.sql import SqlStore, asset
from handover.domain.policy import Policy
from handover.service.engine import Engine, EngineSettings
from handover.service.ports import StoreContention
from handover.service.undo import Undoer

N = 400  # assets of u-a: enough pages (of 25) for the two units of work to interleave


def fixture() -> dict[str, Any]:
    user = {"firstName": "", "lastName": "", "rootOrgId": "org-1", "roles": ["CONTENT_CREATOR"], "isDeleted": False}
    return {
        "users": [{**user, "id": u, "userName": u} for u in ("u-a", "u-b", "u-c")],
        "course_batches": [{"courseid": f"c{i}", "batchid": "b", "name": "B", "status": 1, "createdby": "u-a",
                            "mentors": ["u-a"]} for i in range(50)],
        "assets": [{"identifier": f"do_{i:04d}", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
                    "visibility": "Default", "createdBy": "u-a", "creator": "u-a", "originData": None}
                   for i in range(N)],
    }


def transfer(mid: str, request_id: str, frm: str, to: str) -> dict[str, Any]:
    return {"eid": "BE_JOB_REQUEST", "mid": mid, "object": {"id": frm, "type": "user"},
            "context": {"cdata": {"id": request_id, "type": "Request"}},
            "edata": {"action": "ownership-transfer", "organisationId": "org-1",
                      "fromUserProfile": {"userId": frm}, "toUserProfile": {"userId": to}, "assetInformation": {}}}


def engine(store: SqlStore) -> Engine:
    return Engine(store, Policy(), EngineSettings(page_size=25, bulk=False))


def together(*actions: Callable[[], Any]) -> list[Any]:
    """Run the actions in threads released at the same moment; their results (or the exceptions they raised)."""
    start = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = actions[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def owners(store: SqlStore) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(sa.select(asset.c.createdBy, sa.func.count()).group_by(asset.c.createdBy)).all()
    return {str(owner): int(n) for owner, n in rows}


@pytest.fixture
def store(store_url: str) -> SqlStore:
    s = SqlStore(store_url)
    s.init_schema()
    s.load(fixture())
    return s


@pytest.mark.parametrize("round_", range(3))
def test_an_undo_during_a_transfer_of_the_same_user(store: SqlStore, round_: int) -> None:
    assert engine(store).process(transfer("LP.1", "r-1", "u-a", "u-b")).changed_assets == N  # u-a -> u-b
    undo, moved = together(
        lambda: Undoer(store, page_size=25).undo_request("r-1"),  # u-b's records back to u-a
        lambda: engine(store).process(transfer("LP.2", "r-2", "u-b", "u-c")),  # u-b's records to u-c
    )
    assert not isinstance(undo, Exception), undo
    assert not isinstance(moved, Exception), moved
    assert moved.outcome == "applied"
    if moved.changed_assets == 0:  # the undo first: everything is u-a's again, u-b had nothing left
        assert (undo.conflicts, owners(store)) == (0, {"u-a": N})
    else:  # the transfer first: u-c holds every asset, the undo finds them changed since
        assert moved.changed_assets == N
        assert undo.reverted == 0 and undo.conflicts > 0 and owners(store) == {"u-c": N}


def test_two_undos_at_once_one_reverts_the_other_was_already_undone(store: SqlStore) -> None:
    assert engine(store).process(transfer("LP.1", "r-1", "u-a", "u-b")).outcome == "applied"
    first, second = together(*[lambda: Undoer(store, page_size=25).undo_request("r-1")] * 2)
    assert not isinstance(first, Exception) and not isinstance(second, Exception), (first, second)
    done = sorted([first, second], key=lambda r: r.events[0].already_undone)
    assert [r.events[0].already_undone for r in done] == [False, True]
    assert done[0].reverted > 0 and done[1].reverted == 0  # the second reverted nothing
    assert f"that undo reverted {done[0].reverted}," in done[1].events[0].note  # and says what the first did
    assert owners(store) == {"u-a": N}


def test_contention_is_retried_and_given_up_after_a_few_attempts(store: SqlStore) -> None:
    """A unit of work that loses to a concurrent one (here: made to) runs again; nothing is counted twice."""
    calls = {"n": 0}

    class Losing:
        def __init__(self, fail_times: int) -> None:
            self.fail_times = fail_times

        def __call__(self) -> Any:
            uow = store()
            original = uow.commit

            def commit() -> None:
                calls["n"] += 1
                if calls["n"] <= self.fail_times:
                    raise StoreContention("deadlock detected (made by the test)")
                original()

            uow.commit = commit  # type: ignore[method-assign]
            return uow

    outcome = Engine(Losing(2), Policy(), EngineSettings(page_size=25)).process(transfer("LP.1", "r-1", "u-a", "u-b"))
    assert (outcome.outcome, outcome.changed_assets, calls["n"]) == ("applied", N, 3)
    assert owners(store) == {"u-b": N}
    calls["n"] = 0
    with pytest.raises(StoreContention):
        Undoer(Losing(99), page_size=25).undo_request("r-1")
    assert calls["n"] == 5 and owners(store) == {"u-b": N}  # given up: nothing committed
