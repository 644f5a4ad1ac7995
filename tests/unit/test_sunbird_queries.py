"""The Sunbird adapters' pure query building: exact Elasticsearch bodies, CQL and Cypher with their parameters.
Hostile values (quotes, injection attempts) must stay parameter values and never reach the statement text."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from handover.adapters.cassandra import CourseBatchTable, HandoverKeyspace, Replication, grouped
from handover.adapters.elasticsearch import (
    base_urls,
    batches_of_user_query,
    bulk_failures,
    bulk_load_lines,
    bulk_update_lines,
    ndjson,
    parse_hits,
    partial_doc,
)
from handover.adapters.neo4j import AssetCypher, asset_from_props, node_props, to_graph_props
from handover.adapters.userorg import (
    UserOrgEndpoints,
    is_blocked_answer,
    notification_payload,
    scoped_roles,
    search_body,
    user_from_profile,
)
from handover.domain.model import Asset, CourseBatch
from handover.domain.notification import Notification
from handover.domain.rules import AssetUpdate, BatchUpdate, FieldChange
from handover.service.ports import STORE_ASSET, AuditRecord, LedgerEntry

HOSTILE = "u1\"} OR 1=1 //'; DROP TABLE course_batch; --"
T0 = datetime(2024, 4, 10, 12, 0, tzinfo=UTC)


# --- Elasticsearch ----------------------------------------------------------------------------------


def test_search_body_is_exact_and_lowercases_the_user() -> None:
    assert batches_of_user_query("U-Ann", [1, 0], 100) == {
        "size": 100,
        "_source": ["batchId", "courseId", "createdBy", "mentors", "status"],
        "query": {
            "bool": {
                "filter": [{"terms": {"status": [0, 1]}}],
                "should": [{"term": {"createdBy.raw": "u-ann"}}, {"term": {"mentors.raw": "u-ann"}}],
                "minimum_should_match": 1,
            }
        },
        "sort": [{"batchId.raw": "asc"}, {"courseId.raw": "asc"}],
    }


def test_search_body_pages_with_search_after() -> None:
    body = batches_of_user_query("u1", [0, 1], 2, after=["b-2", "do_c"])
    assert body["search_after"] == ["b-2", "do_c"]
    assert "from" not in body  # offset paging would skip documents the engine rewrites meanwhile


def test_hostile_user_id_is_only_a_term_value() -> None:
    body = batches_of_user_query(HOSTILE, [0], 10)
    should = body["query"]["bool"]["should"]
    assert should == [{"term": {"createdBy.raw": HOSTILE.lower()}}, {"term": {"mentors.raw": HOSTILE.lower()}}]
    text = json.dumps(body)
    assert "query_string" not in text and "script" not in text
    assert json.loads(text) == body  # the serializer escapes the quotes


def test_partial_update_names_exactly_the_written_fields() -> None:
    both = BatchUpdate("do_c", "b1", "u-to", ("u-to", "u-x"), ())
    creator = BatchUpdate("do_c", "b2", "u-to", None, ())
    mentors = BatchUpdate("do_c", "b3", None, ("u-to",), ())
    assert partial_doc(both) == {"createdBy": "u-to", "mentors": ["u-to", "u-x"]}
    assert partial_doc(creator) == {"createdBy": "u-to"}
    assert partial_doc(mentors) == {"mentors": ["u-to"]}
    lines = bulk_update_lines("course-batch", [("b1", partial_doc(both)), ("b9", {}), ("b3", partial_doc(mentors))])
    assert lines == [
        {"update": {"_index": "course-batch", "_id": "b1", "retry_on_conflict": 3}},
        {"doc": {"createdBy": "u-to", "mentors": ["u-to", "u-x"]}},
        {"update": {"_index": "course-batch", "_id": "b3", "retry_on_conflict": 3}},
        {"doc": {"mentors": ["u-to"]}},
    ]


def test_bulk_body_is_ndjson_with_escaped_values() -> None:
    lines = bulk_update_lines("course-batch", [('b"1\n', {"createdBy": HOSTILE})])
    assert ndjson(lines) == (
        b'{"update":{"_index":"course-batch","_id":"b\\"1\\n","retry_on_conflict":3}}\n'
        b'{"doc":{"createdBy":"u1\\"} OR 1=1 //\'; DROP TABLE course_batch; --"}}\n'
    )
    assert ndjson(lines).count(b"\n") == 2  # a newline in a value cannot split a bulk line


def test_load_lines_update_the_batch_fields_or_create_the_document() -> None:
    batch = CourseBatch("do_c", "b1", "B 1", 1, "u1", ("u1", "u2"))
    assert bulk_load_lines("course-batch", [batch]) == [
        {"update": {"_index": "course-batch", "_id": "b1"}},
        {"doc": {
            "id": "b1",
            "identifier": "b1",
            "batchId": "b1",
            "courseId": "do_c",
            "name": "B 1",
            "status": 1,
            "createdBy": "u1",
            "mentors": ["u1", "u2"],
        }, "doc_as_upsert": True},
    ]


def test_hits_and_bulk_failures_are_read() -> None:
    response = {
        "hits": {
            "hits": [
                {
                    "_id": "b1",
                    "_source": {"batchId": "b1", "courseId": "c", "createdBy": "u", "mentors": None},
                    "sort": ["b1", "c"],
                },
                {"_id": "b2", "_source": {"courseId": "c", "mentors": ["u", 3]}, "sort": ["b2", "c"]},
                {"_id": "b3", "_source": {"batchId": "b3"}},
            ]
        }
    }
    hits = parse_hits(response)
    assert [(h.batch_id, h.course_id, h.created_by, h.mentors, h.sort) for h in hits] == [
        ("b1", "c", "u", (), ("b1", "c")),
        ("b2", "c", None, ("u",), ("b2", "c")),
    ]
    bulk = {
        "errors": True,
        "items": [
            {"update": {"_id": "b1", "status": 200}},
            {"update": {"_id": "b2", "status": 404, "error": {"type": "document_missing_exception"}}},
            {"update": {"_id": "b3", "status": 409, "error": {"type": "version_conflict_engine_exception"}}},
        ],
    }
    failures = bulk_failures(bulk)
    assert len(failures) == 1 and failures[0].startswith("b3: 409")
    assert bulk_failures({"errors": False, "items": []}) == []


def test_es_base_path_as_upstream_writes_it() -> None:
    assert base_urls("localhost:9200") == ["http://localhost:9200"]
    assert base_urls("es1:9200, https://es2:9200/") == ["http://es1:9200", "https://es2:9200"]
    with pytest.raises(ValueError):
        base_urls(" , ")


# --- Cassandra --------------------------------------------------------------------------------------


def test_course_batch_cql_is_exact() -> None:
    t = CourseBatchTable("sunbird_courses", "course_batch")
    assert t.select_by_key() == (
        "SELECT courseid, batchid, name, status, createdby, mentors FROM sunbird_courses.course_batch "
        "WHERE courseid = ? AND batchid = ?"
    )
    assert (
        t.update_createdby()
        == "UPDATE sunbird_courses.course_batch SET createdby = ? WHERE courseid = ? AND batchid = ?"
    )
    assert (
        t.update_mentors() == "UPDATE sunbird_courses.course_batch SET mentors = ? WHERE courseid = ? AND batchid = ?"
    )
    assert t.insert() == (
        "INSERT INTO sunbird_courses.course_batch (courseid, batchid, name, status, createdby, mentors) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )


def test_update_statements_bind_every_value() -> None:
    t = CourseBatchTable()
    updates = [
        BatchUpdate("do_c", "b1", HOSTILE, None, ()),
        BatchUpdate("do_'c", "b2", None, ("x", HOSTILE), ()),
        BatchUpdate("do_c", "b3", "u2", ("u2",), ()),
    ]
    assert t.update_statements(updates) == [
        (t.update_createdby(), (HOSTILE, "do_c", "b1")),
        (t.update_mentors(), (["x", HOSTILE], "do_'c", "b2")),
        (t.update_createdby(), ("u2", "do_c", "b3")),
        (t.update_mentors(), (["u2"], "do_c", "b3")),
    ]
    for cql, _ in t.update_statements(updates):
        assert HOSTILE not in cql and "'" not in cql


def test_statements_are_grouped_by_the_write_threshold() -> None:
    assert [len(g) for g in grouped(list(range(23)), 10)] == [10, 10, 3]
    assert grouped([], 10) == []
    with pytest.raises(ValueError):
        grouped([1], 0)


@pytest.mark.parametrize("name", ["sunbird;DROP", "a b", "", "1ks", "ks.table", 'x"'])
def test_configured_names_are_validated(name: str) -> None:
    with pytest.raises(ValueError):
        CourseBatchTable(name, "course_batch")
    with pytest.raises(ValueError):
        HandoverKeyspace(name)
    with pytest.raises(ValueError):
        AssetCypher(name)


def test_ledger_statements() -> None:
    ks = HandoverKeyspace("handover")
    entry = LedgerEntry("LP.1", "ownership-transfer", "applied", None, ("ROLE_NOT_ALLOWED",), 2, 3, "req'1", "u1", T0)
    assert ks.ledger_statements(entry) == [
        (
            "INSERT INTO handover.ledger (mid, action, outcome, reason, skipped, changed_batches, changed_assets, "
            "request_id, subject_user_id, processed_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("LP.1", "ownership-transfer", "applied", None, ["ROLE_NOT_ALLOWED"], 2, 3, "req'1", "u1", T0, ""),
        ),
        ("INSERT INTO handover.ledger_by_request (request_id, mid) VALUES (?, ?)", ("req'1", "LP.1")),
    ]
    no_request = LedgerEntry("LP.2", None, "rejected", "MALFORMED_EVENT", (), 0, 0, None, None, T0)
    assert len(ks.ledger_statements(no_request)) == 1


def test_notification_claim_is_a_lightweight_transaction() -> None:
    ks = HandoverKeyspace("handover")
    note = Notification("LP.3", ("a1", "a2"), {"do_q1": "Live", "do_x": None}, "Subj", "<p>x</p>", "Team")
    claim, old = uuid.UUID(int=1), uuid.UUID(int=2)
    cql, params = ks.claim_notification(note, claim, T0)
    assert cql == (
        "INSERT INTO handover.notification (mid, recipient_user_ids, assets, subject, body, regards, created_at, "
        "claim_id, claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
    )
    assert params == (
        "LP.3",
        ["a1", "a2"],
        '{"do_q1": "Live", "do_x": null}',
        "Subj",
        "<p>x</p>",
        "Team",
        T0,
        claim,
        T0,
    )
    assert ks.reclaim_notification("LP.3", old, claim, T0) == (
        "UPDATE handover.notification SET claim_id = ?, claimed_at = ? WHERE mid = ? "
        "IF claim_id = ? AND sent_at = null",
        (claim, T0, "LP.3", old),
    )
    cql, params = ks.release_notification("LP.3", claim)
    assert cql == "UPDATE handover.notification SET claimed_at = ? WHERE mid = ? IF claim_id = ?"
    assert params[1:] == ("LP.3", claim)
    assert ks.mark_notification_sent("LP.3", T0) == (
        "UPDATE handover.notification SET sent_at = ? WHERE mid = ?",
        (T0, "LP.3"),
    )


def test_audit_statements_and_pages() -> None:
    ks = HandoverKeyspace("handover")
    rec = AuditRecord("LP.1", "req", STORE_ASSET, "do_q1", FieldChange("originData.creator.name", None, "X"), T0)
    assert ks.audit_statements([rec]) == [
        (
            "INSERT INTO handover.audit (mid, store, record_key, field, request_id, before, after, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ("LP.1", "asset", "do_q1", "originData.creator.name", "req", None, '"X"', T0),
        )
    ]
    cols = "mid, store, record_key, field, request_id, before, after, at"
    assert ks.audit_page("LP.1", None, 50) == (f"SELECT {cols} FROM handover.audit WHERE mid = ? LIMIT ?", ("LP.1", 50))
    assert ks.audit_page("LP.1", ("asset", "do_q1", "creator"), 50) == (
        f"SELECT {cols} FROM handover.audit WHERE mid = ? AND (store, record_key, field) > (?, ?, ?) LIMIT ?",
        ("LP.1", "asset", "do_q1", "creator", 50),
    )


def test_a_createdby_change_is_indexed_under_both_users() -> None:
    ks = HandoverKeyspace("handover")
    moved = AuditRecord("LP.2", None, STORE_ASSET, "do_q1", FieldChange("createdBy", "u-ann", "u-ravi"), T0)
    named = AuditRecord("LP.2", None, STORE_ASSET, "do_q1", FieldChange("creator", "Ann", "Ravi"), T0)
    by_user = "INSERT INTO handover.audit_by_user (user_id, mid, store, record_key, side) VALUES (?, ?, ?, ?, ?)"
    statements = ks.audit_statements([moved, named])
    assert statements[:2] == [
        (by_user, ("u-ann", "LP.2", "asset", "do_q1", "before")),
        (by_user, ("u-ravi", "LP.2", "asset", "do_q1", "after")),
    ]
    assert [cql.split(" (")[0] for cql, _ in statements[2:]] == ["INSERT INTO handover.audit"] * 2
    assert ks.audit_statements([named]) == statements[3:]  # no createdBy change: nothing indexed
    assert ks.select_audit_by_user() == (
        "SELECT mid, store, record_key, side FROM handover.audit_by_user WHERE user_id = ?"
    )
    assert ks.audit_of_record("LP.2", "asset", "do_q1") == (
        "SELECT mid, store, record_key, field, request_id, before, after, at FROM handover.audit "
        "WHERE mid = ? AND store = ? AND record_key = ?",
        ("LP.2", "asset", "do_q1"),
    )


def test_keyspace_ddl_uses_the_configured_replication() -> None:
    ddl = HandoverKeyspace("ho_ks", Replication(factor=3)).ddl()
    assert ddl[0] == (
        "CREATE KEYSPACE IF NOT EXISTS ho_ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}"
    )
    assert all("IF NOT EXISTS" in d for d in ddl)
    nts = HandoverKeyspace("ho_ks", Replication("NetworkTopologyStrategy", datacenters=(("dc1", 3), ("dc-2", 2))))
    assert nts.ddl()[0] == (
        "CREATE KEYSPACE IF NOT EXISTS ho_ks WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3, "
        "'dc-2': 2}"
    )


# --- Neo4j ------------------------------------------------------------------------------------------


def test_cypher_of_a_users_assets_is_parameterized() -> None:
    q = AssetCypher("domain").created_by(HOSTILE, ["Question", "QuestionImage"], "do_q1", 500)
    assert q.text == (
        "MATCH (n:domain) WHERE n.IL_FUNC_OBJECT_TYPE IN $types AND n.IL_SYS_NODE_TYPE = $node_type "
        "AND n.createdBy = $user AND n.IL_UNIQUE_ID > $after WITH n ORDER BY n.IL_UNIQUE_ID LIMIT $limit "
        "RETURN properties(n) AS props"
    )
    assert q.params == {
        "types": ["Question", "QuestionImage"],
        "node_type": "DATA_NODE",
        "user": HOSTILE,
        "after": "do_q1",
        "limit": 500,
    }
    assert HOSTILE not in q.text


def test_cypher_of_one_asset_and_several() -> None:
    c = AssetCypher("domain")
    one = c.by_id('do_1"}) DETACH DELETE n //')
    assert one.text == (
        "MATCH (n:domain) WHERE n.IL_UNIQUE_ID = $id AND n.IL_SYS_NODE_TYPE = $node_type "
        "RETURN properties(n) AS props LIMIT 1"
    )
    assert one.params == {"id": 'do_1"}) DETACH DELETE n //', "node_type": "DATA_NODE"}
    many = c.by_ids(["a", "b"])
    assert many.params == {"ids": ["a", "b"], "node_type": "DATA_NODE"}
    assert "$ids" in many.text


def test_cypher_write_sets_top_level_properties_in_one_unwind() -> None:
    updates = [
        AssetUpdate("do_q1", "Question", {"createdBy": "u2", "creator": HOSTILE}, ()),
        AssetUpdate("do_qs1", "QuestionSet", {"originData": {"creator": {"name": "Deleted User"}}}, ()),
    ]
    q = AssetCypher("domain").write(updates)
    assert q.text == (
        "UNWIND $rows AS row MATCH (n:domain) WHERE n.IL_UNIQUE_ID = row.id AND n.IL_SYS_NODE_TYPE = $node_type "
        "SET n += row.props RETURN count(n) AS written"
    )
    assert q.params == {
        "rows": [
            {"id": "do_q1", "props": {"createdBy": "u2", "creator": HOSTILE}},
            {"id": "do_qs1", "props": {"originData": '{"creator": {"name": "Deleted User"}}'}},
        ],
        "node_type": "DATA_NODE",
    }


def test_nodes_round_trip_with_origin_data_as_a_json_string() -> None:
    asset = Asset(
        "do_qs1", "QuestionSet", None, "Draft", "Default", "u1", "Ann", {"creator": {"name": "Ann"}}, {"channel": "ch1"}
    )
    props = node_props(asset)
    assert props == {
        "IL_UNIQUE_ID": "do_qs1",
        "IL_FUNC_OBJECT_TYPE": "QuestionSet",
        "IL_SYS_NODE_TYPE": "DATA_NODE",
        "status": "Draft",
        "visibility": "Default",
        "createdBy": "u1",
        "creator": "Ann",
        "originData": '{"creator": {"name": "Ann"}}',
        "channel": "ch1",
    }
    assert asset_from_props(props) == asset
    broken = asset_from_props({**props, "originData": "{not json"})
    assert broken.originData is None
    assert to_graph_props({"list": [{"a": 1}], "plain": [1, 2]}) == {"list": '[{"a": 1}]', "plain": [1, 2]}


def test_upsert_and_dump_queries() -> None:
    c = AssetCypher("domain")
    up = c.upsert([Asset("do_1", "Question", createdBy="u1")])
    assert up.text == (
        "UNWIND $rows AS row MERGE (n:domain {IL_UNIQUE_ID: row.id}) SET n += row.props RETURN count(n) AS written"
    )
    row = up.params["rows"][0]
    assert row["id"] == "do_1"
    # the fixture's fields only; an empty one is a null (removed), other properties of a live node are kept
    assert row["props"]["createdBy"] == "u1" and row["props"]["creator"] is None and "name" not in row["props"]
    dump = c.all_data_nodes(["Question", "QuestionImage"], "", 1000)
    assert "n.IL_FUNC_OBJECT_TYPE IN $types" in dump.text
    assert dump.params == {"types": ["Question", "QuestionImage"], "node_type": "DATA_NODE", "after": "", "limit": 1000}


# --- userorg ----------------------------------------------------------------------------------------


def test_userorg_urls_encode_the_id_as_one_segment() -> None:
    e = UserOrgEndpoints("http://userorg:9000/userorg/", "/private/user/v1/read/")
    assert e.read_url("u-1") == "http://userorg:9000/userorg/private/user/v1/read/u-1"
    assert e.read_url("../admin?x=1") == "http://userorg:9000/userorg/private/user/v1/read/..%2Fadmin%3Fx%3D1"
    assert e.read_url("..") == "http://userorg:9000/userorg/private/user/v1/read/%2E%2E"
    assert e.search_url() == "http://userorg:9000/userorg/private/user/v1/search"
    assert e.notification_url() == "http://userorg:9000/userorg/v2/notification"


def test_userorg_search_and_notification_bodies() -> None:
    assert search_body(HOSTILE) == {
        "request": {
            "filters": {"id": HOSTILE},
            "fields": [
                "id",
                "userName",
                "firstName",
                "lastName",
                "rootOrgId",
                "status",
                "isDeleted",
                "organisations",
                "roles",
            ],
            "limit": 1,
        }
    }
    note = Notification("LP.1", ("a1",), {"do_1": "Live"}, 'Sub "j"', "<p>&lt;b&gt;</p>", "Team")
    assert json.loads(notification_payload(note)) == {
        "request": {
            "type": "email",
            "subject": 'Sub "j"',
            "body": "<p>&lt;b&gt;</p>",
            "regards": "Team",
            "recipientUserIds": ["a1"],
        }
    }


def test_profiles_become_users_with_roles_scoped_to_the_root_org() -> None:
    profile = {
        "id": "u1",
        "userName": "ann",
        "firstName": "Ann",
        "lastName": None,
        "rootOrgId": "org-1",
        "status": 1,
        "isDeleted": False,
        "organisations": [
            {"organisationId": "org-1", "roles": ["CONTENT_CREATOR", "PUBLIC"]},
            {"organisationId": "org-2", "roles": ["ORG_ADMIN"]},
        ],
        "roles": [
            {"role": "BOOK_CREATOR", "scope": [{"organisationId": "org-1"}]},
            {"role": "ORG_ADMIN", "scope": [{"organisationId": "org-2"}]},
            "PUBLIC",
        ],
    }
    user = user_from_profile(profile, "u1")
    assert user.roles == ("BOOK_CREATOR", "CONTENT_CREATOR", "PUBLIC")
    assert (user.firstName, user.lastName, user.rootOrgId, user.isDeleted) == ("Ann", "", "org-1", False)
    assert scoped_roles(profile, "org-2") == ("ORG_ADMIN",)
    assert user_from_profile({**profile, "status": 2}, "u1").isDeleted
    assert user_from_profile({**profile, "isDeleted": True}, "u1").isDeleted
    assert user_from_profile(profile, "u1", deleted=True).isDeleted


def test_the_deleted_user_answer_is_recognised() -> None:
    answer = {"params": {"err": "UOS_USRRED0006", "errmsg": "User account has been blocked .", "status": "FAILED"}}
    assert is_blocked_answer(400, answer)
    assert is_blocked_answer(400, {"params": {"err": None, "errmsg": "User account has been blocked ."}})
    assert not is_blocked_answer(400, {"params": {"err": "UOS_USRRED0030", "errmsg": "Mandatory parameter"}})
    assert not is_blocked_answer(500, answer)
    assert not is_blocked_answer(400, "nope")


def test_sorted_on_disk_merges_runs_and_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import random
    import tempfile

    from handover.adapters.sunbird import sorted_on_disk

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    records = [{"courseid": f"c{random.randrange(50)}", "batchid": f"b{n}"} for n in range(103)]

    def key(r: dict[str, str]) -> tuple[str, str]:
        return (r["courseid"], r["batchid"])

    assert list(sorted_on_disk(iter(records), key, run=10)) == sorted(records, key=key)  # 11 runs merged
    assert list(sorted_on_disk(iter(records), key, run=1000)) == sorted(records, key=key)  # one run, in memory
    assert list(sorted_on_disk(iter([]), key, run=10)) == []
    assert list(tmp_path.iterdir()) == []  # the runs are removed
