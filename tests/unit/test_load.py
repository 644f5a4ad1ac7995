"""``SqlStore.load`` (``handover load``): a key given twice loads once, the last one (its mentor index too); a
string no store can keep is refused with the record and field named, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from handover.adapters.sql import SqlStore, course_batch_mentor


def test_a_key_given_twice_loads_the_last(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'h.db'}")
    store.init_schema()
    batch = {"courseid": "c", "batchid": "b", "name": "", "status": 1, "createdby": "u1"}
    counts = store.load({"course_batches": [{**batch, "mentors": ["u1", "u2"]}, {**batch, "mentors": ["u2", "u3"]}],
                         "assets": [{"identifier": "do_1", "objectType": "Question", "creator": "A"},
                                    {"identifier": "do_1", "objectType": "Question", "creator": "B"}]})
    assert counts == {"users": 0, "course_batches": 2, "assets": 2}  # the records read
    dump = {name: list(rows) for name, rows in store.dump_sections()}
    assert [b["mentors"] for b in dump["course_batches"]] == [["u2", "u3"]]
    assert [a["creator"] for a in dump["assets"]] == ["B"]
    with store.engine.connect() as conn:
        assert sorted(r.userid for r in conn.execute(sa.select(course_batch_mentor))) == ["u2", "u3"]


@pytest.mark.parametrize(("bad", "message"), [
    ("x\x00", "asset: creator contains a NUL character"),
    ("\ud800", "asset: creator contains a lone surrogate"),
])
def test_a_string_no_store_can_keep_is_refused(tmp_path: Path, bad: str, message: str) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'h.db'}")
    store.init_schema()
    good = {"identifier": "do_1", "objectType": "Question", "creator": "A"}
    with pytest.raises(ValueError, match=message):
        store.load({"assets": [good, {"identifier": "do_2", "objectType": "Question", "creator": bad}]})
    assert {name: list(rows) for name, rows in store.dump_sections()}["assets"] == []
