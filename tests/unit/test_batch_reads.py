"""The writes a micro-batch keeps (``service.batch_reads``): each record's updates of the batch merged into one
write whose effect on the SQL store is that of the updates one after the other."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from handover.adapters.sql import SqlStore, course_batch_mentor
from handover.domain.rules import AssetUpdate, BatchUpdate, FieldChange
from handover.service.batch_reads import merge_asset_updates, merge_batch_updates

ASSET = {"identifier": "do_1", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-a", "creator": "A", "originData": None}
BATCH = {"courseid": "c1", "batchid": "b1", "name": "B1", "status": 1, "createdby": "u-a",
         "mentors": ["u-a", "u-x"]}


@pytest.fixture
def stores(tmp_path: Any) -> Iterator[tuple[SqlStore, SqlStore]]:
    """Two stores with the same records: one written update by update, one with the merged update."""
    pair = []
    for name in ("one", "merged"):
        store = SqlStore(f"sqlite:///{tmp_path / name}.db")
        store.init_schema()
        store.load({"assets": [dict(ASSET, extra_field="x")], "course_batches": [BATCH]})
        pair.append(store)
    yield pair[0], pair[1]
    for store in pair:
        store.engine.dispose()


def state(store: SqlStore) -> dict[str, Any]:
    """The records, and the mentor index the batch writes keep (``course_batch_mentor``)."""
    with store.connect() as conn:
        index = sorted(tuple(r) for r in conn.execute(sa.select(course_batch_mentor)))
    return {**{name: list(rows) for name, rows in store.dump_sections()}, "mentor_index": index}


def test_merged_updates_write_what_the_updates_write_in_turn(stores: tuple[SqlStore, SqlStore]) -> None:
    one, merged = stores
    assets = [
        AssetUpdate("do_1", "Question", {"createdBy": "u-b", "creator": "B", "extra_field": None},
                    (FieldChange("createdBy", "u-a", "u-b"),)),
        AssetUpdate("do_1", "Question", {"creator": "C", "extra_field": "y", "status": "Draft"},
                    (FieldChange("creator", "B", "C"),)),
    ]
    batches = [
        BatchUpdate("c1", "b1", "u-b", ("u-b", "u-x"), (FieldChange("createdby", "u-a", "u-b"),
                                                        FieldChange("mentors", ["u-a", "u-x"], ["u-b", "u-x"]))),
        BatchUpdate("c1", "b1", None, ("u-b", "u-c"), (FieldChange("mentors", ["u-b", "u-x"], ["u-b", "u-c"]),)),
    ]
    with one() as uow:
        for asset_update, batch_update in zip(assets, batches, strict=True):
            uow.assets.write([asset_update])
            uow.batches.write([batch_update])
        uow.commit()
    with merged() as uow:
        uow.assets.write([merge_asset_updates(*assets)])
        uow.batches.write([merge_batch_updates(*batches)])
        uow.commit()
    assert state(merged) == state(one)
    (asset,) = state(one)["assets"]
    assert (asset["createdBy"], asset["creator"], asset["status"]) == ("u-b", "C", "Draft")
    assert asset.get("extra_field") == "y"
    (batch,) = state(one)["course_batches"]
    assert (batch["createdby"], batch["mentors"]) == ("u-b", ["u-b", "u-c"])
    assert [r[0] for r in state(merged)["mentor_index"]] == ["u-b", "u-c"]
