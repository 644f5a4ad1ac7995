"""Choosing the Neo4j transport (Bolt handshake bytes, addresses, settings) and the HTTP transactional endpoint's
requests, answers, retries and errors. Pure functions and ``httpx.MockTransport``; the same code against a
server is in ``tests/sunbird/test_neo4j_versions.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from handover.adapters.neo4j import (
    AssetCypher,
    AssetGraph,
    bolt_address,
    default_http_base,
    handshake_answer,
    handshake_request,
    speaks_only_old_bolt,
)
from handover.adapters.neo4j_http import CypherError, TransactionalEndpoint, commit_path, request_body, rows_of
from handover.adapters.sunbird import SunbirdConfig
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.config import ConfigError, load_settings
from handover.domain.model import Asset
from handover.domain.rules import AssetUpdate
from tests.conftest import UPSTREAM

# --- the Bolt handshake -----------------------------------------------------------------------------


def test_handshake_request_is_the_magic_and_four_big_endian_proposals() -> None:
    assert handshake_request().hex() == "6060b017" + "00080805" + "00020404" + "00000003" + "00000001"
    with pytest.raises(ValueError, match="four"):
        handshake_request([1, 2, 3])


@pytest.mark.parametrize(
    ("answer", "version", "old"),
    [
        (b"\x00\x00\x00\x01", (1, 0), True),  # Neo4j 3.0-3.3
        (b"\x00\x00\x00\x02", (2, 0), True),  # Neo4j 3.4
        (b"\x00\x00\x00\x03", (3, 0), False),  # Neo4j 3.5, 4.0, 4.1
        (b"\x00\x00\x04\x04", (4, 4), False),
        (b"\x00\x00\x04\x05", (5, 4), False),  # what ArcadeDB answers
        (b"\x00\x00\x00\x00", None, False),  # none of the proposals: the driver negotiates on its own
    ],
)
def test_handshake_answer(answer: bytes, version: tuple[int, int] | None, old: bool) -> None:
    assert handshake_answer(answer) == version
    assert speaks_only_old_bolt(version) is old


@pytest.mark.parametrize(
    ("answer", "message"),
    [(b"HTTP", "HTTP server"), (b"HTTP/1.1 400", "HTTP server"), (b"", "closed"), (b"\x00\x00", "closed")],
)
def test_an_answer_that_is_not_bolt_is_refused(answer: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        handshake_answer(answer)


@pytest.mark.parametrize(
    ("route_path", "address", "http_base"),
    [
        ("bolt://localhost:7687", ("bolt", "localhost", 7687), "http://localhost:7474"),
        ("bolt://10.0.0.5", ("bolt", "10.0.0.5", 7687), "http://10.0.0.5:7474"),
        ("neo4j://graph.svc:7688", ("neo4j", "graph.svc", 7688), "http://graph.svc:7474"),
        ("graph.svc:7687", ("bolt", "graph.svc", 7687), "http://graph.svc:7474"),
        ("bolt+s://g.example.org", ("bolt+s", "g.example.org", 7687), "https://g.example.org:7473"),
        ("bolt://[::1]:7687", ("bolt", "::1", 7687), "http://[::1]:7474"),
    ],
)
def test_route_path_and_the_default_http_base(route_path: str, address: tuple[str, str, int], http_base: str) -> None:
    assert bolt_address(route_path) == address
    assert default_http_base(route_path) == http_base


@pytest.mark.parametrize("route_path", ["http://localhost:7474", "bolt://", "bolt://h:port"])
def test_a_route_path_that_is_not_bolt_is_refused(route_path: str) -> None:
    with pytest.raises(ValueError, match=r"neo4j\.routePath"):
        bolt_address(route_path)


def test_transport_settings() -> None:
    conf = UPSTREAM / "inquiry" / "user-pii-data-updater.conf"
    c = SunbirdConfig.from_settings(load_settings(conf, environ={}))
    assert (c.neo4j_transport, c.neo4j_http_base, c.neo4j_database) == ("auto", "http://localhost:7474", None)
    env = {
        "HANDOVER_NEO4J_ROUTEPATH": "bolt://graph-1:7687",
        "HANDOVER_NEO4J_TRANSPORT": " HTTP ",
        "HANDOVER_NEO4J_HTTP_BASEPATH": "http://graph-http:8080",
        "HANDOVER_NEO4J_DATABASE": "sunbird",
    }
    c = SunbirdConfig.from_settings(load_settings(conf, environ=env))
    assert (c.neo4j_transport, c.neo4j_http_base, c.neo4j_database) == ("http", "http://graph-http:8080", "sunbird")
    c = SunbirdConfig.from_settings(load_settings(conf, environ={"HANDOVER_NEO4J_ROUTEPATH": "bolt://graph-1"}))
    assert c.neo4j_http_base == "http://graph-1:7474"
    with pytest.raises(ConfigError, match=r"neo4j.transport: expected one of auto, bolt, http, got 'rest'"):
        SunbirdConfig.from_settings(load_settings(conf, environ={"HANDOVER_NEO4J_TRANSPORT": "rest"}))
    with pytest.raises(ConfigError, match=r"neo4j\.routePath"):
        SunbirdConfig.from_settings(load_settings(conf, environ={"HANDOVER_NEO4J_ROUTEPATH": "http://graph:7474"}))


def test_every_statement_is_one_line() -> None:
    """Neo4j 3.x's HTTP endpoint refuses literal line breaks inside a statement."""
    c = AssetCypher("domain")
    update = AssetUpdate("do_1", "Question", {"createdBy": "u-2"}, ())
    asset = Asset(identifier="do_1", objectType="Question")
    queries = [
        c.created_by("u-1", ["Question"], "", 10),
        c.by_id("do_1"),
        c.by_ids(["do_1"]),
        c.write([update]),
        c.upsert([asset]),
        c.all_data_nodes(["Question"], "", 10),
        c.delete_all(),
        c.delete(["do_1"]),
    ]
    assert all("\n" not in q.text and "\r" not in q.text for q in queries)


# --- the transactional endpoint: pure parts -------------------------------------------------------------------

DISCOVERY_33 = {"management": "http://graph:7474/db/manage/", "data": "http://graph:7474/db/data/"}
DISCOVERY_5 = {
    "bolt_routing": "neo4j://graph:7687",
    "transaction": "http://graph:7474/db/{databaseName}/tx",
    "bolt_direct": "bolt://graph:7687",
    "neo4j_version": "5.25.0",
    "neo4j_edition": "community",
}


def test_commit_path_from_the_discovery_document() -> None:
    assert commit_path(DISCOVERY_33, None) == "/db/data/transaction/commit"
    assert commit_path(DISCOVERY_5, None) == "/db/neo4j/tx/commit"
    assert commit_path(DISCOVERY_5, "sunbird") == "/db/sunbird/tx/commit"
    for garbage in ({}, [], "x", {"data": 3}):
        with pytest.raises(ValueError, match="not a Neo4j discovery document"):
            commit_path(garbage, None)


def test_request_body() -> None:
    assert request_body("MATCH (n) WHERE n.x = $x RETURN n.y AS y", {"x": 1}) == {
        "statements": [
            {
                "statement": "MATCH (n) WHERE n.x = $x RETURN n.y AS y",
                "parameters": {"x": 1},
                "resultDataContents": ["row"],
            }
        ]
    }


def test_rows_of_an_answer() -> None:
    answer = {
        "results": [{"columns": ["props", "n"], "data": [{"row": [{"a": 1}, 2]}, {"row": [{}, 3]}]}],
        "errors": [],
    }
    assert rows_of(answer) == [{"props": {"a": 1}, "n": 2}, {"props": {}, "n": 3}]
    assert rows_of({"results": [{"columns": ["c"], "data": []}], "errors": []}) == []


def test_an_error_entry_is_a_cypher_error() -> None:
    answer = {"results": [], "errors": [{"code": "Neo.ClientError.Statement.SyntaxError", "message": "Invalid input"}]}
    with pytest.raises(CypherError) as caught:
        rows_of(answer)
    assert caught.value.code == "Neo.ClientError.Statement.SyntaxError" and not caught.value.transient
    assert CypherError("Neo.TransientError.Transaction.DeadlockDetected", "x").transient


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        {"results": []},
        {"results": [], "errors": []},
        {"results": [{"columns": ["a"]}], "errors": []},
        {"results": [{"columns": ["a"], "data": [{"row": [1, 2]}]}], "errors": []},
        {"results": [{"columns": ["a"], "data": [{"graph": {}}]}], "errors": []},
        {"results": [], "errors": ["boom"]},
    ],
)
def test_an_answer_of_another_shape_is_refused(answer: Any) -> None:
    with pytest.raises(ValueError):
        rows_of(answer)


# --- the transactional endpoint over httpx.MockTransport -------------------------------------------------------

OK = {"results": [{"columns": ["props"], "data": [{"row": [{"IL_UNIQUE_ID": "do_1"}]}]}], "errors": []}


def endpoint(
    answers: list[Callable[[httpx.Request], httpx.Response]], seen: list[httpx.Request]
) -> TransactionalEndpoint:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)(request)

    client = httpx.Client(transport=httpx.MockTransport(handle), auth=httpx.BasicAuth("neo4j", "secret"))
    return TransactionalEndpoint("http://graph:7474/", "neo4j", "secret", client=client, max_wait=0.01)


def answer(status: int, body: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


def test_discovery_then_one_post_per_statement_with_basic_auth() -> None:
    seen: list[httpx.Request] = []
    ep = endpoint([answer(200, DISCOVERY_33), answer(200, OK), answer(200, OK)], seen)
    assert ep.run("RETURN $x AS props", {"x": 1}, "reading") == [{"props": {"IL_UNIQUE_ID": "do_1"}}]
    ep.run("RETURN $x AS props", {"x": 2}, "reading")
    assert [(r.method, str(r.url)) for r in seen] == [
        ("GET", "http://graph:7474/"),
        ("POST", "http://graph:7474/db/data/transaction/commit"),
        ("POST", "http://graph:7474/db/data/transaction/commit"),
    ]
    assert seen[1].headers["authorization"] == "Basic bmVvNGo6c2VjcmV0"
    assert json.loads(seen[2].content)["statements"][0]["parameters"] == {"x": 2}


@pytest.mark.parametrize(
    "first",
    [
        answer(503, {"errors": []}),
        answer(429, {"errors": []}),
        answer(
            200,
            {"results": [], "errors": [{"code": "Neo.TransientError.Transaction.DeadlockDetected", "message": "d"}]},
        ),
        lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
    ],
)
def test_transient_failures_are_retried(first: Callable[[httpx.Request], httpx.Response]) -> None:
    seen: list[httpx.Request] = []
    ep = endpoint([first, answer(200, OK)], seen)
    ep.path = "/db/data/transaction/commit"
    assert ep.run("RETURN 1 AS props", {}, "reading") == [{"props": {"IL_UNIQUE_ID": "do_1"}}]
    assert len(seen) == 2


def test_retries_end_in_a_store_error() -> None:
    seen: list[httpx.Request] = []
    ep = endpoint([answer(503, {"errors": []})] * 3, seen)
    ep.path = "/db/data/transaction/commit"
    with pytest.raises(SunbirdStoreError, match=r"^neo4j: reading: _HttpStatus: HTTP 503") as caught:
        ep.run("RETURN 1 AS props", {}, "reading")
    assert caught.value.store == "neo4j" and len(seen) == 3


@pytest.mark.parametrize(
    ("status", "code", "message", "said"),
    [
        (401, "Neo.ClientError.Security.Unauthorized", "Invalid username or password.", "check neo4j.user"),
        (403, "Neo.ClientError.Security.Forbidden", "User is required to change their password.", "check neo4j.user"),
    ],
)
def test_authentication_failures_are_clear_and_not_retried(status: int, code: str, message: str, said: str) -> None:
    seen: list[httpx.Request] = []
    ep = endpoint([answer(status, {"errors": [{"code": code, "message": message}]})], seen)
    ep.path = "/db/data/transaction/commit"
    with pytest.raises(SunbirdStoreError) as caught:
        ep.run("RETURN 1 AS props", {}, "reading")
    text = str(caught.value)
    assert text.startswith(f"neo4j: reading: HTTP {status} from http://graph:7474/db/data/transaction/commit: ")
    assert f"{code}: {message}" in text and said in text and len(seen) == 1


def test_a_statement_error_is_a_store_error_naming_neo4j_and_not_retried() -> None:
    seen: list[httpx.Request] = []
    error = {"code": "Neo.ClientError.Statement.SyntaxError", "message": "Invalid input 'T'"}
    ep = endpoint([answer(200, {"results": [], "errors": [error]})], seen)
    ep.path = "/db/data/transaction/commit"
    with pytest.raises(SunbirdStoreError, match=r"^neo4j: writing: CypherError: Neo.ClientError.Statement.SyntaxError"):
        ep.run("THIS IS NOT CYPHER", {}, "writing")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (lambda request: httpx.Response(404, text="Not Found"), "no transactional Cypher endpoint there"),
        (lambda request: httpx.Response(200, text="<html>proxy</html>"), "not JSON"),
        (answer(200, {"hello": 1}), "not an answer of the transactional endpoint"),
    ],
)
def test_an_answer_that_is_not_the_endpoints(reply: Callable[[httpx.Request], httpx.Response], message: str) -> None:
    ep = endpoint([reply], [])
    ep.path = "/db/data/transaction/commit"
    with pytest.raises(SunbirdStoreError, match=message):
        ep.run("RETURN 1 AS props", {}, "reading")


def test_a_discovery_document_of_another_server_is_a_store_error() -> None:
    ep = endpoint([answer(200, {"name": "not neo4j"})], [])
    with pytest.raises(SunbirdStoreError, match=r"reading the discovery document: .*not a Neo4j discovery document"):
        ep.run("RETURN 1 AS props", {}, "reading")


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match=r"neo4j\.transport"):
        AssetGraph("bolt://localhost:7687", None, None, AssetCypher(), transport="grpc")
