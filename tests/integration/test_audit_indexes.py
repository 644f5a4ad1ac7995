"""The indexes that find a deleted user's names in the audit (``SqlAudit.recorded_names`` / ``redact``): on SQLite
on the JSON text of ``before``/``after``; on PostgreSQL a B-tree on its md5 (a hash index there made each insert
of a transfer's many equal values walk an overflow chain: a 200,000-asset transfer took 122 s instead of 7.5 s in
bench/bulk_transfer.py), and ``init`` drops the hash indexes an earlier version created. Both stores: the query
plan of the look-up uses the index."""

from __future__ import annotations

import sqlalchemy as sa

from handover.adapters.sql import SqlStore


def index_definitions(store: SqlStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = "
                                        "current_schema() AND tablename = 'audit'"))
        else:
            rows = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                        "AND tbl_name = 'audit'"))
        return {name: sql or "" for name, sql in rows}


def test_the_audit_text_indexes_and_their_use(store_url: str) -> None:
    store = SqlStore(store_url)
    store.init_schema()
    pg = store.engine.dialect.name == "postgresql"
    if pg:  # as an earlier version left it
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_audit_before_md5"))
            conn.execute(sa.text("CREATE INDEX ix_audit_before_text ON audit USING hash (CAST(before AS TEXT))"))
        store.init_schema()
    defined = index_definitions(store)
    if pg:
        assert "ix_audit_before_text" not in defined and "ix_audit_after_text" not in defined
        for side in ("before", "after"):
            assert "USING btree (md5((" + side + ")::text))" in defined[f"ix_audit_{side}_md5"], defined
        lookup = "EXPLAIN SELECT id FROM audit WHERE md5(CAST(before AS TEXT)) IN (md5('\"u-x\"'))"
    else:
        assert 'CAST("before" AS TEXT)' in defined["ix_audit_before_text"], defined
        assert 'CAST("after" AS TEXT)' in defined["ix_audit_after_text"], defined
        lookup = "EXPLAIN QUERY PLAN SELECT id FROM audit WHERE CAST(before AS TEXT) IN ('\"u-x\"')"
    with store.engine.connect() as conn:
        if pg:
            conn.execute(sa.text("SET enable_seqscan = off"))  # an empty table: the plan, not the cost, is checked
        plan = " ".join(str(row[-1]) for row in conn.execute(sa.text(lookup)))
    assert "ix_audit_before_" in plan, plan
