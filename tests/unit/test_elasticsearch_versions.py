"""What each Elasticsearch version is sent (issue 11 item 2), as pure functions: the version read from ``GET /``
or ``es.version``, the type in bulk action lines and index mappings (6.x only), the document path; and the
settings ``es.version`` / ``es.refresh`` checked at start-up."""

from __future__ import annotations

from typing import Any

import pytest

from handover.adapters.elasticsearch import (
    ServerVersion,
    bulk_load_lines,
    bulk_update_lines,
    check_refresh_mode,
    document_path,
    index_body,
    ndjson,
    parse_version,
    version_from_root,
)
from handover.adapters.sunbird import SunbirdConfig
from handover.config import ConfigError, load_settings
from handover.domain.model import CourseBatch

ES_6 = {"name": "n1", "cluster_name": "sunbird", "version": {"number": "6.8.22", "build_flavor": "default",
        "lucene_version": "7.7.3", "minimum_wire_compatibility_version": "5.6.0"}, "tagline": "You Know, for Search"}
ES_7 = {"name": "n1", "version": {"number": "7.17.13", "build_flavor": "default"}}
ES_8 = {"name": "noida-db", "version": {"number": "8.15.3", "build_flavor": "default"}}
OPENSEARCH_2 = {"name": "n1", "version": {"distribution": "opensearch", "number": "2.11.0"}}


@pytest.mark.parametrize(
    ("root", "major", "doc_type"),
    [(ES_6, 6, "_doc"), (ES_7, 7, None), (ES_8, 8, None), (OPENSEARCH_2, 2, None)],
)
def test_the_version_from_get_root_decides_the_type(root: dict[str, Any], major: int, doc_type: str | None) -> None:
    version = version_from_root(root)
    assert version.major == major
    assert version.doc_type == doc_type


@pytest.mark.parametrize(
    ("number", "major"), [("6", 6), ("6.0.0", 6), ("7.0.0-beta1", 7), ("7.17.13", 7), ("9.0.1", 9), (" 8.1 ", 8)]
)
def test_version_numbers(number: str, major: int) -> None:
    assert parse_version(number).major == major


@pytest.mark.parametrize(
    ("root", "reason"),
    [
        ({}, "no version.number"),
        ({"version": "7.17.13"}, "no version.number"),
        ({"version": {"build_flavor": "default"}}, "no version.number"),
        ([], "no version.number"),
        ({"version": {"number": 7}}, "not a version number"),
        ({"version": {"number": "seven"}}, "not a version number"),
        ({"version": {"number": "5.6.16"}}, "Elasticsearch 5.6.16 is not supported"),
        ({"version": {"number": "2.4.6"}}, "Elasticsearch 2.4.6 is not supported"),
        ({"version": {"number": "8.1.0", "distribution": "solr"}}, "unknown distribution"),
    ],
)
def test_a_version_that_cannot_be_used_is_a_clear_error(root: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        version_from_root(root)


def test_bulk_update_lines_name_the_type_only_for_6x() -> None:
    docs = [("b1", {"createdBy": "u-to"})]
    assert ndjson(bulk_update_lines("course-batch", docs, ServerVersion("6.8.22", 6).doc_type)) == (
        b'{"update":{"_index":"course-batch","_type":"_doc","_id":"b1","retry_on_conflict":3}}\n'
        b'{"doc":{"createdBy":"u-to"}}\n'
    )
    for version in (ServerVersion("7.17.13", 7), ServerVersion("8.15.3", 8), ServerVersion("2.11.0", 2, "opensearch")):
        assert ndjson(bulk_update_lines("course-batch", docs, version.doc_type)) == (
            b'{"update":{"_index":"course-batch","_id":"b1","retry_on_conflict":3}}\n'
            b'{"doc":{"createdBy":"u-to"}}\n'
        )


def test_bulk_load_lines_name_the_type_only_for_6x() -> None:
    batch = CourseBatch("do_c", "b1", "B 1", 1, "u1", ())
    assert bulk_load_lines("course-batch", [batch], "_doc")[0] == {
        "update": {"_index": "course-batch", "_type": "_doc", "_id": "b1"}
    }
    assert bulk_load_lines("course-batch", [batch], None)[0] == {"update": {"_index": "course-batch", "_id": "b1"}}


def test_document_path_and_index_body() -> None:
    # /{index}/_doc/{id}: the typed path on 6.x (type _doc), the typeless endpoint on 7.x and later
    assert document_path("course-batch", "b/1 ?") == "/course-batch/_doc/b%2F1%20%3F"
    mapping = {"dynamic": False, "properties": {"batchId": {"type": "text"}}}
    settings = {"index": {"number_of_shards": "1"}}
    assert index_body(mapping, settings, "_doc") == {"settings": settings, "mappings": {"_doc": mapping}}
    assert index_body(mapping, settings, None) == {"settings": settings, "mappings": mapping}


def test_refresh_modes() -> None:
    assert check_refresh_mode("before_search") == "before_search"
    assert check_refresh_mode("wait_for") == "wait_for"
    for bad in ("true", "false", "", "WAIT_FOR"):
        with pytest.raises(ValueError, match=r"es\.refresh: expected one of before_search, wait_for"):
            check_refresh_mode(bad)


def _sunbird_env(**extra: str) -> dict[str, str]:
    return {"HANDOVER_USERORG_SERVICE_BASE_URL": "http://userorg:9000", **extra}


def test_es_settings_default_to_get_root_and_a_refresh_before_the_search() -> None:
    c = SunbirdConfig.from_settings(load_settings(environ=_sunbird_env()))
    assert c.es_version is None and c.es_refresh == "before_search"
    c = SunbirdConfig.from_settings(
        load_settings(environ=_sunbird_env(HANDOVER_ES_VERSION="6.8.22", HANDOVER_ES_REFRESH="wait_for"))
    )
    assert c.es_version == "6.8.22" and c.es_refresh == "wait_for"


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("HANDOVER_ES_VERSION", "six", "es.version: not a version number"),
        ("HANDOVER_ES_VERSION", "5.6.16", "es.version: Elasticsearch 5.6.16 is not supported"),
        ("HANDOVER_ES_REFRESH", "true", "es.refresh: expected one of"),
    ],
)
def test_bad_es_settings_are_refused_at_start_up(name: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        SunbirdConfig.from_settings(load_settings(environ=_sunbird_env(**{name: value})))
