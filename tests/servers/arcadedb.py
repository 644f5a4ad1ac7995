"""ArcadeDB (PyPI ``arcadedb-embedded``, which bundles its own Java runtime and the Bolt plugin): a real graph
database that speaks Bolt and Cypher. It is not Neo4j: where it differs, a test shows it with the reason."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.servers.arcadedb_main import DATABASE, PASSWORD
from tests.servers.process import ROOT, ServerProcess, free_port, listening

USER = "root"

__all__ = ["DATABASE", "PASSWORD", "USER", "arcadedb_server", "problem"]


def problem() -> str | None:
    try:
        import arcadedb_embedded  # noqa: F401
    except Exception as exc:
        return f"arcadedb-embedded is not installed (dev extra): {exc}"
    return None


def arcadedb_server(directory: Path) -> ServerProcess:
    """A not-yet-started ArcadeDB; ``.port`` is its Bolt port (user ``root``, password ``PASSWORD``)."""
    http, bolt = free_port(), free_port()
    log = directory / "arcadedb.log"
    argv = [sys.executable, "-m", "tests.servers.arcadedb_main", str(directory / "databases"), str(http), str(bolt)]

    def ready() -> bool:
        return listening(bolt) and "ready" in log.read_text(errors="replace")

    # ArcadeDB writes its own log files under ./log: run it in the test's directory, the project on the path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return ServerProcess("arcadedb", argv, log, ready, port=bolt, cwd=directory, env=env)
