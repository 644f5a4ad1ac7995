"""The SQLite writers of several processes take turns (``sql_schema._WriterTurns``: a thread lock per process, then
an exclusive ``flock`` of ``<database>-turns``), as ``handover serve --workers N`` and its queue worker need:
another process's turn is waited for (not SQLite's busy wait), a wait of 0 does not wait, a forked process takes
turns of its own, and where the lock file cannot be made a process still takes turns among its threads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from handover.adapters.sql_schema import _WriterTurns, create_engine

HOLD = """
import sys, time
from handover.adapters.sql_schema import _WriterTurns
turns = _WriterTurns(sys.argv[1])
turns.take("other process", 30)
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
turns.give_back("other process")
print("released", flush=True)
"""


def holding(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that holds the turn of ``path`` for ``seconds`` (and no SQLite lock)."""
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE,
                             text=True)
    assert other.stdout is not None
    assert other.stdout.readline().strip() == "holding"
    return other


def test_a_write_waits_for_another_processs_turn(tmp_path: Path) -> None:
    path = tmp_path / "handover.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    other = holding(path.resolve(), 1.0)
    started = time.monotonic()
    with engine.begin() as conn:  # BEGIN IMMEDIATE only once the other process gave its turn back
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    waited = time.monotonic() - started
    assert other.wait(10) == 0
    assert other.stdout is not None and other.stdout.read().strip() == "released"
    assert waited >= 0.5, waited  # the other process held no SQLite lock: only the turn made this write wait
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
    assert (tmp_path / "handover.db-turns").exists()
    engine.dispose()


def test_a_wait_of_zero_does_not_wait_for_another_process(tmp_path: Path) -> None:
    path = (tmp_path / "handover.db").resolve()
    other = holding(path, 5.0)
    try:
        turns = _WriterTurns(str(path))
        started = time.monotonic()
        turns.take("mine", 0.0)
        assert time.monotonic() - started < 1.0
        assert turns._holder is None  # went on without a turn: SQLite's lock decides
        turns.give_back("mine")  # nothing to give back: no error
    finally:
        other.kill()
        other.wait()
    turns.take("mine", 0.0)  # the kernel dropped the killed process's lock
    assert turns._holder is not None
    turns.give_back("mine")


def test_a_forked_process_takes_turns_of_its_own(tmp_path: Path) -> None:
    """``flock`` belongs to an open file, which a fork shares: the child opens the lock file again, so the
    parent's turn keeps it out."""
    turns = _WriterTurns(str((tmp_path / "handover.db").resolve()))
    turns.take("parent", 1.0)
    turns.give_back("parent")  # the lock file is open in the parent now
    pid = os.fork()
    if pid == 0:  # the child: wait until the parent holds the turn again, then try without waiting
        time.sleep(0.5)
        turns.take("child", 0.0)
        os._exit(0 if turns._holder is None else 1)
    turns.take("parent", 1.0)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        turns.give_back("parent")
    assert os.waitstatus_to_exitcode(status) == 0  # the child did not get the parent's turn


def test_without_a_lock_file_the_threads_of_a_process_still_take_turns(tmp_path: Path) -> None:
    turns = _WriterTurns(str(tmp_path / "no-such-directory" / "handover.db"))
    turns.take("first", 1.0)
    assert turns._holder is not None
    first = turns._holder
    turns.take("second", 0.0)  # the first still holds this process's turn
    assert turns._holder == first
    turns.give_back("second")  # not its turn: nothing given back
    turns.give_back("first")
    turns.take("second", 0.0)
    assert turns._holder is not None
    turns.give_back("second")
