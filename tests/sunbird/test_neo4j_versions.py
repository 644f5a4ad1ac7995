"""The asset adapter on each Neo4j generation a Sunbird deployment runs.

- Neo4j 3.3 (Sunbird Knowlg/inQuiry): Bolt v1 only. ``tests/servers/neo4j33.py`` holds OUR stand-ins: a listener
  answering the Bolt handshake as 3.3 does, and an HTTP server answering as 3.3's transactional endpoint does,
  which runs each statement on ArcadeDB through Bolt (a real Cypher engine, not Neo4j).
- Bolt 3.0+ servers: the suite's ArcadeDB (``bolt_server``), which answers the handshake with Bolt 5.4.

Every ``AssetCypher`` statement runs on ArcadeDB over both transports below; none fails there, so no test
shows an ArcadeDB divergence for them (ArcadeDB is not Neo4j: the Neo4j 3.3 manual is the source for the
constructs, see ``adapters/neo4j.py``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from handover.adapters.neo4j import AssetCypher, AssetGraph, bolt_version
from handover.adapters.neo4j_http import TransactionalEndpoint
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.domain.model import Asset
from handover.domain.rules import AssetUpdate
from tests.conftest import EXAMPLES
from tests.servers import arcadedb
from tests.servers.neo4j33 import COMMIT_PATH, Neo4j33Bolt, Neo4j33Http, serve
from tests.servers.process import ServerProcess
from tests.sunbird.conftest import FIXTURE
from tests.sunbird.test_replay import CONFIGURED_TYPES, EXPECTED_DUMP, cli, report_lines
from tests.sunbird_deployment import Deployment, node_properties


@pytest.fixture
def neo4j33_bolt() -> Iterator[Neo4j33Bolt]:
    with Neo4j33Bolt() as fake:
        yield fake


@pytest.fixture
def neo4j33_http(bolt_server: ServerProcess) -> Iterator[tuple[Neo4j33Http, str]]:
    fake = Neo4j33Http(f"bolt://127.0.0.1:{bolt_server.port}", arcadedb.USER, arcadedb.PASSWORD)
    with serve(fake) as url:
        yield fake, url


# generous: the HTTP stand-in answers only once ArcadeDB has run the statement, on a machine shared with other
# servers; a client timeout would be retried and show up as an extra request
TIMEOUT = 30.0


def label() -> str:
    return f"nv_{uuid.uuid4().hex[:8]}"


def graph_on_neo4j33(bolt: Neo4j33Bolt, http_url: str) -> AssetGraph:
    """``neo4j.routePath`` at the 3.3 handshake stand-in, ``neo4j.http.basePath`` at the HTTP stand-in."""
    uri = f"bolt://127.0.0.1:{bolt.port}"
    return AssetGraph(uri, arcadedb.USER, arcadedb.PASSWORD, AssetCypher(label()), TIMEOUT, http_base=http_url)


# --- which transport ---------------------------------------------------------------------------------


def test_the_installed_driver_cannot_talk_to_neo4j_33(neo4j33_bolt: Neo4j33Bolt) -> None:
    """The fault of the issue: the 6.x driver offers no Bolt v1, so the server refuses it before any query."""
    import neo4j
    from neo4j.exceptions import UnsupportedServerProduct

    driver = neo4j.GraphDatabase.driver(f"bolt://127.0.0.1:{neo4j33_bolt.port}", auth=("neo4j", "x"))
    try:
        with pytest.raises(UnsupportedServerProduct):
            driver.verify_connectivity()
    finally:
        driver.close()
    assert neo4j33_bolt.proposals and all(1 not in offered for offered in neo4j33_bolt.proposals)


def test_neo4j_33_answers_the_handshake_with_bolt_1(neo4j33_bolt: Neo4j33Bolt) -> None:
    assert bolt_version("127.0.0.1", neo4j33_bolt.port, 5.0) == (1, 0)
    assert neo4j33_bolt.proposals[-1] == (0x00080805, 0x00020404, 0x00000003, 0x00000001)


def test_auto_picks_http_for_neo4j_33(neo4j33_bolt: Neo4j33Bolt, neo4j33_http: tuple[Neo4j33Http, str]) -> None:
    fake, url = neo4j33_http
    graph = graph_on_neo4j33(neo4j33_bolt, url)
    try:
        assert graph.get("do_missing") is None
        assert graph.transport == "http"
        # a Bolt v1 server is a 3.x: its commit path is known, no discovery request
        assert [(m, p) for m, p, _ in fake.requests] == [("POST", COMMIT_PATH)]
    finally:
        graph.close()


def test_auto_picks_bolt_for_a_bolt_5_server(bolt_server: ServerProcess) -> None:
    assert bolt_version("127.0.0.1", bolt_server.port, 5.0) == (5, 4)  # ArcadeDB's pick
    graph = AssetGraph(f"bolt://127.0.0.1:{bolt_server.port}", arcadedb.USER, arcadedb.PASSWORD, AssetCypher(label()))
    try:
        assert graph.get("do_missing") is None
        assert graph.transport == "bolt"
    finally:
        graph.close()


def test_forced_http_finds_the_endpoint_in_the_discovery_document(neo4j33_http: tuple[Neo4j33Http, str]) -> None:
    fake, url = neo4j33_http
    graph = AssetGraph(
        "bolt://127.0.0.1:9",
        arcadedb.USER,
        arcadedb.PASSWORD,
        AssetCypher(label()),
        TIMEOUT,
        http_base=url,
        transport="http",
    )  # port 9: nothing listens there, and with transport=http nothing tries
    try:
        assert graph.get("do_missing") is None
        assert graph.transport == "http"
        assert [(m, p) for m, p, _ in fake.requests] == [("GET", "/"), ("POST", COMMIT_PATH)]
    finally:
        graph.close()


def test_an_unreachable_bolt_address_is_a_store_error() -> None:
    graph = AssetGraph("bolt://127.0.0.1:9", None, None, AssetCypher(label()), 2.0)
    with pytest.raises(SunbirdStoreError, match=r"^neo4j: Bolt handshake with 127.0.0.1:9: ConnectionRefusedError"):
        graph.get("do_1")


# --- the statements over both transports -------------------------------------------------------------------


TYPES = ("Question", "QuestionImage")  # the types the dump reads


def assets(user: str, n: int) -> list[Asset]:
    return [
        Asset(
            identifier=f"do_{i:03d}",
            objectType="QuestionImage" if i % 3 == 0 else "Question",
            schemaVersion="1.1",
            status="Live",
            visibility="Default",
            createdBy=user if i % 4 else "u-other",
            creator="Ann Lee",
            originData={"identifier": f"do_{i:03d}", "repository": {"id": "r-1"}} if i % 2 else None,
            extra={"channel": "channel-org-1", "versionKey": f"17127507509{i:02d}", "tags": ["a", "b"]},
        )
        for i in range(n)
    ]


def exercise(graph: AssetGraph) -> dict[str, object]:
    """Every operation of the gateway, in the order a transfer and a test set-up use them."""
    seed = assets("u-ann", 11)
    graph.upsert(seed)
    mine = [a.identifier for page in graph.pages_created_by("u-ann", ["Question", "QuestionImage"], 3) for a in page]
    updates = [AssetUpdate(i, "Question", {"createdBy": "u-ravi", "creator": "Ravi K"}, ()) for i in mine]
    written = graph.write([*updates, AssetUpdate("do_gone", "Question", {"createdBy": "u-ravi"}, ())])
    after = {a.identifier: a for a in graph.all_assets(TYPES, 4)}
    picked = graph.get_many(["do_001", "do_004", "do_zzz"])
    one = graph.get("do_001")
    graph.delete(["do_010"])
    remaining = sorted(a.identifier for a in graph.all_assets(TYPES))
    graph.delete_all()
    return {
        "mine": mine,
        "written": written,
        "after": {k: (a.createdBy, a.creator, a.originData, a.extra) for k, a in after.items()},
        "picked": sorted(picked),
        "one": one,
        "remaining": remaining,
        "emptied": list(graph.all_assets(TYPES)),
    }


def test_the_statements_give_the_same_results_over_http_and_bolt(
    bolt_server: ServerProcess, neo4j33_bolt: Neo4j33Bolt, neo4j33_http: tuple[Neo4j33Http, str]
) -> None:
    bolt = AssetGraph(f"bolt://127.0.0.1:{bolt_server.port}", arcadedb.USER, arcadedb.PASSWORD, AssetCypher(label()))
    http = graph_on_neo4j33(neo4j33_bolt, neo4j33_http[1])
    try:
        over_bolt, over_http = exercise(bolt), exercise(http)
        assert (bolt.transport, http.transport) == ("bolt", "http")
    finally:
        bolt.close()
        http.close()
    assert over_http == over_bolt
    # and the results are right, not only equal
    expected_mine = [a.identifier for a in assets("u-ann", 11) if a.createdBy == "u-ann"]
    assert over_http["mine"] == expected_mine and over_http["written"] == len(expected_mine)
    after = over_http["after"]
    assert isinstance(after, dict) and len(after) == 11
    assert after["do_001"] == (
        "u-ravi",
        "Ravi K",
        {"identifier": "do_001", "repository": {"id": "r-1"}},
        {"channel": "channel-org-1", "versionKey": "1712750750901", "tags": ["a", "b"]},
    )
    assert after["do_004"][:2] == ("u-other", "Ann Lee")  # not the user's: untouched
    assert over_http["picked"] == ["do_001", "do_004"]
    assert over_http["remaining"] == [f"do_{i:03d}" for i in range(10)]
    assert over_http["emptied"] == []


# --- errors over HTTP ----------------------------------------------------------------------------------------


def test_an_error_in_the_answer_is_a_store_error_naming_neo4j(neo4j33_http: tuple[Neo4j33Http, str]) -> None:
    fake, url = neo4j33_http
    endpoint = TransactionalEndpoint(url, arcadedb.USER, arcadedb.PASSWORD, path=COMMIT_PATH, timeout=TIMEOUT)
    try:
        with pytest.raises(SunbirdStoreError) as caught:
            endpoint.run("THIS IS NOT CYPHER", {}, "updating assets")
    finally:
        endpoint.close()
    assert caught.value.store == "neo4j"
    assert str(caught.value).startswith("neo4j: updating assets: CypherError: Neo.ClientError.Statement.SyntaxError")
    assert len(fake.requests) == 1  # a client error is not retried


@pytest.mark.parametrize(
    ("password", "said"),
    [("wrong-password", "Invalid username or password."), (None, "No authentication header supplied.")],
)
def test_a_401_is_a_clear_error(
    neo4j33_bolt: Neo4j33Bolt, neo4j33_http: tuple[Neo4j33Http, str], password: str | None, said: str
) -> None:
    fake, url = neo4j33_http
    graph = AssetGraph(
        f"bolt://127.0.0.1:{neo4j33_bolt.port}",
        arcadedb.USER if password else None,
        password,
        AssetCypher(label()),
        TIMEOUT,
        http_base=url,
    )
    try:
        with pytest.raises(SunbirdStoreError) as caught:
            graph.get("do_1")
    finally:
        graph.close()
    assert str(caught.value) == (
        f"neo4j: reading node 'do_1': HTTP 401 from {url}{COMMIT_PATH}: "
        f"Neo.ClientError.Security.Unauthorized: {said} (check neo4j.user / neo4j.password)"
    )
    assert len(fake.requests) == 1


def test_transient_failures_are_retried(neo4j33_bolt: Neo4j33Bolt, neo4j33_http: tuple[Neo4j33Http, str]) -> None:
    fake, url = neo4j33_http
    fake.faults = [503, "Neo.TransientError.Transaction.DeadlockDetected"]
    graph = graph_on_neo4j33(neo4j33_bolt, url)
    try:
        graph.upsert(assets("u-ann", 2))
        assert sorted(a.identifier for a in graph.all_assets(TYPES)) == ["do_000", "do_001"]
        graph.delete_all()
    finally:
        graph.close()
    statements = [body["statements"][0]["statement"] for method, _, body in fake.requests if method == "POST"]
    # the load took three attempts (a 503, a transient error, then it ran); then the dump and the delete
    assert [s.split()[0] for s in statements] == ["UNWIND", "UNWIND", "UNWIND", "MATCH", "MATCH"]


# --- the whole sunbird:// store on a Neo4j 3.3 ------------------------------------------------------------------


def test_replay_of_the_examples_with_the_graph_on_neo4j_33(
    deployment: Deployment, neo4j33_bolt: Neo4j33Bolt, neo4j33_http: tuple[Neo4j33Http, str], tmp_path: Path
) -> None:
    fake, url = neo4j33_http
    deployment.seed(FIXTURE)
    env = {
        **deployment.env,
        "HANDOVER_NEO4J_ROUTEPATH": f"bolt://127.0.0.1:{neo4j33_bolt.port}",
        "HANDOVER_NEO4J_HTTP_BASEPATH": url,
        "HANDOVER_HTTP_TIMEOUT_SECONDS": str(int(TIMEOUT)),
    }
    cli(env, "init")
    report = tmp_path / "report.jsonl"
    cli(env, "replay", str(EXAMPLES / "events.jsonl"), "--report", str(report))
    assert report_lines(report) == report_lines(EXAMPLES / "expected_report.jsonl")
    nodes = deployment.nodes()
    for asset in EXPECTED_DUMP["assets"]:
        assert nodes[asset["identifier"]] == node_properties(asset)
    dumped = json.loads(cli(env, "dump"))
    model_keys = set(EXPECTED_DUMP["assets"][0])
    configured = [a for a in EXPECTED_DUMP["assets"] if a["objectType"] in CONFIGURED_TYPES]
    assert [{k: a[k] for k in model_keys} for a in dumped["assets"]] == configured
    # every graph statement went over HTTP; the Bolt port only saw handshakes offering v1
    assert fake.requests and all(p == COMMIT_PATH for _, p, _ in fake.requests)
    assert neo4j33_bolt.proposals and all(1 in offered for offered in neo4j33_bolt.proposals)
