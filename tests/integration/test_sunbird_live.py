"""``--store sunbird://`` end to end against real servers, through the CLI: create the schema, load the example
fixture, replay the example events, compare with the expected report and records.

Runs only when all three are set, else skips saying which are missing (no such servers exist on the machine
this was written on, so this test has never run):

    HANDOVER_TEST_CASSANDRA      host:port                  e.g. 127.0.0.1:9042
    HANDOVER_TEST_ELASTICSEARCH  es.basePath                e.g. http://127.0.0.1:9200 (7.x or later)
    HANDOVER_TEST_NEO4J          bolt URI, maybe user:pass  e.g. bolt://neo4j:secret@127.0.0.1:7687

Everything is created under fresh names (keyspaces, index, graph label) and dropped afterwards, so a shared test
deployment is not disturbed. Users are read from userorg: ``HANDOVER_TEST_USERORG`` (its base URL; the fixture's
users must exist there), else a local server answering as userorg does with the fixture's users.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from handover.adapters.sunbird import SunbirdStore
from handover.config import load_settings
from handover.domain.model import user_from_json
from handover.entrypoints.cli import app
from tests.conftest import EXAMPLES, UPSTREAM
from tests.integration.userorg_server import FakeUserOrg, serve

SERVERS = ("HANDOVER_TEST_CASSANDRA", "HANDOVER_TEST_ELASTICSEARCH", "HANDOVER_TEST_NEO4J")
missing = [name for name in SERVERS if not os.environ.get(name)]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"needs real Cassandra, Elasticsearch and Neo4j servers: {', '.join(missing)} not set"
)

FIXTURE = json.loads((EXAMPLES / "fixture.json").read_text())
EXPECTED_DUMP = json.loads((EXAMPLES / "expected_dump.json").read_text())


def neo4j_env(uri: str) -> dict[str, str]:
    """``bolt://user:pass@host:port`` to the neo4j.* settings."""
    parts = urlsplit(uri)
    env = {"HANDOVER_NEO4J_ROUTEPATH": f"{parts.scheme}://{parts.hostname}:{parts.port or 7687}"}
    if parts.username:
        env["HANDOVER_NEO4J_USER"] = parts.username
        env["HANDOVER_NEO4J_PASSWORD"] = parts.password or ""
    return env


def index_definition() -> tuple[dict[str, Any], dict[str, Any]]:
    """The LMS mapping and settings of ``course-batch``. Elasticsearch 7+ refuses the settings' 1-20 ngram
    filter unless ``index.max_ngram_diff`` allows it; test indexes get one shard and no replica."""
    mapping = json.loads((UPSTREAM / "lms" / "course-batch-mapping.json").read_text())
    settings = json.loads((UPSTREAM / "lms" / "course-batch-settings.json").read_text())["settings"]
    settings["index"].update(number_of_shards="1", number_of_replicas="0", max_ngram_diff="19")
    return mapping, settings


@pytest.fixture
def live_env() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:8]
    host, _, port = os.environ["HANDOVER_TEST_CASSANDRA"].rpartition(":")
    env = {
        "HANDOVER_LMS_CASSANDRA_HOST": host or "127.0.0.1",
        "HANDOVER_LMS_CASSANDRA_PORT": port or "9042",
        "HANDOVER_LMS_CASSANDRA_KEYSPACE": f"ho_test_lms_{tag}",
        "HANDOVER_HANDOVER_CASSANDRA_KEYSPACE": f"ho_test_{tag}",
        "HANDOVER_ES_BASEPATH": os.environ["HANDOVER_TEST_ELASTICSEARCH"],
        "HANDOVER_ES_COURSE_BATCH_INDEX": f"ho-test-course-batch-{tag}",
        "HANDOVER_NEO4J_GRAPH": f"ho_test_{tag}",
        "HANDOVER_THRESHOLD_BATCH_WRITE_SIZE": "2",  # several groups for three batches
        "HANDOVER_PAGE_SIZE": "2",  # several pages of hits and of nodes
        **neo4j_env(os.environ["HANDOVER_TEST_NEO4J"]),
    }
    with ExitStack() as stack:
        if os.environ.get("HANDOVER_TEST_USERORG"):
            env["HANDOVER_USERORG_SERVICE_BASE_URL"] = os.environ["HANDOVER_TEST_USERORG"]
        else:
            fake = FakeUserOrg()
            fake.add(*(user_from_json(u) for u in FIXTURE["users"]))
            env["HANDOVER_USERORG_SERVICE_BASE_URL"] = stack.enter_context(serve(fake))
        store = SunbirdStore(load_settings(None, environ=env))
        store.cassandra.init_course_batch_table()  # the LMS owns these on a deployment
        store.index.create_index(*index_definition())
        try:
            yield env
        finally:
            store.cassandra.execute_plain(
                f"DROP KEYSPACE IF EXISTS {env['HANDOVER_LMS_CASSANDRA_KEYSPACE']}", "cleanup"
            )
            store.cassandra.execute_plain(
                f"DROP KEYSPACE IF EXISTS {env['HANDOVER_HANDOVER_CASSANDRA_KEYSPACE']}", "cleanup"
            )
            store.index.delete_index()
            store.graph.delete_all()  # every node of the test label
            store.close()


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--store", "sunbird://"], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def without_mid(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("mid", None)
    return lines


def test_examples_on_real_servers(live_env: dict[str, str], tmp_path: Path) -> None:
    cli(live_env, "init")
    cli(live_env, "init")  # idempotent
    cli(live_env, "load", str(EXAMPLES / "fixture.json"))
    report = tmp_path / "report.jsonl"
    cli(live_env, "replay", str(EXAMPLES / "events.jsonl"), "--report", str(report))
    assert without_mid(report) == without_mid(EXAMPLES / "expected_report.jsonl")

    dumped = json.loads(cli(live_env, "dump"))
    assert dumped["users"] == []  # the directory is userorg's
    assert dumped["course_batches"] == EXPECTED_DUMP["course_batches"]
    assert dumped["assets"] == EXPECTED_DUMP["assets"]
    assert dumped["notifications"] == EXPECTED_DUMP["notifications"]

    store = SunbirdStore(load_settings(None, environ=live_env))
    try:
        for batch in EXPECTED_DUMP["course_batches"]:  # the search copy agrees with the rows
            doc = store.index.get_document(batch["batchid"])
            assert doc is not None
            assert (doc["createdBy"], doc["mentors"]) == (batch["createdby"], batch["mentors"])
        for user in EXPECTED_DUMP["users"]:  # users are userorg's: read them back through the adapter
            assert store.userorg.get_user(user["id"]) == user_from_json(user)
    finally:
        store.close()

    again = tmp_path / "again.jsonl"
    cli(live_env, "replay", str(EXAMPLES / "events.jsonl"), "--report", str(again))
    assert [line["outcome"] for line in without_mid(again)] == ["duplicate"] * 5 + ["rejected"]
    assert json.loads(cli(live_env, "dump")) == dumped
