"""What a fresh clone holds: no store of anyone's run (``handover.db`` and SQLite's ``-wal`` / ``-shm`` / ``-journal``
side files, which ``scripts/run.sh`` creates in the project folder). A stale ``-shm`` beside a new ``handover.db``
is at best noise in ``git status``; ``.gitignore`` keeps them out."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STORE_FILES = ("*.db", "*.db-wal", "*.db-shm", "*.db-journal")


def test_no_store_files_are_tracked() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    stores = [f for f in tracked.splitlines() if any(fnmatch.fnmatch(Path(f).name, p) for p in STORE_FILES)]
    assert stores == []


def test_gitignore_keeps_them_out() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert all(pattern in ignored for pattern in STORE_FILES), ignored
