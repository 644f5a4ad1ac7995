"""A deleted user's names leave the audit and never come back with an undo, and one deletion email per deleted user
(issue 13 items 10, 11; SPEC 2.3, SPEC 10), on SQLite and PostgreSQL. The user directory here has already blanked
the deleted user's names when the delete-user event arrives, as Lern's user-deletion-cleanup job does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from handover.adapters.sql import SqlStore, audit
from handover.domain.rules import get_path
from handover.service.undo import Undoer
from tests.unit.test_undo import ANN, FIXTURE, delete_user, engine, records, transfer

BLANKED = dict(ANN, firstName="", lastName="", userName="", isDeleted=True)  # the directory after the cleanup job
ANN_NAMES = ("Ann Lee", "Ann", "ann_lee")  # her display name, a shorter creator name, her login


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = SqlStore(store_url)
    s.init_schema()
    s.load(FIXTURE)
    yield s
    s.engine.dispose()


def audit_values(store: SqlStore) -> list[str]:
    """The text values of every audit row (before and after)."""
    with store.connect() as conn:
        return [v for r in conn.execute(sa.select(audit.c.before, audit.c.after)) for v in r if isinstance(v, str)]


def notifications(store: SqlStore) -> list[dict[str, Any]]:
    return [dict(n) for name, rows in store.dump_sections() for n in rows if name == "notifications"]


@pytest.mark.parametrize("user_name", ["ann_lee", None], ids=["event-names-her", "event-without-userName"])
def test_names_a_transfer_replaced_are_redacted_without_the_directory(store: SqlStore, user_name: str | None) -> None:
    eng = engine(store)
    assert eng.process(transfer("LP.from-ann")).outcome == "applied"  # her names are the audited `before`
    assert set(ANN_NAMES) & set(audit_values(store))  # the check below can fail
    store.load({"users": [BLANKED]})
    event = delete_user("LP.del")
    if user_name is None:
        del event["edata"]["userName"]
    assert eng.process(event).outcome == "applied"
    values = audit_values(store)
    assert not set(ANN_NAMES) & set(values)
    assert "Deleted User" in values


def test_names_a_transfer_wrote_for_her_and_undo_rows_are_redacted(store: SqlStore) -> None:
    """Ravi's asset goes to Ann (her display name is the audited `after`), that transfer is undone (the undo's rows
    hold her name as `before`), then another transfer to her, then her deletion."""
    eng = engine(store)
    assert eng.process(transfer("LP.to-ann", "r1", "u-ravi", "u-ann")).changed_assets == 1
    Undoer(store).undo_event("LP.to-ann")
    assert eng.process(transfer("LP.to-ann-2", "r2", "u-ravi", "u-ann")).changed_assets == 1
    assert "Ann Lee" in audit_values(store)
    store.load({"users": [BLANKED]})
    assert eng.process(delete_user("LP.del")).outcome == "applied"
    assert "Ann Lee" not in audit_values(store)
    assert "Ravi Kumar" in audit_values(store)  # another user's name stays


@pytest.mark.parametrize("deleted_by_event", [False, True], ids=["directory-only", "after-delete-user-event"])
def test_undo_never_writes_a_deleted_users_name_back(store: SqlStore, deleted_by_event: bool) -> None:
    eng = engine(store)
    assert eng.process(transfer("LP.1")).outcome == "applied"
    store.load({"users": [BLANKED]})
    if deleted_by_event:  # her assets are Ravi's now: the event cleans none, but redacts the audit
        assert eng.process(delete_user("LP.del")).changed_assets == 0
    result = Undoer(store).undo_event("LP.1")
    assert result.reverted > 0 and result.conflicts == 0
    after = records(store)
    with store.connect() as conn:
        changed = {(r.record_key, r.field) for r in conn.execute(sa.select(audit).where(audit.c.mid == "LP.1",
                                                                                             audit.c.store == "asset"))}
    written = {f"{key} {field}": get_path(after[key], field.split(".")) for key, field in changed}
    assert len({key for key, _ in changed}) == 8  # every configured asset of hers was transferred and comes back
    text = json.dumps(written)
    for name in ("Ann Lee", "Ann L.", '"Ann"'):
        assert name not in text, name
    assert after["do_flat"]["creator"] == "Deleted User"
    assert after["do_str"]["originData"] == {"creator": "Deleted User"}  # a text on the way to the PII path
    assert after["do_leaf"]["originData"] == {"creator": {"name": None, "id": 1}, "x": 2}  # nothing of hers


def test_undo_restores_the_name_of_a_user_who_is_not_deleted(store: SqlStore) -> None:
    eng = engine(store)
    assert eng.process(transfer("LP.1")).outcome == "applied"
    Undoer(store).undo_event("LP.1")
    after = records(store)
    assert (after["do_flat"]["creator"], after["do_str"]["originData"]) == ("Ann Lee", {"creator": "Ann L."})


def test_one_deletion_email_per_deleted_user(store: SqlStore) -> None:
    store.load({"users": [BLANKED]})
    eng = engine(store)
    first = eng.process(delete_user("LP.del-1"))
    assert first.changed_assets > 0
    (note,) = notifications(store)
    assert note["mid"] == "LP.del-1" and "do_flat" in note["assets"]
    # the same user deleted again (new mid): nothing of hers is changed, nobody is mailed
    assert eng.process(delete_user("LP.del-2")).outcome == "applied"
    assert eng.process(delete_user("LP.del-3")).outcome == "applied"
    assert [n["mid"] for n in notifications(store)] == ["LP.del-1"]


def test_a_later_deletion_mails_only_what_it_changed(store: SqlStore) -> None:
    store.load({"users": [BLANKED]})
    eng = engine(store)
    eng.process(delete_user("LP.del-1"))
    # an asset of hers that the first clean-up did not see (imported later, her name on it)
    store.load({"assets": [{"identifier": "do_late", "objectType": "Question", "schemaVersion": "1.1",
                            "status": "Live", "visibility": "Default", "createdBy": "u-ann", "creator": "Ann Lee",
                            "originData": None}]})
    eng.process(delete_user("LP.del-2"))
    second = [n for n in notifications(store) if n["mid"] == "LP.del-2"]
    assert second and second[0]["assets"] == {"do_late": "Live"}


def audit_rows(store: SqlStore) -> list[tuple[Any, ...]]:
    """Every audit row but its time, by id."""
    with store.connect() as conn:
        a = audit
        query = sa.select(a.c.id, a.c.mid, a.c.store, a.c.record_key, a.c.field, sa.cast(a.c.before, sa.Text),
                          sa.cast(a.c.after, sa.Text)).order_by(a.c.id)
        return [tuple(r) for r in conn.execute(query)]


def test_a_micro_batch_redacts_as_its_events_one_at_a_time(tmp_path: Any) -> None:
    """Transfers and clean-ups in one micro-batch (``Engine.process_batch``: the audit rows of its transfers are not
    yet written when its clean-ups read the names, and the store's rows are redacted once for all of them) leave the
    audit, the assets and the emails as the same events processed one at a time: the names a transfer in the same
    micro-batch recorded are redacted too, those written after a clean-up are not."""
    events = [
        transfer("LP.from-ann", "r1", asset="do_flat"),  # her names: the `before` of rows not yet written
        delete_user("LP.del"),  # cleans her other assets: one email
        transfer("LP.ravi-to-ann", "r2", "u-ravi", "u-ann"),  # rejected: she is deleted
        transfer("LP.back", "r3", "u-ravi", "u-x"),  # names written after the deletion stay
        delete_user("LP.del-2"),  # again: nothing of hers left, nobody mailed
    ]
    results = []
    for name, batch in (("one", False), ("batch", True)):
        s = SqlStore(f"sqlite:///{tmp_path / name}.db")  # the held audit is SQLite's (its read-ahead)
        s.init_schema()
        s.load(FIXTURE)
        eng = engine(s)
        assert eng.process(transfer("LP.to-ann", "r0", "u-ravi", "u-ann")).changed_assets == 1  # already stored
        audit_rows_before = audit_rows(s)
        s.load({"users": [BLANKED, {**BLANKED, "id": "u-x", "userName": "x", "isDeleted": False}]})
        if batch:
            outcomes = eng.process_batch([json.dumps(e) for e in events])
        else:
            outcomes = [eng.process(json.dumps(e)) for e in events]
        results.append(([(o.outcome, o.changed_assets) for o in outcomes], audit_rows(s), records(s),
                        notifications(s)))
        s.engine.dispose()
    one, batched = results
    assert [o for o, _ in one[0]] == ["applied", "applied", "rejected", "applied", "applied"]
    values = [json.loads(v) for row in batched[1] for v in row[5:] if v]
    assert "Ann Lee" in [json.loads(v) for row in audit_rows_before for v in row[5:] if v]  # the check can fail
    assert not set(ANN_NAMES) & {v for v in values if isinstance(v, str)}
    assert len(batched[3]) == 1
    assert batched[:3] == one[:3]
    assert [{k: v for k, v in n.items() if k != "created_at"} for n in batched[3]] == \
        [{k: v for k, v in n.items() if k != "created_at"} for n in one[3]]
