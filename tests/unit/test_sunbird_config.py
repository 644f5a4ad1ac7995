"""The upstream job configs load with ``load_settings`` and map onto the Sunbird adapters' settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from handover.adapters.sunbird import SunbirdConfig, SunbirdStore
from handover.config import ConfigError, load_settings
from tests.conftest import UPSTREAM


def test_lern_job_config_maps_onto_the_sunbird_settings() -> None:
    settings = load_settings(UPSTREAM / "lern" / "user-ownership-transfer.conf", environ={})
    c = SunbirdConfig.from_settings(settings)
    assert c.cassandra.hosts == ("localhost",) and c.cassandra.port == 9042
    # lms-cassandra.isMultiDCEnabled = false in Lern's base-config; upstream's level by default
    assert (c.cassandra.multi_dc, c.cassandra.consistency, c.cassandra.serial_consistency) == (
        False, "LOCAL_QUORUM", "LOCAL_SERIAL"
    )
    assert "lms-cassandra.isMultiDCEnabled" not in settings.unknown_keys  # a key handover now reads
    assert (c.course_batch.keyspace, c.course_batch.table) == ("sunbird_courses", "course_batch")
    assert c.write_group_size == 10
    assert c.es_base_path == "http://localhost:9200" and c.es_index == "course-batch"
    assert c.neo4j_uri == "bolt://localhost:7687" and c.neo4j_label == "domain"
    # service.userorg.basePath (Lern) is the synonym of userorg_service_base_url (inQuiry)
    assert c.userorg.read_url("u-1") == "https://dev.sunbirded.org/private/user/v1/read/u-1"
    assert c.userorg.notification_url() == "https://dev.sunbirded.org/v2/notification"
    assert settings["kafka.input.topic"] == "local.user.ownership.transfer"
    assert settings["service.lms.basePath"] == "https://dev.sunbirded.org"


def test_inquiry_job_config_maps_onto_the_sunbird_settings() -> None:
    settings = load_settings(UPSTREAM / "inquiry" / "user-pii-data-updater.conf", environ={})
    c = SunbirdConfig.from_settings(settings)
    assert c.userorg.base_url == "http://localhost:9000/userorg"
    assert c.userorg.search_url() == "http://localhost:9000/userorg/private/user/v1/search"
    assert c.neo4j_uri == "bolt://localhost:7687" and c.neo4j_label == "domain"
    assert c.es_base_path == "http://localhost:9200"
    assert c.handover.keyspace == "handover" and c.claim_lease == timedelta(seconds=600)
    assert settings["kafka.input.topic"] == "local.user.ownership.transfer"
    assert settings["target_object_types"] == {"Question": ("1.0", "1.1"), "QuestionSet": ("1.0", "1.1")}


def test_environment_overrides_reach_the_adapters() -> None:
    env = {
        "HANDOVER_LMS_CASSANDRA_HOST": "cass1, cass2",
        "HANDOVER_ES_BASEPATH": "es1:9200,es2:9200",
        "HANDOVER_NEO4J_GRAPH": "domain",
        "HANDOVER_THRESHOLD_BATCH_WRITE_SIZE": "25",
        "HANDOVER_HTTP_TIMEOUT_SECONDS": "3",
    }
    settings = load_settings(UPSTREAM / "lern" / "user-ownership-transfer.conf", environ=env)
    c = SunbirdConfig.from_settings(settings)
    assert c.cassandra.hosts == ("cass1", "cass2")
    assert c.es_base_path == "http://es1:9200,http://es2:9200"
    assert c.write_group_size == 25 and c.timeout == 3.0


def test_store_builds_without_connecting() -> None:
    store = SunbirdStore(load_settings(UPSTREAM / "inquiry" / "user-pii-data-updater.conf", environ={}))
    assert store.cassandra._session is None and store.graph.transport is None  # nothing chosen or connected yet
    store.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HANDOVER_NEO4J_GRAPH": "domain) DETACH DELETE n //"}, "label"),
        ({"HANDOVER_LMS_CASSANDRA_KEYSPACE": "x; DROP"}, "keyspace"),
        ({"HANDOVER_ES_BASEPATH": " , "}, "es.basePath"),
    ],
)
def test_bad_names_are_config_errors(env: dict[str, str], message: str) -> None:
    settings = load_settings(UPSTREAM / "inquiry" / "user-pii-data-updater.conf", environ=env)
    with pytest.raises(ConfigError, match=message):
        SunbirdConfig.from_settings(settings)


def test_userorg_base_url_is_required(tmp_path: Path) -> None:
    conf = tmp_path / "empty.conf"
    conf.write_text("job { env = test }\n")
    with pytest.raises(ConfigError, match="userorg_service_base_url"):
        SunbirdConfig.from_settings(load_settings(conf, environ={}))
