"""The Cassandra gateway on the real Cassandra 2.1.0 of the test suite: protocol step-down when
``lms-cassandra.protocol_version`` is not set, the consistency levels on every statement the gateway sends (seen by
the driver's request-init listener, i.e. what goes on the wire) and enforced by the server (a LOCAL_QUORUM that one
node cannot meet fails as Unavailable), the replication of ``handover init`` and DC-aware routing.

The server is one node in datacenter ``datacenter1`` (SimpleSnitch) with AllowAllAuthenticator."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import RoundRobinPolicy

from handover.adapters.cassandra import (
    CassandraConnection,
    CassandraGateway,
    CourseBatchTable,
    HandoverKeyspace,
    Replication,
)
from handover.adapters.sunbird import SunbirdStore
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.config import load_settings
from handover.domain.model import CourseBatch
from handover.domain.notification import Notification
from handover.domain.rules import BatchUpdate, FieldChange
from handover.service.ports import AuditRecord, LedgerEntry
from tests.servers.process import ServerProcess

T0 = datetime(2024, 5, 1, tzinfo=UTC)
LOCAL = "datacenter1"
GATEWAY_LOG = "handover.adapters.cassandra"


def round_robin() -> dict[object, ExecutionProfile]:
    return {EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)}


class Keyspaces:
    """Keyspace names of this test's own, dropped afterwards, and a plain driver session to set things up with."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.tag = uuid.uuid4().hex[:8]
        self.cluster = Cluster(["127.0.0.1"], port=port, protocol_version=3, execution_profiles=round_robin())
        self.session = self.cluster.connect()
        self.names: list[str] = []

    def name(self, prefix: str) -> str:
        name = f"{prefix}_{self.tag}"
        self.names.append(name)
        return name

    def course_batch(self, replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}") -> str:
        """A keyspace with the columns of ``course_batch`` handover reads and writes."""
        ks = self.name(f"lms{len(self.names)}")
        self.session.execute(f"CREATE KEYSPACE {ks} WITH replication = {replication}")
        self.session.execute(
            f"CREATE TABLE {ks}.course_batch (courseid text, batchid text, name text, status int, createdby text, "
            "mentors list<text>, PRIMARY KEY (courseid, batchid))"
        )
        return ks

    def drop(self) -> None:
        for name in self.names:
            self.session.execute(f"DROP KEYSPACE IF EXISTS {name}")
        self.cluster.shutdown()


@pytest.fixture
def keyspaces(cassandra_server: ServerProcess) -> Iterator[Keyspaces]:
    ks = Keyspaces(cassandra_server.port)
    try:
        yield ks
    finally:
        ks.drop()


@pytest.fixture
def gateway(keyspaces: Keyspaces) -> Iterator[Callable[..., CassandraGateway]]:
    """``gateway(lms_keyspace, handover_keyspace, replication=..., **connection options)``, closed afterwards."""
    made: list[CassandraGateway] = []

    def make(lms: str, handover: str, replication: Replication | None = None, **options: Any) -> CassandraGateway:
        options.setdefault("protocol_version", 3)
        connection = CassandraConnection(("127.0.0.1",), keyspaces.port, **options)
        g = CassandraGateway(
            connection, CourseBatchTable(lms), HandoverKeyspace(handover, replication or Replication()), 2
        )
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


def connection_env(port: int, **extra: str) -> dict[str, str]:
    return {
        "HANDOVER_LMS_CASSANDRA_HOST": "127.0.0.1",
        "HANDOVER_LMS_CASSANDRA_PORT": str(port),
        "HANDOVER_USERORG_SERVICE_BASE_URL": "http://127.0.0.1:9",
        **extra,
    }


def gateway_records(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == GATEWAY_LOG and r.levelno >= level]


# --- protocol negotiation -----------------------------------------------------------------------------------


def test_the_drivers_own_negotiation_fails_on_cassandra_21(cassandra_server: ServerProcess) -> None:
    """The server behaviour the step-down answers: the driver offers its newest version and gives up."""
    cluster = Cluster(["127.0.0.1"], port=cassandra_server.port, execution_profiles=round_robin())
    try:
        with pytest.raises(NoHostAvailable, match="unsupported protocol version: 66"):
            cluster.connect()
    finally:
        cluster.shutdown()


def test_with_the_setting_unset_the_store_steps_down_to_v3(
    cassandra_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    store = SunbirdStore(load_settings(None, environ=connection_env(cassandra_server.port)))
    assert store.config.cassandra.protocol_version is None
    try:
        with caplog.at_level(logging.INFO, logger=GATEWAY_LOG):
            row = store.cassandra.execute_plain("SELECT release_version FROM system.local", "reading").one()
        assert row.release_version == "2.1.0"
        assert store.cassandra.protocol_version == 3
        [warning] = gateway_records(caplog, logging.WARNING)
        assert "native protocol v3" in warning.getMessage()
        assert "set lms-cassandra.protocol_version = 3 to avoid this probe" in warning.getMessage()
        assert "unsupported protocol version: 66" in warning.getMessage()
        steps = [r.getMessage() for r in gateway_records(caplog) if "trying" in r.getMessage()]
        assert [s.rsplit(" ", 1)[1] for s in steps] == ["v4", "v3"]
    finally:
        store.close()


def test_with_the_setting_there_is_no_probe(
    keyspaces: Keyspaces, gateway: Callable[..., CassandraGateway], caplog: pytest.LogCaptureFixture
) -> None:
    g = gateway("unused", "unused", protocol_version=3)
    with caplog.at_level(logging.INFO, logger=GATEWAY_LOG):
        g.session()
    assert g.protocol_version == 3
    assert next(r.getMessage() for r in gateway_records(caplog)) == (
        f"cassandra: connected to 127.0.0.1:{keyspaces.port} with native protocol v3 (lms-cassandra.protocol_version)"
    )
    assert not gateway_records(caplog, logging.WARNING)


def test_a_set_version_the_server_does_not_speak_is_not_stepped_down(gateway: Callable[..., CassandraGateway]) -> None:
    g = gateway("unused", "unused", protocol_version=4)
    with pytest.raises(SunbirdStoreError, match=r"^cassandra: cannot connect .*the server does not speak v4: unset"):
        g.session()
    assert g.protocol_version is None


# --- consistency on the wire --------------------------------------------------------------------------------


def every_statement_kind(g: CassandraGateway) -> None:
    """Each gateway operation once: batches, bound reads/writes, concurrent reads, paged scans, the LWTs."""
    batches = [CourseBatch("do_c", f"b{i}", f"Batch {i}", 1, "u-a", ("u-a",)) for i in range(3)]
    g.upsert_batches(batches)  # LOGGED batches of 2
    assert set(g.read_batches([b.key for b in batches])) == {b.key for b in batches}  # concurrent bound reads
    g.write_batches([BatchUpdate("do_c", "b0", "u-b", ("u-b",), ())])
    assert {b.batchid: b.createdby for b in g.scan_batches()} == {"b0": "u-b", "b1": "u-a", "b2": "u-a"}
    entry = LedgerEntry("LP.1", "ownership-transfer", "applied", None, (), 1, 0, "req-1", "u-a", T0)
    g.ledger_put(entry)
    assert g.ledger_get("LP.1") == entry and g.ledger_by_request("req-1") == [entry]
    note = Notification("LP.1", ("admin",), {"do_q1": "Live"}, "Subject", "<p>body</p>", "Team")
    claim, again = uuid.UUID(int=1), uuid.UUID(int=2)
    assert g.notification_claim(note, claim, T0) is None  # INSERT ... IF NOT EXISTS
    existing = g.notification_claim(note, again, T0)
    assert existing is not None and existing.claim_id == claim
    assert g.notification_reclaim("LP.1", claim, again, T0)  # UPDATE ... IF claim_id = ? AND sent_at = null
    g.notification_release("LP.1", again)  # UPDATE ... IF claim_id = ?
    g.notification_sent("LP.1", T0)
    assert [n["mid"] for n in g.scan_notifications()] == ["LP.1"]
    record = AuditRecord("LP.1", "req-1", "course_batch", "do_c/b0", FieldChange("createdby", "u-a", "u-b"), T0)
    g.audit_put([record])
    assert g.audit_rows("LP.1", None, 10) == [record]


@pytest.mark.parametrize(
    ("options", "level", "serial"),
    [
        ({}, ConsistencyLevel.LOCAL_QUORUM, ConsistencyLevel.LOCAL_SERIAL),  # upstream's, the default
        ({"consistency": "ONE", "serial_consistency": "SERIAL"}, ConsistencyLevel.ONE, ConsistencyLevel.SERIAL),
    ],
    ids=["default-LOCAL_QUORUM", "configured-ONE"],
)
def test_every_statement_goes_out_at_the_configured_levels(
    keyspaces: Keyspaces,
    gateway: Callable[..., CassandraGateway],
    options: dict[str, str],
    level: int,
    serial: int,
) -> None:
    g = gateway(keyspaces.course_batch(), keyspaces.name("ho"), **options)
    g.init_schema()
    sent: list[tuple[str, int | None, int | None, str]] = []

    def record(future: Any) -> None:
        m, q = future.message, future.query
        text = getattr(getattr(q, "prepared_statement", q), "query_string", "")
        sent.append((type(m).__name__, m.consistency_level, m.serial_consistency_level, str(text)))

    g.session().add_request_init_listener(record)
    every_statement_kind(g)

    kinds = {kind for kind, *_ in sent}
    assert kinds == {"QueryMessage", "ExecuteMessage", "BatchMessage"}
    assert [s for s in sent if (s[1], s[2]) != (level, serial)] == []
    lwts = [text for kind, _, _, text in sent if kind == "ExecuteMessage" and " IF " in text]
    assert len(lwts) == 4  # claim twice, reclaim, release: each sent with the serial level above
    assert len(sent) >= 14


# --- a quorum the cluster cannot meet -----------------------------------------------------------------------

UNMET = "Unavailable: consistency LOCAL_QUORUM needs 2 live replicas, 1 alive"


@pytest.mark.parametrize(
    "replication",
    [Replication(factor=3), Replication("NetworkTopologyStrategy", datacenters=((LOCAL, 3),))],
    ids=["SimpleStrategy-3", "NetworkTopologyStrategy-3"],
)
def test_an_unmet_local_quorum_fails_clearly(
    keyspaces: Keyspaces, gateway: Callable[..., CassandraGateway], replication: Replication
) -> None:
    """Three replicas wanted, one node: LOCAL_QUORUM (2) cannot be met; LOCAL_ONE could, and does below."""
    lms = keyspaces.course_batch(replication.cql())
    handover = keyspaces.name("ho")
    g = gateway(lms, handover, replication)
    g.init_schema()
    batch = CourseBatch("do_c", "b1", "Batch", 1, "u-a", ())
    note = Notification("LP.9", ("admin",), {}, "S", "B", "T")
    entry = LedgerEntry("LP.9", None, "rejected", "MALFORMED_EVENT", (), 0, 0, None, None, T0)
    attempts: dict[str, Callable[[], object]] = {
        "loading sunbird": lambda: g.upsert_batches([batch]),
        "reading lms": lambda: g.read_batches([batch.key]),
        "updating lms": lambda: g.write_batches([BatchUpdate("do_c", "b1", "u-b", None, ())]),
        "reading lms scan": lambda: list(g.scan_batches()),
        "writing the ledger": lambda: g.ledger_put(entry),
        "reading the ledger": lambda: g.ledger_get("LP.9"),
        "claiming the notification": lambda: g.notification_claim(note, uuid.UUID(int=1), T0),
    }
    for what, attempt in attempts.items():
        with pytest.raises(SunbirdStoreError) as failed:
            attempt()
        message = str(failed.value)
        assert message.startswith("cassandra: "), what
        assert UNMET in message, (what, message)
        assert failed.value.store == "cassandra"

    # the same statements at LOCAL_ONE succeed on the same keyspaces: the level is what failed above
    one = gateway(lms, handover, replication, consistency="LOCAL_ONE")
    one.upsert_batches([batch])
    assert one.read_batches([batch.key]) == {batch.key: batch}
    one.ledger_put(entry)
    assert one.ledger_get("LP.9") == entry


# --- handover init: replication -----------------------------------------------------------------------------


def replication_in_schema(keyspaces: Keyspaces, name: str) -> dict[str, str]:
    row = keyspaces.session.execute(
        "SELECT strategy_class, strategy_options FROM system.schema_keyspaces WHERE keyspace_name = %s", [name]
    ).one()
    import json

    return {"class": row.strategy_class.rsplit(".", 1)[1], **json.loads(row.strategy_options)}


def test_init_says_when_it_creates_a_single_copy_keyspace(
    keyspaces: Keyspaces, gateway: Callable[..., CassandraGateway], caplog: pytest.LogCaptureFixture
) -> None:
    ks = keyspaces.name("ho")
    g = gateway("unused", ks)
    with caplog.at_level(logging.WARNING, logger=GATEWAY_LOG):
        g.init_schema()
    [warning] = gateway_records(caplog, logging.WARNING)
    assert f"creating keyspace {ks} with SimpleStrategy, replication_factor 1" in warning.getMessage()
    assert replication_in_schema(keyspaces, ks) == {"class": "SimpleStrategy", "replication_factor": "1"}

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=GATEWAY_LOG):
        g.init_schema()  # exists as configured: nothing to say
    assert not gateway_records(caplog, logging.WARNING)

    caplog.clear()
    other = gateway("unused", ks, Replication(factor=3))
    with caplog.at_level(logging.WARNING, logger=GATEWAY_LOG):
        other.init_schema()
    [warning] = gateway_records(caplog, logging.WARNING)
    assert f"keyspace {ks} exists with replication" in warning.getMessage() and "leaves it" in warning.getMessage()
    assert replication_in_schema(keyspaces, ks)["replication_factor"] == "1"  # not altered


def test_init_creates_network_topology_replication(
    keyspaces: Keyspaces, gateway: Callable[..., CassandraGateway], caplog: pytest.LogCaptureFixture
) -> None:
    ks = keyspaces.name("ho")
    g = gateway("unused", ks, Replication("NetworkTopologyStrategy", datacenters=((LOCAL, 1),)), multi_dc=True)
    with caplog.at_level(logging.WARNING, logger=GATEWAY_LOG):
        g.init_schema()
    assert not gateway_records(caplog, logging.WARNING)
    assert replication_in_schema(keyspaces, ks) == {"class": "NetworkTopologyStrategy", LOCAL: "1"}
    g.ledger_put(LedgerEntry("LP.1", None, "rejected", "MALFORMED_EVENT", (), 0, 0, None, None, T0))
    assert g.ledger_get("LP.1") is not None  # LOCAL_QUORUM of one replica in the local datacenter


def test_init_refuses_a_datacenter_the_cluster_does_not_have(
    keyspaces: Keyspaces, gateway: Callable[..., CassandraGateway]
) -> None:
    ks = keyspaces.name("ho")
    g = gateway("unused", ks, Replication("NetworkTopologyStrategy", datacenters=((LOCAL, 1), ("dc-west", 3))))
    with pytest.raises(SunbirdStoreError, match=r"names dc-west, not a datacenter of the cluster \(datacenter1\)"):
        g.init_schema()
    assert (
        keyspaces.session.execute(
            "SELECT keyspace_name FROM system.schema_keyspaces WHERE keyspace_name = %s", [ks]
        ).one()
        is None
    )


# --- routing and credentials --------------------------------------------------------------------------------


def test_multi_dc_routing_takes_the_local_datacenter_from_the_contact_point(
    gateway: Callable[..., CassandraGateway], caplog: pytest.LogCaptureFixture
) -> None:
    g = gateway("unused", "unused", multi_dc=True)
    with caplog.at_level(logging.INFO, logger=GATEWAY_LOG):
        assert g.datacenters() == {LOCAL}
    assert any(f"local datacenter {LOCAL}" in r.getMessage() for r in gateway_records(caplog))
    named = gateway("unused", "unused", multi_dc=True, local_dc=LOCAL)
    assert named.execute_plain("SELECT data_center FROM system.local", "reading").one().data_center == LOCAL


def test_a_local_datacenter_the_cluster_does_not_have_fails_clearly(gateway: Callable[..., CassandraGateway]) -> None:
    g = gateway("unused", "unused", multi_dc=True, local_dc="dc-west")
    with pytest.raises(SunbirdStoreError, match=r"is lms-cassandra\.local_dc = 'dc-west' the datacenter of a contact"):
        g.session()


def test_credentials_are_offered_to_a_server_that_does_not_ask(
    keyspaces: Keyspaces, gateway: Callable[..., CassandraGateway]
) -> None:
    """This server runs AllowAllAuthenticator, so it never asks for them: configuring credentials must not stop
    the connection. (That they are sent when asked is the driver's PlainTextAuthProvider; not checked here: no
    server with PasswordAuthenticator runs in the test suite.)"""
    lms = keyspaces.course_batch()
    g = gateway(lms, "unused", username="cassandra", password="cassandra")
    g.upsert_batches([CourseBatch("do_c", "b1", "Batch", 1, "u-a", ())])
    assert [b.batchid for b in g.scan_batches()] == ["b1"]
