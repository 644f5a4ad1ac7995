"""handover on Elasticsearch 6.8, 7.x and 8.x (issue 11 item 2): the version is read once from ``GET /`` and every
request is shaped for it. 6.8 and 7.17 are ``tests/servers/es_versions.py`` (answers as those versions give them,
in front of the noida-db emulator); 8.x is noida itself, with every request recorded on the way."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from handover.adapters.elasticsearch import CourseBatchIndex
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.domain.model import CourseBatch
from handover.domain.rules import BatchUpdate
from tests.conftest import EXAMPLES
from tests.servers.es_versions import VersionedElasticsearch, serve
from tests.servers.process import ServerProcess
from tests.sunbird.conftest import FIXTURE
from tests.sunbird.test_replay import EXPECTED_DUMP, assert_documents_equal_rows, cli, report_lines
from tests.sunbird_deployment import Deployment, index_definition

VERSIONS = ["6.8.22", "7.17.13", None]  # None: noida (8.15.3) answers, the stand-in only records


def noida_url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(params=VERSIONS, ids=["6.8.22", "7.17.13", "8.x-noida"])
def standin(request: pytest.FixtureRequest, elasticsearch_server: ServerProcess) -> Iterator[VersionedElasticsearch]:
    yield VersionedElasticsearch(request.param, noida_url(elasticsearch_server))


def test_examples_on_each_version(deployment: Deployment, standin: VersionedElasticsearch, tmp_path: Path) -> None:
    """The shared examples give the expected report and records whatever the version; 6.8 got ``_type: _doc`` in
    every bulk action, 7.x and 8.x none; ``GET /`` was asked once for the run."""
    deployment.seed(FIXTURE)  # straight into noida, as the LMS would have indexed the documents
    with serve(standin) as url:
        env = {**deployment.env, "HANDOVER_ES_BASEPATH": url}
        cli(env, "init")
        report = tmp_path / "report.jsonl"
        cli(env, "replay", str(EXAMPLES / "events.jsonl"), "--report", str(report))
    assert report_lines(report) == report_lines(EXAMPLES / "expected_report.jsonl")
    assert json.loads(cli(deployment.env, "dump"))["course_batches"] == EXPECTED_DUMP["course_batches"]
    assert_documents_equal_rows(deployment)

    assert standin.count("GET", "/") == 1
    actions = standin.bulk_actions()
    assert actions, "the replay wrote no course-batch document"
    types = {meta.get("_type") for action in actions for meta in action.values()}
    assert types == ({"_doc"} if standin.major == 6 else {None})


def test_index_operations_on_each_version(standin: VersionedElasticsearch) -> None:
    """Create the index with the LMS mapping (typed on 6.x), load, read, search, update, delete."""
    with serve(standin) as url:
        index = CourseBatchIndex(url, f"course-batch-v{standin.major}")
        definition = index_definition()
        try:
            index.create_index(definition["mappings"], definition["settings"])
            index.index_batches([CourseBatch("do_c", "b-1", "B 1", 1, "U-From", ("u-m",)),
                                 CourseBatch("do_c", "b-2", "B 2", 0, "u-other", ("u-from",))])
            doc = index.get_document("b-1")
            assert doc is not None and doc["createdBy"] == "U-From"
            assert index.get_document("b-missing") is None
            hits = [h.batch_id for page in index.search_pages("u-from", [0, 1], 1) for h in page]
            assert hits == ["b-1", "b-2"]  # lower-cased term, paged one at a time with search_after
            index.write([BatchUpdate("do_c", "b-1", "u-to", None, ())])
            hits = [h.batch_id for page in index.search_pages("u-to", [0, 1], 10) for h in page]
            assert hits == ["b-1"]
            assert index.server_version().major == standin.major
        finally:
            index.delete_index()
            index.close()
    assert standin.count("GET", "/") == 1  # read once, kept
    created = next(r for r in standin.requests if r.method == "PUT")
    mappings = created.json()["mappings"]
    assert (list(mappings) == ["_doc"]) == (standin.major == 6)


def test_the_stand_ins_refuse_what_their_version_refuses(elasticsearch_server: ServerProcess) -> None:
    """Why the version matters: typeless bulk actions on 6.8 and typed ones on 8.x are refused for the whole
    request (here forced with ``es.version``), and nothing of the request is written."""
    upstream = noida_url(elasticsearch_server)
    six = VersionedElasticsearch("6.8.22", upstream)
    update = [BatchUpdate("do_c", "b-1", "u-to", None, ())]
    with serve(six) as url:
        index = CourseBatchIndex(url, "course-batch-refusals", version="7.17.13")
        with pytest.raises(SunbirdStoreError, match=r"400.*type is missing"):
            index.write(update)
    with serve(VersionedElasticsearch(None, upstream)) as url:
        index = CourseBatchIndex(url, "course-batch-refusals", version="6.8.22")
        with pytest.raises(SunbirdStoreError, match=r"400.*unknown parameter \[_type\]"):
            index.write(update)
    seven = VersionedElasticsearch("7.17.13", upstream)
    with serve(seven) as url:
        index = CourseBatchIndex(url, "course-batch-refusals")
        with pytest.raises(SunbirdStoreError, match="cannot be nested under a type"):
            index._request("PUT", "/course-batch-refusals", "creating", json.dumps({"mappings": {"_doc": {}}}).encode())


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"{}", "no version.number"),
        (200, b"<html>proxy</html>", "JSONDecodeError"),
        (200, b'{"version": {"number": "5.6.16"}}', "Elasticsearch 5.6.16 is not supported"),
        (403, b'{"error": "forbidden"}', "HTTP 403"),
    ],
)
def test_a_version_that_cannot_be_read_stops_before_any_write(
    elasticsearch_server: ServerProcess, status: int, body: bytes, reason: str
) -> None:
    standin = VersionedElasticsearch("6.8.22", noida_url(elasticsearch_server), root=(status, body))
    with serve(standin) as url:
        index = CourseBatchIndex(url, "course-batch-noversion", attempts=1)
        with pytest.raises(SunbirdStoreError, match=f"reading the server version \\(GET /\\).*{reason}"):
            index.write([BatchUpdate("do_c", "b-1", "u-to", None, ())])
        # not kept: asked again next time
        with pytest.raises(SunbirdStoreError, match="reading the server version"):
            index.server_version()
    assert standin.count("GET", "/") == 2
    assert standin.count("POST", "/_bulk") == 0


def test_es_version_setting_skips_get_root(elasticsearch_server: ServerProcess) -> None:
    standin = VersionedElasticsearch("6.8.22", noida_url(elasticsearch_server), root=(403, b"{}"))
    with serve(standin) as url:
        index = CourseBatchIndex(url, "course-batch-setting", version="6.8.22")
        definition = index_definition()
        try:
            index.create_index(definition["mappings"], definition["settings"])
            index.index_batches([CourseBatch("do_c", "b-1", "B 1", 1, "u-from", ())])
            index.write([BatchUpdate("do_c", "b-1", "u-to", None, ())])
            assert [h.batch_id for page in index.search_pages("u-to", [1], 10) for h in page] == ["b-1"]
        finally:
            index.delete_index()
    assert standin.count("GET", "/") == 0
    assert {meta.get("_type") for action in standin.bulk_actions() for meta in action.values()} == {"_doc"}
