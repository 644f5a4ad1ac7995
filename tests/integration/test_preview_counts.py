"""A preview's counts (``SqlCounts`` with the dict its units of work share, each user's batches counted once for
every status and assets once for every type and version) against the same counts taken each time they are asked
(a read-only unit of work) and against the fixture itself, on SQLite and PostgreSQL."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from handover.adapters.sql import SqlStore

USERS = ["u-ann", "u-ben", "u-cid"]


def fixture() -> dict[str, Any]:
    users = [{"id": u, "userName": u, "firstName": u, "lastName": "T", "rootOrgId": "org-1", "roles": [],
              "isDeleted": False} for u in USERS]
    batches = [
        {"courseid": f"do_c{i % 3}", "batchid": f"b{i}", "name": f"b{i}", "status": i % 3,
         "createdby": USERS[i % 2] if i % 5 else None,
         "mentors": [USERS[(i + 1) % 3], USERS[i % 2]] if i % 4 else [USERS[2]]}
        for i in range(23)
    ]
    assets = [
        {"identifier": f"do_a{i}", "objectType": ["Question", "Content", "QuestionSet"][i % 3],
         "schemaVersion": None if i % 4 == 0 else "1.1", "status": "Live", "visibility": "Default",
         "createdBy": USERS[i % 3], "creator": "x", "originData": None}
        for i in range(19)
    ]
    return {"users": users, "course_batches": batches, "assets": assets}


def expected(doc: dict[str, Any], user: str, statuses: frozenset[int]) -> int:
    return sum(1 for b in doc["course_batches"] if b["status"] in statuses
               and (b["createdby"] == user or user in b["mentors"]))


def test_a_previews_shared_counts_equal_counts_taken_each_time(store_url: str) -> None:
    doc = fixture()
    store = SqlStore(store_url)
    try:
        store.init_schema()
        store.load(doc)
        status_sets = [frozenset(c) for n in (1, 2, 3) for c in combinations((0, 1, 2), n)]
        type_sets = [["Question"], ["Content", "QuestionSet"], ["Question", "Content", "QuestionSet", "Nope"]]
        with store.preview() as factory, store.read_only() as fresh:
            assert fresh.counts is not None
            for user in USERS:
                with factory() as uow:  # a new unit for each user: the counts are shared across them
                    shared = uow.counts
                    assert shared is not None
                    for statuses in status_sets:
                        want = expected(doc, user, statuses)
                        assert shared.batches_of_user(user, statuses) == want == fresh.counts.batches_of_user(
                            user, statuses), (user, statuses)
                    for types in type_sets:
                        assert sorted(shared.asset_profile_counts(user, types), key=str) == sorted(
                            fresh.counts.asset_profile_counts(user, types), key=str), (user, types)
                    by_type = {t: sum(1 for a in doc["assets"] if a["createdBy"] == user and a["objectType"] == t)
                               for t in ("Question", "Content", "QuestionSet")}
                    assert shared.asset_types(user) == fresh.counts.asset_types(user) == {
                        t: n for t, n in by_type.items() if n} == fresh.assets.types_created_by(user)  # type: ignore[attr-defined]
    finally:
        store.engine.dispose()
