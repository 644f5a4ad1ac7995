"""``SqlStore.load`` (``handover load``): a key given twice loads once, the last one (its mentor index too); a
string no store can keep is refused with the record and field named, and nothing is written."""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from handover.adapters.sql import SqlStore, course_batch_mentor
from handover.service.json_stream import JsonObjectStream, JsonStreamError, load_fixture


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


# --- a fixture read as a stream (``handover load``): written in chunks, in one transaction -----------------------

def asset_doc(n: int, creator: str = "A") -> dict[str, Any]:
    return {"identifier": f"do_{n}", "objectType": "Question", "creator": creator}


def batch_doc(n: int, mentors: list[str]) -> dict[str, Any]:
    return {"courseid": "c", "batchid": f"b{n}", "name": "", "status": 1, "createdby": "u1", "mentors": mentors}


def streamed_load(store: SqlStore, text: str, chunk_size: int = 2) -> dict[str, int]:
    return load_fixture(partial(store.load, chunk_size=chunk_size), io.BytesIO(text.encode()))


def dumped(store: SqlStore) -> dict[str, list[dict[str, Any]]]:
    return {name: list(rows) for name, rows in store.dump_sections()}


def mentor_rows(store: SqlStore) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return sorted((r.batchid, r.userid) for r in conn.execute(sa.select(course_batch_mentor)))


def new_store(tmp_path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / 'h.db'}")
    store.init_schema()
    return store


def test_a_key_given_twice_across_chunks_loads_the_last_and_the_counts_are_of_the_records_read(
        tmp_path: Path) -> None:
    store = new_store(tmp_path)
    batches = [batch_doc(1, ["u1", "u2"]), batch_doc(2, ["u1"]), batch_doc(3, []), batch_doc(1, ["u3"]),
               batch_doc(2, ["u4", "u4"])]  # chunks of 2: b1 and b2 again in the second and third chunks
    assets = [asset_doc(1), asset_doc(2), asset_doc(3), asset_doc(1, "B"), asset_doc(4), asset_doc(4, "C")]
    users = [{"id": "u1", "firstName": "One"}, {"id": "u2"}, {"id": "u1", "firstName": "Again"}]
    text = json.dumps({"course_batches": batches, "notifications": [{"mid": "m"}] * 3, "assets": assets,
                       "users": users})
    counts = streamed_load(store, text)
    assert counts == {"users": 3, "course_batches": 5, "assets": 6}
    # the same as the whole document loaded at once, as before
    (tmp_path / "whole").mkdir()
    whole = new_store(tmp_path / "whole")
    assert whole.load(json.loads(text)) == counts
    assert dumped(store) == dumped(whole)
    assert mentor_rows(store) == mentor_rows(whole) == [("b1", "u3"), ("b2", "u4")]
    assert [a["creator"] for a in dumped(store)["assets"]] == ["B", "A", "A", "C"]
    assert [u["firstName"] for u in dumped(store)["users"]] == ["Again", ""]


@pytest.mark.parametrize("bad", [
    ("assets", {"identifier": "do_9", "objectType": "Question", "creator": "x\x00"},
     "asset: creator contains a NUL character"),
    ("assets", 7, "fixture 'assets' must be a list of objects"),
    ("course_batches", {"courseid": "c", "batchid": "b9", "status": "open"},
     "course batch c/b9: 'status' must be an integer"),
])
def test_a_bad_record_after_the_first_chunk_writes_nothing(tmp_path: Path, bad: tuple[str, Any, str]) -> None:
    store = new_store(tmp_path)
    store.load({"assets": [asset_doc(1, "before")], "course_batches": [batch_doc(1, ["u0"])]})
    before, mentors = dumped(store), mentor_rows(store)
    key, record, message = bad
    doc: dict[str, Any] = {"course_batches": [batch_doc(n, ["u1"]) for n in range(1, 6)],
                           "assets": [asset_doc(n, "after") for n in range(1, 6)]}
    doc[key].append(record)
    with pytest.raises(ValueError, match=message):
        streamed_load(store, json.dumps(doc))
    assert dumped(store) == before and mentor_rows(store) == mentors


def test_a_text_that_is_not_json_wins_over_a_bad_record_before_it_and_writes_nothing(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    good = json.dumps({"users": [{"id": "u1"}], "assets": [asset_doc(n) for n in range(5)]})
    for text in (good[:-1], good + " x", good[:-2] + ",]}", '{"assets": [{"identifier": 7}, ' + good[12:-1]):
        with pytest.raises(JsonStreamError) as streamed:
            streamed_load(store, text)
        with pytest.raises(json.JSONDecodeError) as whole:
            json.loads(text)
        assert str(streamed.value) == str(whole.value)
        assert dumped(store) == {"users": [], "course_batches": [], "assets": [], "notifications": []}


@pytest.mark.parametrize("text", ["[]", "7", '{"users": {}}', '{"users": [1]}', '{"assets": null}'])
def test_a_fixture_of_the_wrong_shape_is_refused_as_before(tmp_path: Path, text: str) -> None:
    store = new_store(tmp_path)
    with pytest.raises(ValueError) as whole:
        store.load(json.loads(text))
    with pytest.raises(ValueError) as streamed:
        streamed_load(store, text)
    assert str(streamed.value) == str(whole.value)


def test_a_key_of_the_fixture_given_twice_counts_as_json_loads_reads_it(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    text = ('{"assets": [' + json.dumps(asset_doc(1)) + ", " + json.dumps(asset_doc(2)) + ', {"bad": 1}], '
            '"assets": [' + json.dumps(asset_doc(3)) + "]}")  # json.loads keeps the second list only
    assert streamed_load(store, text) == {"users": 0, "course_batches": 0, "assets": 1}
    assert [a["identifier"] for a in dumped(store)["assets"]] == ["do_3"]


@pytest.mark.parametrize(("bad", "message"), [
    ("x\x00", "asset: creator contains a NUL character"),
    ("\ud800", "asset: creator contains a lone surrogate"),
    ("\U0001f600\ud800", "asset: creator contains a lone surrogate"),
])
@pytest.mark.parametrize("block", [3, 64, 1 << 20])
def test_a_string_no_store_can_keep_in_a_later_chunk_of_a_stream_is_refused(
        tmp_path: Path, bad: str, message: str, block: int) -> None:
    store = new_store(tmp_path)
    assets = [asset_doc(n, "é\U0001f600") for n in range(7)] + [asset_doc(8, bad)] + [asset_doc(9)]
    text = json.dumps({"assets": assets})  # the escapes \\u0000, \\ud800, \\ud83d\\ude00 in the text
    with pytest.raises(ValueError, match=message):
        store.load(JsonObjectStream(io.BytesIO(text.encode()), block=block), chunk_size=2)
    assert dumped(store)["assets"] == []
    good = json.dumps({"assets": assets[:7]}, ensure_ascii=False)
    store.load(JsonObjectStream(io.BytesIO(good.encode()), block=block), chunk_size=2)
    assert {a["creator"] for a in dumped(store)["assets"]} == {"é\U0001f600"}
