"""The SQLite store keeps a connection per concurrent unit of work in its pool (``SQLITE_POOL_SIZE``, as many as
the API's thread pool has threads): concurrent requests reuse them instead of opening and closing connections
(each new one sets its pragmas and reads the schema again; issue 15)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from handover.adapters.sql import SqlStore
from handover.adapters.sql_schema import SQLITE_POOL_SIZE

CONCURRENT = 30  # below SQLITE_POOL_SIZE, above SQLAlchemy's default pool (5 + 10 overflow)


def test_concurrent_readers_reuse_the_pooled_connections(tmp_path: Path) -> None:
    assert CONCURRENT <= SQLITE_POOL_SIZE
    store = SqlStore(f"sqlite:///{tmp_path / 'h.db'}")
    store.init_schema()
    store.engine.dispose()
    opened: list[int] = []
    sa.event.listen(store.engine, "connect", lambda *_: opened.append(1))
    barrier = threading.Barrier(CONCURRENT, timeout=20)  # every reader holds its connection at the same time

    def read(_: int) -> int:
        with store.reader.connect() as conn:
            barrier.wait()
            return int(conn.exec_driver_sql("SELECT count(*) FROM users").scalar_one())

    with ThreadPoolExecutor(CONCURRENT) as pool:
        for _ in range(3):
            assert list(pool.map(read, range(CONCURRENT))) == [0] * CONCURRENT
    assert len(opened) == CONCURRENT  # opened in the first round, reused in the next two
