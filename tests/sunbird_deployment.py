"""A Sunbird deployment's stores as Sunbird has them, on the test servers, written and read with the drivers
directly (never through handover's own writers, so that a test does not check handover against itself).

- Cassandra: ``course_batch`` with every column of the LMS schema (Sunbird-Lern/lms-service's CQL), in a keyspace of
  the test's own.
- Elasticsearch: the ``course-batch`` index with the LMS mapping and settings of ``shared/upstream/lms``, documents
  shaped as the LMS indexes a batch.
- Graph: data nodes with Sunbird's system properties (``IL_UNIQUE_ID``, ``IL_FUNC_OBJECT_TYPE``,
  ``IL_SYS_NODE_TYPE``) and metadata beyond handover's fields, under a label of the test's own, with a unique
  constraint on ``IL_UNIQUE_ID`` as Sunbird's graph has one (its Knowlg set-up runs ``CREATE CONSTRAINT ON
  (domain:domain) ASSERT domain.IL_UNIQUE_ID IS UNIQUE``; ArcadeDB takes the Neo4j 5 form) unless
  ``unique_id_constraint`` is False. handover's statements are the same either way; the constraint's index only
  makes the look-ups by identifier cheaper.

``Deployment.env`` is the ``HANDOVER_*`` settings that point handover at it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import UPSTREAM
from tests.servers import arcadedb

# Sunbird-Lern/lms-service, sunbird_courses.course_batch (PRIMARY KEY (courseid, batchid))
COURSE_BATCH_COLUMNS = {
    "courseid": "text",
    "batchid": "text",
    "cert_templates": "map<text, frozen<map<text, text>>>",
    "createdby": "text",
    "createddate": "text",
    "createdfor": "list<text>",
    "description": "text",
    "enddate": "text",
    "enrollmentenddate": "text",
    "enrollmenttype": "text",
    "mentors": "list<text>",
    "name": "text",
    "startdate": "text",
    "status": "int",
    "updateddate": "text",
}
CQL_PROTOCOL_VERSION = 3  # Cassandra 2.1
# Cassandra 2.1.0 has no nested collections (frozen<collection> came in 2.1.3): on this server the column holds
# each template as JSON text instead. tests/sunbird/test_servers.py shows the server's refusal.
CASSANDRA_21_COLUMNS = {**COURSE_BATCH_COLUMNS, "cert_templates": "map<text, text>"}


def index_definition() -> dict[str, Any]:
    """The LMS mapping and settings of ``course-batch`` (written for Elasticsearch 6.x), made acceptable to 7+:
    7+ refuses the 1-20 ngram filter unless ``index.max_ngram_diff`` allows it, and 7.0 removed the ``standard``
    token filter (a no-op since 5.x) that ``cs_search_analyzer`` lists. One shard, no replica."""
    mapping = json.loads((UPSTREAM / "lms" / "course-batch-mapping.json").read_text())
    settings = json.loads((UPSTREAM / "lms" / "course-batch-settings.json").read_text())["settings"]
    settings["index"].update(number_of_shards="1", number_of_replicas="0", max_ngram_diff="19")
    search = settings["index"]["analysis"]["analyzer"]["cs_search_analyzer"]
    search["filter"] = [f for f in search["filter"] if f != "standard"]
    return {"settings": settings, "mappings": mapping}


def batch_row(batch: Mapping[str, Any]) -> dict[str, Any]:
    """A fixture batch as the LMS stores it: every column set (values handover must leave alone)."""
    bid = batch["batchid"]
    return {
        "courseid": batch["courseid"],
        "batchid": bid,
        "cert_templates": {"tmpl-1": {"name": "Completion", "url": f"https://example.org/{bid}.svg"}},
        "createdby": batch["createdby"],
        "createddate": "2024-01-02 10:00:00:000+0000",
        "createdfor": ["org-1"],
        "description": f"Description of {bid}",
        "enddate": "2030-12-31",
        "enrollmentenddate": "2030-12-01",
        "enrollmenttype": "open",
        "mentors": list(batch.get("mentors") or []),
        "name": batch.get("name", bid),
        "startdate": "2024-02-01",
        "status": batch["status"],
        "updateddate": "2024-01-03 10:00:00:000+0000",
    }


def batch_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The search copy of a row, shaped as the LMS indexes a batch (doc id = batch id)."""
    return {
        "id": row["batchid"],
        "identifier": row["batchid"],
        "batchId": row["batchid"],
        "courseId": row["courseid"],
        "name": row["name"],
        "description": row["description"],
        "status": row["status"],
        "createdBy": row["createdby"],
        "mentors": list(row["mentors"]),
        "createdFor": list(row["createdfor"]),
        "enrollmentType": row["enrollmenttype"],
        "startDate": row["startdate"],
        "endDate": row["enddate"],
        "enrollmentEndDate": row["enrollmentenddate"],
        "createdDate": row["createddate"],
        "participantCount": 3,
    }


def node_properties(asset: Mapping[str, Any]) -> dict[str, Any]:
    """A fixture asset as Sunbird's graph stores it: system properties, metadata beyond handover's fields, maps as
    JSON strings, no null properties."""
    props: dict[str, Any] = {
        "IL_UNIQUE_ID": asset["identifier"],
        "IL_FUNC_OBJECT_TYPE": asset["objectType"],
        "IL_SYS_NODE_TYPE": "DATA_NODE",
        "channel": "channel-org-1",
        "primaryCategory": "Multiple Choice Question",
        "versionKey": "1712750750956",
        "name": f"Name of {asset['identifier']}",
    }
    for key in ("schemaVersion", "status", "visibility", "createdBy", "creator"):
        if asset.get(key) is not None:
            props[key] = asset[key]
    if asset.get("originData") is not None:
        props["originData"] = json.dumps(asset["originData"], sort_keys=True)
    return props


@dataclass
class Deployment:
    cassandra_port: int
    es_url: str
    bolt_uri: str
    userorg_url: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    unique_id_constraint: bool = True
    _cassandra: Any = None
    _neo4j: Any = None

    @property
    def lms_keyspace(self) -> str:
        return f"sb_courses_{self.tag}"

    @property
    def handover_keyspace(self) -> str:
        return f"ho_{self.tag}"

    @property
    def index(self) -> str:
        return f"course-batch-{self.tag}"

    @property
    def label(self) -> str:
        return f"domain_{self.tag}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "HANDOVER_LMS_CASSANDRA_HOST": "127.0.0.1",
            "HANDOVER_LMS_CASSANDRA_PORT": str(self.cassandra_port),
            "HANDOVER_LMS_CASSANDRA_KEYSPACE": self.lms_keyspace,
            "HANDOVER_LMS_CASSANDRA_PROTOCOL_VERSION": str(CQL_PROTOCOL_VERSION),
            "HANDOVER_HANDOVER_CASSANDRA_KEYSPACE": self.handover_keyspace,
            "HANDOVER_ES_BASEPATH": self.es_url,
            "HANDOVER_ES_COURSE_BATCH_INDEX": self.index,
            "HANDOVER_NEO4J_ROUTEPATH": self.bolt_uri,
            "HANDOVER_NEO4J_USER": arcadedb.USER,
            "HANDOVER_NEO4J_PASSWORD": arcadedb.PASSWORD,
            "HANDOVER_NEO4J_GRAPH": self.label,
            "HANDOVER_USERORG_SERVICE_BASE_URL": self.userorg_url,
        }

    # --- drivers --------------------------------------------------------------------------------------------
    def cql(self) -> Any:
        if self._cassandra is None:
            from cassandra.cluster import Cluster

            cluster = Cluster(["127.0.0.1"], port=self.cassandra_port, protocol_version=CQL_PROTOCOL_VERSION)
            self._cassandra = cluster.connect()
            self._cassandra.default_timeout = 30
        return self._cassandra

    def graph(self) -> Any:
        if self._neo4j is None:
            import neo4j

            self._neo4j = neo4j.GraphDatabase.driver(self.bolt_uri, auth=(arcadedb.USER, arcadedb.PASSWORD))
        return self._neo4j

    def cypher(self, text: str, **params: Any) -> list[dict[str, Any]]:
        with self.graph().session() as session:
            return [dict(r) for r in session.run(text, params)]

    def es(self, method: str, path: str, body: Any = None, ndjson: Sequence[Any] | None = None) -> Any:
        if ndjson is not None:
            content = "".join(json.dumps(line) + "\n" for line in ndjson).encode()
            headers = {"Content-Type": "application/x-ndjson"}
        else:
            content = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"}
        response = httpx.request(method, self.es_url + path, content=content, headers=headers, timeout=30)
        if response.status_code >= 400 and not (method == "DELETE" and response.status_code == 404):
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    # --- set up, seed, read, drop ---------------------------------------------------------------------------
    def columns(self) -> dict[str, str]:
        version = self.cql().execute("SELECT release_version FROM system.local").one().release_version
        return CASSANDRA_21_COLUMNS if version.startswith("2.1.") else COURSE_BATCH_COLUMNS

    def create(self) -> None:
        columns = ", ".join(f"{name} {kind}" for name, kind in self.columns().items())
        self.cql().execute(
            f"CREATE KEYSPACE {self.lms_keyspace} WITH replication = {{'class': 'SimpleStrategy', "
            "'replication_factor': 1}"
        )
        self.cql().execute(
            f"CREATE TABLE {self.lms_keyspace}.course_batch ({columns}, PRIMARY KEY (courseid, batchid))"
        )
        self.es("PUT", f"/{self.index}", index_definition())
        if self.unique_id_constraint:
            self.cypher(
                f"CREATE CONSTRAINT {self.label}_id IF NOT EXISTS FOR (n:{self.label}) REQUIRE n.IL_UNIQUE_ID IS UNIQUE"
            )

    def seed(self, fixture: Mapping[str, Any]) -> None:
        """Write a fixture's course batches (row + document) and assets (nodes)."""
        rows = [batch_row(b) for b in fixture.get("course_batches", [])]
        names = list(COURSE_BATCH_COLUMNS)
        insert = self.cql().prepare(
            f"INSERT INTO {self.lms_keyspace}.course_batch ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        )
        nested = self.columns()["cert_templates"] == COURSE_BATCH_COLUMNS["cert_templates"]
        for row in rows:
            values = dict(row)
            if not nested:
                values["cert_templates"] = {k: json.dumps(v, sort_keys=True) for k, v in row["cert_templates"].items()}
            self.cql().execute(insert, [values[n] for n in names])
        lines: list[Any] = []
        for row in rows:
            lines += [{"index": {"_index": self.index, "_id": row["batchid"]}}, batch_document(row)]
        if lines:
            result = self.es("POST", "/_bulk?refresh=true", ndjson=lines)
            assert not result.get("errors"), result
        nodes = [node_properties(a) for a in fixture.get("assets", [])]
        if nodes:
            self.cypher(f"UNWIND $rows AS row CREATE (n:{self.label}) SET n = row", rows=nodes)

    def rows(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every course_batch row, all columns, by (courseid, batchid)."""
        out = {}
        for row in self.cql().execute(f"SELECT * FROM {self.lms_keyspace}.course_batch"):
            values = row._asdict()
            values["mentors"] = list(values["mentors"] or [])
            values["createdfor"] = list(values["createdfor"] or [])
            values["cert_templates"] = {
                k: json.loads(v) if isinstance(v, str) else dict(v) for k, v in (values["cert_templates"] or {}).items()
            }
            out[(values["courseid"], values["batchid"])] = values
        return out

    def documents(self) -> dict[str, dict[str, Any]]:
        """Every document of the index (its _source), by id, as a search sees it after a refresh."""
        self.es("POST", f"/{self.index}/_refresh")
        found = self.es("POST", f"/{self.index}/_search", {"size": 10_000, "query": {"match_all": {}}})
        return {hit["_id"]: hit["_source"] for hit in found["hits"]["hits"]}

    def nodes(self) -> dict[str, dict[str, Any]]:
        rows = self.cypher(f"MATCH (n:{self.label}) RETURN properties(n) AS props")
        return {r["props"]["IL_UNIQUE_ID"]: r["props"] for r in rows}

    def drop(self) -> None:
        for keyspace in (self.lms_keyspace, self.handover_keyspace):
            self.cql().execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        self.es("DELETE", f"/{self.index}")
        self.cypher(f"MATCH (n:{self.label}) DETACH DELETE n")
        if self._cassandra is not None:
            self._cassandra.cluster.shutdown()
        if self._neo4j is not None:
            self._neo4j.close()
