"""Undo of ownership transfers and the audit trail (SPEC 10) on SQLite and PostgreSQL: exact restore of every
kind of field, conflicts, idempotence, refusal of delete-user events, privacy of the audit, paging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from handover.adapters.sql import SqlStore, audit, course_batch_mentor, ledger
from handover.domain.policy import Policy
from handover.service.audit_trail import event_changes, export
from handover.service.engine import Engine, EngineSettings
from handover.service.undo import NotUndoable, Undoer, UnknownEvent

POLICY = Policy(
    pii_fields={
        ("Question", "1.0"): {"createdBy": ("originData.creator.name",)},
        ("Question", "1.1"): {"createdBy": ("creator",)},
        ("QuestionSet", "1.0"): {"createdBy": ("creatorName",)},
        ("QuestionSet", "1.1"): {"createdBy": ("creator",)},
    },
)
ANN = {"id": "u-ann", "userName": "ann_lee", "firstName": "Ann", "lastName": "Lee", "rootOrgId": "org-1",
       "roles": ["CONTENT_CREATOR"], "isDeleted": False}
FIXTURE: dict[str, Any] = {
    "users": [
        ANN,
        {"id": "u-ravi", "userName": "ravi_k", "firstName": "Ravi", "lastName": "Kumar", "rootOrgId": "org-1",
         "roles": ["CONTENT_CREATOR"], "isDeleted": False},
    ],
    "course_batches": [
        {"courseid": "c1", "batchid": "b1", "name": "B1", "status": 1, "createdby": "u-ann",
         "mentors": ["u-ann", "u-ravi", "u-ann"]},
        {"courseid": "c1", "batchid": "b2", "name": "B2", "status": 0, "createdby": "u-x", "mentors": ["u-ann"]},
        {"courseid": "c2", "batchid": "b3", "name": "B3", "status": 2, "createdby": "u-ann", "mentors": []},
    ],
    "assets": [
        # a column
        {"identifier": "do_flat", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": "Ann Lee", "originData": None},
        {"identifier": "do_flat.img", "objectType": "QuestionImage", "schemaVersion": "1.1", "status": "Draft",
         "visibility": "Default", "createdBy": "u-ann", "creator": "Ann Lee", "originData": None},
        # a path whose leaf exists (null), next to other keys
        {"identifier": "do_leaf", "objectType": "Question", "schemaVersion": "1.0", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": "Ann Lee",
         "originData": {"creator": {"name": None, "id": 1}, "x": 2}},
        # paths that do not exist: no object, an object without the key, a string where an object is expected
        {"identifier": "do_none", "objectType": "Question", "status": "Live", "visibility": "Private",
         "createdBy": "u-ann", "creator": "Ann", "originData": None},
        {"identifier": "do_empty", "objectType": "Question", "schemaVersion": "1.0", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": None, "originData": {}},
        {"identifier": "do_str", "objectType": "Question", "schemaVersion": "1.0", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": None, "originData": {"creator": "Ann L."}},
        # a node property that is not a column: absent, then present
        {"identifier": "do_set", "objectType": "QuestionSet", "schemaVersion": "1.0", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": "Ann Lee", "originData": None},
        {"identifier": "do_set2", "objectType": "QuestionSet", "schemaVersion": "1.0", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": "Ann Lee", "originData": None,
         "creatorName": "Ann Lee"},
        # not the from-user's / not configured: untouched
        {"identifier": "do_other", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-ravi", "creator": "Ravi Kumar", "originData": None},
        {"identifier": "do_content", "objectType": "Content", "status": "Live", "visibility": "Default",
         "createdBy": "u-ann", "creator": "Ann Lee", "originData": None},
    ],
}


def transfer(mid: str, request_id: str = "req-1", from_id: str = "u-ann", to_id: str = "u-ravi",
             asset: str | None = None) -> dict[str, Any]:
    return {
        "eid": "BE_JOB_REQUEST", "mid": mid, "object": {"id": from_id, "type": "user"},
        "context": {"cdata": {"id": request_id, "type": "Request"}},
        "edata": {"action": "ownership-transfer", "organisationId": "org-1",
                  "fromUserProfile": {"userId": from_id}, "toUserProfile": {"userId": to_id},
                  "assetInformation": {"identifier": asset} if asset else {}},
    }


def delete_user(mid: str, user_id: str = "u-ann") -> dict[str, Any]:
    return {
        "eid": "BE_JOB_REQUEST", "mid": mid, "object": {"id": user_id, "type": "User"},
        "edata": {"action": "delete-user", "organisationId": "org-1", "userId": user_id, "userName": "ann_lee",
                  "suggested_users": [{"role": "ORG_ADMIN", "users": ["u-admin"]}]},
    }


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = SqlStore(store_url)
    s.init_schema()
    s.load(FIXTURE)
    yield s
    s.engine.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SqlStore:
    s = SqlStore(f"sqlite:///{tmp_path / 'handover.db'}")
    s.init_schema()
    s.load(FIXTURE)
    return s


def engine(store: SqlStore, *, audit_on: bool = True) -> Engine:
    return Engine(store, POLICY, EngineSettings(page_size=3, audit=audit_on))


def snapshot(store: SqlStore) -> dict[str, Any]:
    state: dict[str, Any] = {name: list(rows) for name, rows in store.dump_sections()}
    with store.connect() as conn:
        state["mentor_index"] = sorted(tuple(r) for r in conn.execute(sa.select(course_batch_mentor)))
    return state


def records(store: SqlStore) -> dict[str, dict[str, Any]]:
    doc = {name: list(rows) for name, rows in store.dump_sections()}
    out = {a["identifier"]: a for a in doc["assets"]}
    out.update({f"{b['courseid']}/{b['batchid']}": b for b in doc["course_batches"]})
    return out


def count_rows(store: SqlStore, table: sa.Table) -> int:
    with store.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# --- exact restore ------------------------------------------------------------------------------------


def test_transfer_then_undo_restores_every_kind_of_field(store: SqlStore) -> None:
    original = snapshot(store)
    outcome = engine(store).process(transfer("LP.1"))
    assert (outcome.outcome, outcome.changed_batches, outcome.changed_assets) == ("applied", 2, 8)
    fields = {(r["record_key"], r["field"]) for r in export(store, mid="LP.1")}
    assert ("do_leaf", "originData.creator.name") in fields  # an existing path is audited as that path
    assert {("do_none", "originData"), ("do_empty", "originData"), ("do_str", "originData")} <= fields
    assert ("do_set", "creatorName") in fields and ("c1/b1", "mentors") in fields
    assert snapshot(store) != original

    result = Undoer(store, page_size=2).undo_event("LP.1")

    assert (result.reverted, result.conflicts) == (len(fields), 0)
    assert snapshot(store) == original
    entry = _ledger_row(store, "undo:LP.1")
    assert entry["action"] == "undo" and entry["outcome"] == "applied" and entry["request_id"] == "req-1"
    assert json.loads(entry["detail"]) == {"undo_of": "LP.1", "reverted": len(fields), "conflicts": 0}
    assert (entry["changed_batches"], entry["changed_assets"]) == (2, 8)
    undo_rows = list(export(store, mid="undo:LP.1"))
    assert len(undo_rows) == len(fields)
    assert {(r["record_key"], r["field"]) for r in undo_rows} == fields


def test_undo_of_a_request_undoes_its_events_newest_first(sqlite_store: SqlStore) -> None:
    original = snapshot(sqlite_store)
    eng = engine(sqlite_store)
    eng.process(transfer("LP.1", asset="do_flat"))  # u-ann -> u-ravi, one asset and its image
    eng.process(transfer("LP.2", from_id="u-ravi", to_id="u-ann", asset="do_flat"))  # and back again
    eng.process(transfer("LP.3", asset="do_leaf"))
    result = Undoer(sqlite_store, page_size=1).undo_request("req-1")
    assert [e.mid for e in result.events] == ["LP.1", "LP.2", "LP.3"]
    assert result.conflicts == 0 and result.reverted > 0
    assert snapshot(sqlite_store) == original


def _ledger_row(store: SqlStore, mid: str) -> dict[str, Any]:
    with store.connect() as conn:
        row = conn.execute(sa.select(ledger).where(ledger.c.mid == mid)).mappings().one()
    return dict(row)


# --- conflicts, idempotence, refusals -------------------------------------------------------------------


def test_undo_leaves_records_changed_since_alone_and_reports_conflicts(store: SqlStore) -> None:
    engine(store).process(transfer("LP.1"))
    edited = json.loads(json.dumps(FIXTURE))
    b1 = next(b for b in edited["course_batches"] if b["batchid"] == "b1")
    b1.update(createdby="u-someone", mentors=["u-ravi"])  # someone else changed b1 after the transfer
    flat = next(a for a in edited["assets"] if a["identifier"] == "do_flat")
    flat.update(createdBy="u-ravi", creator="Edited by hand")
    store.load({"course_batches": [b1], "assets": [flat]})

    result = Undoer(store).undo_event("LP.1")

    event = result.events[0]
    assert event.conflicts == 2
    assert {(c["key"], c["field"]) for c in event.conflict_samples} == {("c1/b1", "createdby"), ("do_flat", "creator")}
    now = records(store)
    assert now["c1/b1"]["createdby"] == "u-someone"  # left alone
    assert now["c1/b1"]["mentors"] == ["u-ann", "u-ravi", "u-ann"]  # still held the transfer's value: reverted
    assert now["do_flat"]["creator"] == "Edited by hand"
    assert now["do_flat"]["createdBy"] == "u-ann"
    assert now["c1/b2"]["mentors"] == ["u-ann"]
    assert json.loads(_ledger_row(store, "undo:LP.1")["detail"])["conflicts"] == 2
    with store.connect() as conn:  # the mentor index follows the restored lists
        m = course_batch_mentor
        index = {tuple(r) for r in conn.execute(sa.select(m).where(m.c.batchid == "b1"))}
    assert index == {("u-ann", "c1", "b1"), ("u-ravi", "c1", "b1")}


def test_undoing_twice_changes_nothing_the_second_time(store: SqlStore) -> None:
    engine(store).process(transfer("LP.1"))
    undoer = Undoer(store)
    first = undoer.undo_event("LP.1")
    after_first = snapshot(store)
    counts = (count_rows(store, ledger), count_rows(store, audit))

    second = undoer.undo_event("LP.1")
    by_request = undoer.undo_request("req-1")

    assert second.events[0].already_undone and by_request.events[0].already_undone
    assert first.reverted > 0 and (second.reverted, second.conflicts) == (0, 0)  # nothing reverted now
    assert second.already_undone and second.message() == "already undone, 0 reverted"
    assert f"that undo reverted {first.reverted}" in second.events[0].note
    assert second.to_json()["alreadyUndone"] is True and not first.already_undone
    assert snapshot(store) == after_first
    assert (count_rows(store, ledger), count_rows(store, audit)) == counts


def test_undo_of_a_delete_user_event_is_refused(store: SqlStore) -> None:
    store.load({"users": [dict(ANN, isDeleted=True)]})
    outcome = engine(store).process(delete_user("LP.del"))
    assert outcome.outcome == "applied" and outcome.changed_assets > 0
    before = snapshot(store)
    with pytest.raises(NotUndoable, match="delete-user event: it cannot be undone"):
        Undoer(store).undo_event("LP.del")
    assert snapshot(store) == before
    with store.connect() as conn:
        assert conn.execute(sa.select(ledger.c.mid).where(ledger.c.mid == "undo:LP.del")).first() is None


def test_unknown_events_undos_and_unaudited_events_are_refused(sqlite_store: SqlStore) -> None:
    undoer = Undoer(sqlite_store)
    with pytest.raises(UnknownEvent, match=r"LP\.nope"):
        undoer.undo_event("LP.nope")
    with pytest.raises(UnknownEvent, match="req-nope"):
        undoer.undo_request("req-nope")
    engine(sqlite_store).process(transfer("LP.1", asset="do_flat"))
    undoer.undo_event("LP.1")
    with pytest.raises(NotUndoable, match="an undo cannot be undone"):
        undoer.undo_event("undo:LP.1")
    engine(sqlite_store, audit_on=False).process(transfer("LP.2", request_id="req-2", asset="do_leaf"))
    before = snapshot(sqlite_store)
    with pytest.raises(NotUndoable, match="no audit trail"):
        undoer.undo_event("LP.2")
    assert snapshot(sqlite_store) == before


def test_a_rejected_event_has_nothing_to_undo(sqlite_store: SqlStore) -> None:
    engine(sqlite_store).process(transfer("LP.1", to_id="u-unknown"))
    result = Undoer(sqlite_store).undo_event("LP.1")
    assert (result.reverted, result.conflicts, result.events[0].note) == (0, 0, "rejected: it changed nothing")


# --- privacy ------------------------------------------------------------------------------------------


def test_no_personal_value_of_a_deleted_user_appears_in_the_audit(store: SqlStore) -> None:
    """Ann is deleted (her names cleaned from her assets), then her assets go to Ravi: no audit column holds
    her first, last, login or display name, or the nested value that was cleaned."""
    store.load({"users": [dict(ANN, isDeleted=True)]})
    eng = engine(store)
    assert eng.process(delete_user("LP.del")).changed_assets == 8
    assert eng.process(transfer("LP.after")).outcome == "applied"  # from a deleted user: allowed
    with store.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(audit)).mappings()]
    assert {r["mid"] for r in rows} == {"LP.del", "LP.after"}
    deleted = [r for r in rows if r["mid"] == "LP.del"]
    assert all(r["before"] is None for r in deleted)
    assert {r["after"] for r in deleted} == {"Deleted User"}
    text = json.dumps(rows, default=str)
    for personal in ("Ann", "Lee", "ann_lee", "Ann L."):
        assert personal not in text


def test_a_deletion_redacts_the_names_audited_by_earlier_transfers(store: SqlStore) -> None:
    """Ann's assets go to Ravi while she exists (her name is the audited ``before``); then she is deleted: her
    names leave every audit row, and undoing the earlier transfer puts back the replacement, not her name."""
    eng = engine(store)
    assert eng.process(transfer("LP.before")).outcome == "applied"

    def audit_text() -> str:
        with store.connect() as conn:
            return json.dumps([dict(r) for r in conn.execute(sa.select(audit)).mappings()], default=str)

    assert "Ann Lee" in audit_text()  # the check below can fail
    store.load({"users": [dict(ANN, isDeleted=True)]})
    assert eng.process(delete_user("LP.del")).outcome == "applied"
    text = audit_text()
    for personal in ("Ann Lee", "ann_lee"):
        assert personal not in text
    with store.connect() as conn:
        moved = {r.record_key for r in conn.execute(sa.select(audit).where(audit.c.mid == "LP.before",
                                                                           audit.c.field == "creator"))}
    Undoer(store).undo_event("LP.before")
    creators = {a["creator"] for a in snapshot(store)["assets"] if a["identifier"] in moved}
    assert moved and creators == {"Deleted User"}  # not her name back


def test_an_undo_after_a_deletion_keeps_a_blank_text_blank(store: SqlStore) -> None:
    """Ann is deleted, then her assets go to Ravi and the transfer is undone: a creator text that was her name
    comes back as the replacement value, one that was blank comes back blank (no one's name to hide)."""
    store.load({"users": [dict(ANN, isDeleted=True)], "assets": [
        {"identifier": "do_blank", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": "", "originData": None},
        {"identifier": "do_spaces", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": "  ", "originData": None},
    ]})
    assert engine(store).process(transfer("LP.after")).outcome == "applied"
    creators = {a["identifier"]: a["creator"] for a in snapshot(store)["assets"]}
    assert creators["do_blank"] == creators["do_flat"] == "Ravi Kumar"  # the check below can fail
    Undoer(store).undo_event("LP.after")
    creators = {a["identifier"]: a["creator"] for a in snapshot(store)["assets"]}
    assert (creators["do_blank"], creators["do_spaces"], creators["do_flat"]) == ("", "  ", "Deleted User")


# --- paging -------------------------------------------------------------------------------------------


class PageSpy:
    """The store's own unit of work, with the sizes of the audit pages and record reads noted."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.sizes: list[int] = []

    def __call__(self) -> Any:
        uow = self.store()
        spy = self

        class Audit:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def page(self, **kwargs: Any) -> Any:
                page = self.inner.page(**kwargs)
                spy.sizes.append(len(page.records))
                return page

            def record(self, rows: Any) -> None:
                spy.sizes.append(len(rows))
                self.inner.record(rows)

        class Uow:
            def __enter__(self) -> Any:
                uow.__enter__()
                self.users, self.batches, self.assets = uow.users, uow.batches, uow.assets
                self.ledger, self.outbox, self.audit = uow.ledger, uow.outbox, Audit(uow.audit)
                self.reverts = None  # record by record: the path whose pages are counted
                return self

            def __exit__(self, *exc: Any) -> None:
                uow.__exit__(*exc)

            def commit(self) -> None:
                uow.commit()

            def lock_users(self, user_ids: Any) -> None:
                uow.lock_users(user_ids)

        return Uow()


def test_undo_reads_and_writes_the_audit_a_page_at_a_time(sqlite_store: SqlStore) -> None:
    many = [
        {"identifier": f"do_m{i:03}", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-ann", "creator": "Ann Lee", "originData": None}
        for i in range(120)
    ]
    sqlite_store.load({"assets": many})
    original = snapshot(sqlite_store)
    engine(sqlite_store).process(transfer("LP.big"))
    spy = PageSpy(sqlite_store)
    result = Undoer(spy, page_size=25).undo_event("LP.big")
    assert result.reverted == count_rows(sqlite_store, audit) // 2
    assert max(spy.sizes) == 25 and len(spy.sizes) > 2 * (result.reverted // 25)
    assert snapshot(sqlite_store) == original


def test_event_changes_pages_and_shows_the_undo(sqlite_store: SqlStore) -> None:
    engine(sqlite_store).process(transfer("LP.1"))
    seen: list[dict[str, Any]] = []
    cursor = None
    with sqlite_store() as uow:
        while True:
            page = event_changes(uow, "LP.1", cursor=cursor, limit=4)
            assert len(page["changes"]) <= 4 and page["undone"] is False
            seen.extend(page["changes"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        with pytest.raises(ValueError, match="bad audit cursor"):
            event_changes(uow, "LP.1", cursor="x'; drop table audit")
    assert len(seen) == len(list(export(sqlite_store, mid="LP.1"))) == 19  # 3 batch fields, 2 per asset
    Undoer(sqlite_store).undo_event("LP.1")
    with sqlite_store() as uow:
        assert event_changes(uow, "LP.1", limit=1)["undone"] is True
