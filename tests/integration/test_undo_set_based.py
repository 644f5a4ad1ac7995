"""The set-based undo (``SqlBulk.revert_columns``) against the record-by-record one: the same scenario (random
fixture, transfers with small pages so that the engine's set-based path runs too, then records changed behind the
transfer's back so that some changes conflict, or a record deleted; on PostgreSQL the fields of one store are first
tried in one UPDATE, and a change of any of them sends that store back to one UPDATE per field) undone both ways
gives the same results (reverted, conflicts, conflict samples), the same store and the same undo audit rows, on
SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handover.adapters.sql import (
    SqlBulk,
    SqlStore,
    SqlUnitOfWork,
    asset,
    audit,
    course_batch,
    course_batch_mentor,
    ledger,
)
from handover.service.engine import Engine, EngineSettings
from handover.service.undo import Undoer
from tests.unit.test_undo_property import NAMES, POLICY, USERS, clear, scenarios, snapshot, transfer

EDITS = st.lists(
    st.tuples(st.sampled_from(["asset.createdBy", "asset.creator", "batch.createdby", "batch.mentors", "asset.delete"]),
              st.integers(0, 9), st.sampled_from([*USERS, *NAMES[1:], None])),
    max_size=4,
)


class RecordByRecord(SqlUnitOfWork):
    """The store's unit of work without its set-based undo."""

    def __enter__(self) -> RecordByRecord:
        super().__enter__()
        self.reverts = None
        return self


def edit(store: SqlStore, edits: list[tuple[str, int, Any]]) -> None:
    """Change records behind the transfers' back (the undo then finds other values there: conflicts)."""
    with store.connect() as conn, conn.begin():
        idents = [r[0] for r in conn.execute(sa.select(asset.c.identifier).order_by(asset.c.identifier))]
        keys = [tuple(r) for r in conn.execute(
            sa.select(course_batch.c.courseid, course_batch.c.batchid).order_by(course_batch.c.courseid,
                                                                                course_batch.c.batchid))]
        for kind, index, value in edits:
            if kind.startswith("asset") and idents:
                ident = idents[index % len(idents)]
                if kind == "asset.delete":
                    conn.execute(asset.delete().where(asset.c.identifier == ident))
                    idents.remove(ident)
                else:
                    conn.execute(asset.update().where(asset.c.identifier == ident).values({kind[6:]: value}))
            elif kind == "batch.createdby" and keys:
                c, b = keys[index % len(keys)]
                where = sa.and_(course_batch.c.courseid == c, course_batch.c.batchid == b)
                conn.execute(course_batch.update().where(where).values(createdby=value))
            elif kind == "batch.mentors" and keys:  # the list and its index rows, as the LMS would write them
                c, b = keys[index % len(keys)]
                where = sa.and_(course_batch.c.courseid == c, course_batch.c.batchid == b)
                mentors = [value] if value is not None else []
                conn.execute(course_batch.update().where(where).values(mentors=mentors))
                conn.execute(course_batch_mentor.delete().where(
                    course_batch_mentor.c.courseid == c, course_batch_mentor.c.batchid == b))
                if mentors:
                    conn.execute(course_batch_mentor.insert().values(userid=value, courseid=c, batchid=b))


def run(store: SqlStore, factory: Any, fixture: dict[str, Any], todo: list[Any], edits: list[Any],
        one_request: bool) -> dict[str, Any]:
    clear(store)
    store.load(fixture)
    engine = Engine(store, POLICY, EngineSettings(page_size=2))
    mids = []
    for number, (from_id, to_id, target) in enumerate(todo):
        mid = f"LP.{number}"
        engine.process(transfer(mid, "r" if one_request else f"r.{number}", from_id, to_id, target))
        mids.append(mid)
    edit(store, edits)
    undoer = Undoer(factory, page_size=3)
    results = [undoer.undo_request("r")] if one_request else [undoer.undo_event(m) for m in reversed(mids)]
    with store.connect() as conn:
        rows = sorted(
            json.dumps([r.mid, r.request_id, r.store, r.record_key, r.field, r.before, r.after])
            for r in conn.execute(sa.select(audit).where(audit.c.mid.like("undo:%")))
        )
        entries = {r.mid: (r.changed_batches, r.changed_assets, json.loads(r.detail))
                   for r in conn.execute(sa.select(ledger).where(ledger.c.mid.like("undo:%")))}
        records = {
            (mid, store_name): n
            for mid, store_name, n in conn.execute(
                sa.select(audit.c.mid, audit.c.store, sa.func.count(sa.distinct(audit.c.record_key)))
                .where(audit.c.mid.like("undo:%")).group_by(audit.c.mid, audit.c.store))
        }
    return {"results": [r.to_json() for r in results], "store": snapshot(store), "audit": rows,
            "entries": entries, "records": records}


def undone_both_ways(store_url: str, fixture: dict[str, Any], todo: list[Any], edits: list[Any],
                     one_request: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """``run`` record by record and then set-based on the same store; asserts that both leave the same results,
    store, audit and undo ledger detail (the set-based undo counts each record it audited once: the callers check
    the counts). Returns (record by record, set-based)."""
    store = SqlStore(store_url)
    store.init_schema()
    try:
        walked = run(store, lambda: RecordByRecord(store.engine), fixture, todo, edits, one_request)
        set_based = run(store, store, fixture, todo, edits, one_request)
    finally:
        store.engine.dispose()
    assert set_based["results"] == walked["results"]
    assert set_based["store"] == walked["store"]
    assert set_based["audit"] == walked["audit"]
    assert {m: e[2] for m, e in set_based["entries"].items()} == {m: e[2] for m, e in walked["entries"].items()}
    return walked, set_based


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios(), edits=EDITS, one_request=st.booleans())
def test_set_based_undo_does_what_the_record_by_record_undo_does(
    store_url: str, scenario: tuple[dict[str, Any], list[Any]], edits: list[Any], one_request: bool
) -> None:
    fixture, todo = scenario
    walked, set_based = undone_both_ways(store_url, fixture, todo, edits, one_request)
    for mid, (batches, assets, _) in set_based["entries"].items():
        counted = (set_based["records"].get((mid, "course_batch"), 0), set_based["records"].get((mid, "asset"), 0))
        if counted != (batches, assets):
            assert (batches, assets) == walked["entries"][mid][:2]  # this undo ran record by record only


def test_a_field_changed_twice_in_one_record_is_undone_as_record_by_record(store_url: str) -> None:
    """An event whose audit names one field of one record twice (A -> B, then B -> C): the set-based UPDATE would
    write that record once, so the field goes record by record and both changes are reverted, newest first."""
    from datetime import UTC, datetime

    from handover.domain.rules import FieldChange
    from handover.service.ports import AuditRecord, LedgerEntry

    users = [{"id": u, "userName": u, "firstName": u, "lastName": "T", "rootOrgId": "org-1", "roles": [],
              "isDeleted": False} for u in ("u1", "u2", "u3")]
    fixture = {
        "users": users,
        "course_batches": [{"courseid": "do_c", "batchid": "b1", "name": "b", "status": 1, "createdby": "u3",
                            "mentors": ["u3", "u9"]}],
        "assets": [{"identifier": f"do_{i}", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
                    "visibility": "Default", "createdBy": "u3", "creator": "C", "originData": None}
                   for i in range(3)],
    }
    at = datetime(2026, 1, 1, tzinfo=UTC)
    twice = [("asset", f"do_{i}", "createdBy", a, b) for i in range(3) for a, b in (("u1", "u2"), ("u2", "u3"))
             if i or a == "u2"]  # do_0 changed once, do_1 and do_2 twice
    twice += [("asset", "do_1", "creator", "A", "C"),
              ("course_batch", "do_c/b1", "mentors", ["u1", "u9"], ["u2", "u9"]),
              ("course_batch", "do_c/b1", "mentors", ["u2", "u9"], ["u3", "u9"])]

    def scenario(factory: Any) -> dict[str, Any]:
        clear(store)
        store.load(fixture)
        with store() as uow:
            uow.ledger.record(LedgerEntry("LP.twice", "ownership-transfer", "applied", None, (), 1, 3, "r", "u1", at))
            uow.audit.record([AuditRecord("LP.twice", "r", s, k, FieldChange(f, b, a), at) for s, k, f, b, a in twice])
            uow.commit()
        result = Undoer(factory, page_size=2).undo_event("LP.twice")
        with store.connect() as conn:
            rows = sorted(json.dumps([r.store, r.record_key, r.field, r.before, r.after])  # fields done set-based
                          for r in conn.execute(sa.select(audit).where(audit.c.mid == "undo:LP.twice")))  # come first
        return {"result": result.to_json(), "store": snapshot(store), "audit": rows}

    store = SqlStore(store_url)
    store.init_schema()
    try:
        walked = scenario(lambda: RecordByRecord(store.engine))
        set_based = scenario(store)
    finally:
        store.engine.dispose()
    assert set_based == walked
    assert (walked["result"]["reverted"], walked["result"]["conflicts"]) == (len(twice), 0)
    assert {a["identifier"]: a["createdBy"] for a in walked["store"]["assets"]} == {
        "do_0": "u2", "do_1": "u1", "do_2": "u1"}


ONE_OWNER = {  # u1 created and mentors every batch and created every asset: one transfer changes all four fields
    "users": [{"id": u, "userName": u, "firstName": u.upper(), "lastName": "T", "rootOrgId": "o1",
               "roles": ["CONTENT_CREATOR", "COURSE_MENTOR"], "isDeleted": False} for u in USERS],
    "course_batches": [{"courseid": f"c{i // 3}", "batchid": f"b{i}", "name": f"b{i}", "status": 1, "createdby": "u1",
                        "mentors": ["u1", "u0"]} for i in range(6)],
    "assets": [{"identifier": f"do_{i}", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
                "visibility": "Default", "createdBy": "u1", "creator": "Ann", "originData": None} for i in range(8)],
}


@pytest.mark.parametrize("edits", [
    [], [("asset.creator", 3, "Zoë")], [("asset.createdBy", 5, "u0")], [("asset.delete", 4, None)],
    [("batch.createdby", 2, "u0")], [("batch.mentors", 1, "u0")], [("batch.mentors", 1, "u2")],
])
def test_the_fields_of_a_store_undone_together_as_field_by_field(
    store_url: str, edits: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One event that changed two fields of each store (assets' createdBy and creator, batches' createdby and
    mentors): on PostgreSQL each store's fields are reverted by one UPDATE when every change still holds, else
    (a record changed since in any of them, or gone) field by field; either way the results, the store, the mentor
    index and the undo's audit rows are those of the record-by-record undo."""
    tried: list[tuple[str, int | None]] = []
    together = SqlBulk._revert_together

    def spy(self: SqlBulk, mid: str, store: str, fields: Any) -> int | None:
        done = together(self, mid, store, fields)
        tried.append((store, done))
        return done

    monkeypatch.setattr(SqlBulk, "_revert_together", spy)
    _, set_based = undone_both_ways(store_url, ONE_OWNER, [("u1", "u2", None)], edits, False)
    for mid, (batches, assets, _) in set_based["entries"].items():  # each record the undo audited, counted once
        assert (batches, assets) == (set_based["records"].get((mid, "course_batch"), 0),
                                     set_based["records"].get((mid, "asset"), 0))
    (result,) = set_based["results"][0]["events"]
    if not edits:
        assert (result["reverted"], result["conflicts"]) == (8 + 8 + 6 + 6, 0)
    if store_url.startswith("postgresql"):
        changed = {kind.split(".")[0].replace("batch", "course_batch") for kind, _, _ in edits}
        assert sorted(tried, key=str) == [("asset", None if "asset" in changed else 8),  # records written
                                          ("course_batch", None if "course_batch" in changed else 6)]
    else:
        assert tried == []
