"""The deleted-owner report's use case (SPEC 12) on SQLite and PostgreSQL: the rows (what a transfer would move,
nothing else), organisations, the pages and their cursors, the console's owners with counts, the refusals, and
memory that does not grow with the number of users and records (tracemalloc, not timed)."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from handover.adapters.sql import SqlStore
from handover.config import load_settings
from handover.domain.policy import Policy
from handover.service.reports import COLUMNS, DeletedOwnersReport, encode_cursor
from handover.service.requests import Forbidden, Invalid, NotFound, NotSupported
from tests.report_fixture import expected_rows, report_fixture, row_key


def _store(url: str, doc: dict[str, Any]) -> SqlStore:
    store = SqlStore(url)
    store.init_schema()
    store.load(doc)
    return store


def _report(store: SqlStore, page_size: int = 1000) -> DeletedOwnersReport:
    return DeletedOwnersReport(store.read_only, load_settings(None, environ={}).policy(), page_size)


@pytest.fixture
def doc() -> dict[str, Any]:
    return report_fixture(owners=3, records=3)


@pytest.fixture
def store(store_url: str, doc: dict[str, Any]) -> SqlStore:
    return _store(store_url, doc)


def test_rows_are_what_a_transfer_would_move(store: SqlStore, doc: dict[str, Any]) -> None:
    report = _report(store, page_size=2)  # pages of 2 users / records: every keyset step is taken
    rows = list(report.rows("org-r"))
    assert sorted(row_key(r) for r in rows) == expected_rows(doc, "org-r")
    assert len(rows) == 3 * (3 + 1 + 3)  # per owner: 3 created batches, 1 mentored, 3 questions
    assert [r.userId for r in rows] == sorted(r.userId for r in rows)  # user by user, in id order
    first = rows[0]
    assert first.to_json() == {
        "userId": "r-gone-00000", "username": "r_gone_00000", "organisationId": "org-r",
        "roles": ["CONTENT_CREATOR", "COURSE_MENTOR"], "assetIdentifier": "do_c00000/b00000_0000",
        "assetName": "Batch 0 of r-gone-00000", "assetStatus": "Upcoming Batch", "objectType": "Course Batch",
        "ownedAs": "createdBy",
    }
    assert first.csv_values()[COLUMNS.index("roles")] == "CONTENT_CREATOR, COURSE_MENTOR"
    assert {r.assetName for r in rows if r.objectType == "Question"} == {"Question 0", "Question 1", "Question 2"}


def test_every_organisation_and_one_other(store: SqlStore, doc: dict[str, Any]) -> None:
    report = _report(store)
    assert sorted(row_key(r) for r in report.rows(None)) == expected_rows(doc, None)
    assert [row_key(r) for r in report.rows("org-s")] == expected_rows(doc, "org-s")
    assert list(report.rows("org-nobody")) == []


@pytest.mark.parametrize("limit", [1, 2, 5, 7, 100])
def test_pages_give_every_row_once(store: SqlStore, doc: dict[str, Any], limit: int) -> None:
    report = _report(store, page_size=2)
    seen: list[Any] = []
    cursor = None
    for _ in range(100):
        page = report.page("org-r", cursor, limit)
        assert len(page.rows) <= limit
        seen.extend(page.rows)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [row_key(r) for r in seen] == [row_key(r) for r in report.rows("org-r")]
    assert sorted(row_key(r) for r in seen) == expected_rows(doc, "org-r")


def test_a_cursor_past_a_user_transferred_meanwhile(store: SqlStore) -> None:
    """The cursor names a user; when that user no longer owns anything (or is gone), the next page goes on with the
    users after it."""
    report = _report(store)
    page = report.page("org-r", encode_cursor("r-gone-00001", 999), 100)
    assert {r.userId for r in page.rows} == {"r-gone-00002"}
    page = report.page("org-r", encode_cursor("r-gone-000015", 0), 100)  # not a user: those after it
    assert {r.userId for r in page.rows} == {"r-gone-00002"}


@pytest.mark.parametrize("cursor", ["zz", "e30", "!!!", encode_cursor("u", 0)[:-2] + "x", "eyJ1IjoxLCJuIjowfQ"])
def test_bad_cursor_and_limit(store: SqlStore, cursor: str) -> None:
    report = _report(store)
    with pytest.raises(Invalid, match="cursor"):
        report.page("org-r", cursor, 10)
    for limit in (0, 1001, -1):
        with pytest.raises(Invalid, match="limit must be an integer from 1 to 1000"):
            report.page("org-r", None, limit)


def test_owners_with_counts_and_first_records(store: SqlStore) -> None:
    report = _report(store, page_size=2)
    found = report.owners("org-r", "", 2, first=3)
    assert [o.user.id for o in found.owners] == ["r-gone-00000", "r-gone-00001"]
    assert found.next_after == "r-gone-00001"
    owner = found.owners[0]
    assert (owner.course_batches, owner.assets, len(owner.first), owner.name) == (4, 3, 3, "Gone0")
    rest = report.owners("org-r", found.next_after, 2, first=3)
    assert [o.user.id for o in rest.owners] == ["r-gone-00002"] and rest.next_after is None  # r-idle owns nothing
    assert report.owners("org-s", "", 20).owners[0].user.id == "s-gone"


def test_who_may_see_which_organisation(store: SqlStore) -> None:
    report = _report(store)
    assert report.organisation_for("r-admin", None) == "org-r"
    assert report.organisation_for("r-admin", "org-r") == "org-r"
    assert report.organisation_for(None, "org-s") == "org-s"
    with pytest.raises(Forbidden, match="r-admin is not an admin of org-s"):
        report.organisation_for("r-admin", "org-s")
    with pytest.raises(Forbidden, match="r-keeper is not an admin of org-r"):
        report.organisation_for("r-keeper", None)
    with pytest.raises(Forbidden, match="u-nobody is not an admin of any organisation"):
        report.organisation_for("u-nobody", None)
    with pytest.raises(Invalid, match="organisationId is required"):
        report.organisation_for(None, " ")
    with pytest.raises(NotFound, match="No organisation org-x in the user directory"):
        report.organisation_for(None, "org-x")
    with pytest.raises(Invalid, match="organisationId contains"):
        report.organisation_for(None, "org\x00")


def test_a_store_without_the_port_says_so(store: SqlStore) -> None:
    class NoSearch:
        def __init__(self, uow: Any) -> None:
            self._uow = uow

        def __enter__(self) -> Any:
            uow = self._uow.__enter__()
            uow.users = object()
            return uow

        def __exit__(self, *exc: Any) -> None:
            self._uow.__exit__(*exc)

    report = DeletedOwnersReport(lambda: NoSearch(store.read_only()), Policy())
    with pytest.raises(NotSupported, match="cannot list deleted users"):
        list(report.rows("org-r"))


def _live_peak(url: str, owners: int, records: int) -> int:
    """The most memory the report holds while the report of a store with ``owners`` deleted owners, ``records``
    batches and ``records`` assets each, is streamed (rows counted, not kept): tracemalloc's current size after a
    full collection every 500 rows. (Without the collections the figure also holds SQLAlchemy's result metadata,
    cyclic garbage that Python's collector frees at its own pace, not when a page is done.)"""
    store = _store(url, report_fixture(owners=owners, records=records))
    report = _report(store, page_size=50)
    sum(1 for _ in report.rows("org-r"))  # warm the statement caches
    gc.collect()
    tracemalloc.start()
    live, count = 0, 0
    try:
        for count, _ in enumerate(report.rows("org-r"), 1):
            if count % 500 == 0:
                gc.collect()
                live = max(live, tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
        store.engine.dispose()
    assert count == owners * (2 * records + 1)
    return live


def test_memory_flat_in_users_and_records(tmp_path: Any) -> None:
    """Four times the users, then four times the records per user: the memory held stays that of the smaller store
    (within 10 % and 16 kB), since users, batches and assets are read in pages of 50. (The first store of each
    pair is big enough to have reached every statement and page path.)"""
    users = _live_peak(f"sqlite:///{tmp_path / 'u1.db'}", owners=80, records=30)
    more_users = _live_peak(f"sqlite:///{tmp_path / 'u4.db'}", owners=320, records=30)
    records = _live_peak(f"sqlite:///{tmp_path / 'r1.db'}", owners=20, records=120)
    more_records = _live_peak(f"sqlite:///{tmp_path / 'r4.db'}", owners=20, records=480)
    print(f"\nlive bytes: 80 owners x 61 rows {users}, 320 x 61 {more_users}; "
          f"20 x 241 {records}, 20 x 961 {more_records}")
    assert more_users < users * 1.1 + 16_000
    assert more_records < records * 1.1 + 16_000
