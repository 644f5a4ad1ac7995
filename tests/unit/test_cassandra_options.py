"""The Cassandra connection options and statements, built without a server: consistency on every statement kind
(upstream's LOCAL_QUORUM / LOCAL_SERIAL by default), the load-balancing policy (DC-aware with
``lms-cassandra.isMultiDCEnabled``), credentials, the protocol version, the replication of handover's keyspace, and
the error texts. Against the real server: ``tests/sunbird/test_cassandra.py``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cassandra import ConsistencyLevel, Unavailable
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.metadata import NetworkTopologyStrategy, SimpleStrategy
from cassandra.policies import DCAwareRoundRobinPolicy, RoundRobinPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement, SimpleStatement

from handover.adapters.cassandra import (
    CassandraConnection,
    HandoverKeyspace,
    Replication,
    describe,
    protocol_refusal,
    replication_of,
)
from handover.adapters.sunbird import SunbirdConfig
from handover.config import ConfigError, load_settings
from tests.conftest import UPSTREAM

LQ, LS = ConsistencyLevel.LOCAL_QUORUM, ConsistencyLevel.LOCAL_SERIAL
HOSTS = ("10.0.0.1", "10.0.0.2")
# what Cassandra 2.1.0 answers to the driver's first offer (copied from a run against the test server)
REFUSAL_21 = (
    "Did not get expected SupportedMessage response; instead, got: <Error from server: code=0000 [Server error] "
    'message="io.netty.handler.codec.DecoderException: org.apache.cassandra.transport.ProtocolException: Invalid or '
    'unsupported protocol version: 66">'
)


def prepared_statement(cql: str) -> PreparedStatement:
    """A prepared statement as the driver builds it from a server's answer (no columns bound)."""
    return PreparedStatement([], b"id", None, cql, None, 3, None, None)


# --- consistency on every statement kind ---------------------------------------------------------------------


def test_upstream_levels_are_the_default() -> None:
    c = CassandraConnection(HOSTS)
    assert (c.consistency, c.serial_consistency) == ("LOCAL_QUORUM", "LOCAL_SERIAL")
    assert (c.consistency_level(), c.serial_consistency_level()) == (LQ, LS)


def test_simple_statements_carry_both_levels() -> None:
    stmt = CassandraConnection(HOSTS).simple("SELECT x FROM ks.t", fetch_size=1000)
    assert isinstance(stmt, SimpleStatement)
    assert (stmt.consistency_level, stmt.serial_consistency_level, stmt.fetch_size) == (LQ, LS, 1000)


def test_batches_are_logged_and_carry_both_levels() -> None:
    batch = CassandraConnection(HOSTS).batch()
    assert isinstance(batch, BatchStatement) and batch.batch_type == BatchType.LOGGED
    assert (batch.consistency_level, batch.serial_consistency_level) == (LQ, LS)


def test_prepared_statements_and_what_is_bound_from_them_carry_both_levels() -> None:
    c = CassandraConnection(HOSTS)
    for cql in ("SELECT a FROM ks.t WHERE k = ?", "UPDATE ks.t SET a = ? WHERE k = ? IF a = ?"):
        prepared = c.prepared(prepared_statement(cql))
        assert (prepared.consistency_level, prepared.serial_consistency_level) == (LQ, LS)
        bound = prepared.bind(())
        assert (bound.consistency_level, bound.serial_consistency_level) == (LQ, LS)


def test_the_levels_are_configurable() -> None:
    c = CassandraConnection(HOSTS, consistency=" quorum ", serial_consistency="serial")
    assert (c.consistency, c.serial_consistency) == ("QUORUM", "SERIAL")
    assert c.simple("SELECT 1").consistency_level == ConsistencyLevel.QUORUM
    assert c.batch().serial_consistency_level == ConsistencyLevel.SERIAL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"consistency": "LOCAL_SERIAL"}, "consistency_level"),  # a Paxos level, not a read/write level
        ({"consistency": "ANY"}, "consistency_level"),  # cannot read
        ({"consistency": "MOSTLY"}, "consistency_level"),
        ({"serial_consistency": "LOCAL_QUORUM"}, "serial_consistency_level"),
        ({"protocol_version": 7}, "protocol_version"),
        ({"username": "cassandra"}, "together"),
        ({"password": "secret"}, "together"),
        ({"local_dc": "dc1"}, "isMultiDCEnabled"),
    ],
)
def test_options_that_cannot_work_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CassandraConnection(HOSTS, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no host"):
        CassandraConnection(())


# --- cluster options -----------------------------------------------------------------------------------------


def test_cluster_options_single_dc() -> None:
    options = CassandraConnection(HOSTS, port=9142, timeout=4.0).cluster_options(None)
    assert "protocol_version" not in options and "auth_provider" not in options
    assert (options["contact_points"], options["port"], options["connect_timeout"]) == (list(HOSTS), 9142, 4.0)
    profile = options["execution_profiles"][EXEC_PROFILE_DEFAULT]
    assert (profile.consistency_level, profile.serial_consistency_level, profile.request_timeout) == (LQ, LS, 4.0)
    policy = profile.load_balancing_policy
    assert isinstance(policy, TokenAwarePolicy) and type(policy._child_policy) is RoundRobinPolicy


def test_cluster_options_multi_dc_route_to_the_local_datacenter() -> None:
    named = CassandraConnection(HOSTS, multi_dc=True, local_dc="dc-east").routing_policy()
    assert isinstance(named, DCAwareRoundRobinPolicy)
    assert (named.local_dc, named.used_hosts_per_remote_dc) == ("dc-east", 0)  # remote datacenters never used
    inferred = CassandraConnection(HOSTS, multi_dc=True).routing_policy()
    assert isinstance(inferred, DCAwareRoundRobinPolicy) and inferred.local_dc == ""  # the first contact point's
    options = CassandraConnection(HOSTS, multi_dc=True).cluster_options(3, inferred)
    assert options["execution_profiles"][EXEC_PROFILE_DEFAULT].load_balancing_policy._child_policy is inferred
    assert options["protocol_version"] == 3


def test_credentials_become_a_plain_text_auth_provider() -> None:
    options = CassandraConnection(HOSTS, username="sunbird", password="s3cret").cluster_options(None)
    auth = options["auth_provider"]
    assert isinstance(auth, PlainTextAuthProvider)
    assert (auth.username, auth.password) == ("sunbird", "s3cret")
    assert "s3cret" not in repr(CassandraConnection(HOSTS, username="sunbird", password="s3cret"))


def test_the_driver_gets_an_explicit_load_balancing_policy(caplog: pytest.LogCaptureFixture) -> None:
    """The driver warns at construction when contact points come without a policy; these options give one."""
    with caplog.at_level(logging.WARNING, logger="cassandra.cluster"):
        Cluster(["127.0.0.1"]).shutdown()
        assert "load-balancing policy" in caplog.text  # the driver's warning, without options
        caplog.clear()
        Cluster(**CassandraConnection(("127.0.0.1",)).cluster_options(None)).shutdown()
        Cluster(**CassandraConnection(("127.0.0.1",), multi_dc=True).cluster_options(4)).shutdown()
    assert "load-balancing policy" not in caplog.text


# --- settings ------------------------------------------------------------------------------------------------


def test_settings_reach_the_connection() -> None:
    env = {
        "HANDOVER_LMS_CASSANDRA_ISMULTIDCENABLED": "true",
        "HANDOVER_LMS_CASSANDRA_LOCAL_DC": "dc1",
        "HANDOVER_LMS_CASSANDRA_CONSISTENCY_LEVEL": "quorum",
        "HANDOVER_LMS_CASSANDRA_USERNAME": "cassandra",
        "HANDOVER_LMS_CASSANDRA_PASSWORD": "cassandra",
        "HANDOVER_LMS_CASSANDRA_PROTOCOL_VERSION": "4",
        "HANDOVER_HANDOVER_CASSANDRA_REPLICATION_CLASS": "NetworkTopologyStrategy",
        "HANDOVER_HANDOVER_CASSANDRA_DATACENTERS": "dc1:3, dc2:2",
    }
    c = SunbirdConfig.from_settings(load_settings(UPSTREAM / "lern" / "user-ownership-transfer.conf", environ=env))
    assert (c.cassandra.multi_dc, c.cassandra.local_dc, c.cassandra.consistency) == (True, "dc1", "QUORUM")
    assert (c.cassandra.username, c.cassandra.password, c.cassandra.protocol_version) == ("cassandra", "cassandra", 4)
    assert c.handover.replication == Replication("NetworkTopologyStrategy", 1, (("dc1", 3), ("dc2", 2)))


def test_is_multi_dc_enabled_read_from_an_upstream_file(tmp_path: Path) -> None:
    conf = tmp_path / "job.conf"
    conf.write_text(
        f'include "{UPSTREAM / "lern" / "base-config.conf"}"\n'
        'lms-cassandra { isMultiDCEnabled = true }\nservice.userorg.basePath = "http://userorg"\n'
    )
    settings = load_settings(conf, environ={})
    assert SunbirdConfig.from_settings(settings).cassandra.multi_dc is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HANDOVER_LMS_CASSANDRA_CONSISTENCY_LEVEL": "LOCAL_SERIAL"}, "consistency_level"),
        ({"HANDOVER_LMS_CASSANDRA_USERNAME": "cassandra"}, "password"),
        ({"HANDOVER_LMS_CASSANDRA_ISMULTIDCENABLED": "perhaps"}, "isMultiDCEnabled"),
        ({"HANDOVER_HANDOVER_CASSANDRA_REPLICATION_CLASS": "NetworkTopologyStrategy"}, "datacenters"),
        ({"HANDOVER_HANDOVER_CASSANDRA_REPLICATION_CLASS": "LocalStrategy"}, "replication_class"),
        ({"HANDOVER_HANDOVER_CASSANDRA_DATACENTERS": "dc1:3"}, "not SimpleStrategy"),
        (
            {
                "HANDOVER_HANDOVER_CASSANDRA_REPLICATION_CLASS": "NetworkTopologyStrategy",
                "HANDOVER_HANDOVER_CASSANDRA_DATACENTERS": "dc1",
            },
            "<datacenter>:<factor>",
        ),
    ],
)
def test_bad_cassandra_settings_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SunbirdConfig.from_settings(load_settings(UPSTREAM / "lern" / "user-ownership-transfer.conf", environ=env))


# --- replication of handover's keyspace ---------------------------------------------------------------------


def test_replication_default_is_one_copy_and_says_so() -> None:
    assert Replication().single_copy
    assert not Replication(factor=3).single_copy
    assert not Replication("NetworkTopologyStrategy", datacenters=(("dc1", 1),)).single_copy


def test_replication_class_may_be_given_in_full() -> None:
    full = Replication("org.apache.cassandra.locator.NetworkTopologyStrategy", datacenters=(("dc1", 3),))
    assert full.strategy == "NetworkTopologyStrategy"
    assert full.cql() == "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"


@pytest.mark.parametrize(
    "datacenters",
    [(("dc1'}; DROP KEYSPACE x; --", 3),), (("dc 1", 3),), (("", 3),), (("dc1", 0),), (("dc1", 3), ("dc1", 2))],
)
def test_datacenter_names_and_factors_are_validated(datacenters: tuple[tuple[str, int], ...]) -> None:
    with pytest.raises(ValueError, match="datacenters"):
        Replication("NetworkTopologyStrategy", datacenters=datacenters)


def test_datacenters_parse() -> None:
    assert Replication.parse_datacenters(["dc1:3", " us-east-1 : 2"]) == (("dc1", 3), ("us-east-1", 2))
    for bad in (["dc1"], ["dc1:three"], ["dc1:-1"]):
        with pytest.raises(ValueError, match="datacenters"):
            Replication.parse_datacenters(bad)


def test_replication_compares_with_what_the_driver_reports() -> None:
    simple = SimpleStrategy({"replication_factor": "1"})
    nts = NetworkTopologyStrategy({"dc1": "3", "dc2": "2"})
    assert replication_of(simple) == Replication().options()
    assert replication_of(nts) == Replication("NetworkTopologyStrategy", datacenters=(("dc1", 3), ("dc2", 2))).options()
    assert replication_of(nts) != Replication("NetworkTopologyStrategy", datacenters=(("dc1", 3),)).options()
    assert replication_of(object()) is None
    assert HandoverKeyspace("ho").replication == Replication()


# --- error texts ---------------------------------------------------------------------------------------------


def test_an_unmet_consistency_level_is_described() -> None:
    unavailable = Unavailable(
        "Cannot achieve consistency level LOCAL_QUORUM", consistency=LQ, required_replicas=2, alive_replicas=1
    )
    exc = NoHostAvailable("Unable to complete the operation against any hosts", {"127.0.0.1:9042": unavailable})
    assert describe(exc) == (
        "NoHostAvailable (127.0.0.1:9042: Unavailable: consistency LOCAL_QUORUM needs 2 live replicas, 1 alive)"
    )


def test_the_protocol_refusal_of_cassandra_21_is_recognised() -> None:
    refused = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": ConnectionException(REFUSAL_21)})
    assert protocol_refusal(refused) == "Invalid or unsupported protocol version: 66"
    other = NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": ConnectionRefusedError(111, "x")})
    assert protocol_refusal(other) == ""
    assert protocol_refusal(None) == ""
