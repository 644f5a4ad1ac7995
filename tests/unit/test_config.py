"""Settings: defaults, upstream HOCON files, environment overrides, schema PII fields, clear errors."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from handover.config import (
    MASK,
    ConfigError,
    Settings,
    config_entries,
    config_paths_from_env,
    env_name,
    is_secret,
    load_pii_fields,
    load_settings,
    recognise_layout,
)
from tests.conftest import UPSTREAM


def test_defaults() -> None:
    s = load_settings(None, environ={})
    assert s.topic_names() == ("local.user.ownership.transfer", "local.delete.user", "local.handover.failed")
    assert s["kafka.groupId"] == "local-handover-group"
    assert s["threshold.batch.write.size"] == 10
    policy = s.policy()
    assert policy.course_batch_statuses == {0, 1}
    assert policy.ownership_transfer_roles == {"CONTENT_CREATOR", "BOOK_CREATOR"}
    assert policy.replacement_value == "Deleted User"
    assert policy.pii_for("Question", "1.1") == {"createdBy": ("creator",)}


def test_env_names() -> None:
    assert env_name("kafka.broker-servers") == "HANDOVER_KAFKA_BROKER_SERVERS"
    assert env_name("job.env") == "HANDOVER_JOB_ENV"


def test_lern_job_config_loads_and_follows_job_env(caplog: pytest.LogCaptureFixture) -> None:
    conf = UPSTREAM / "lern" / "user-ownership-transfer.conf"
    with caplog.at_level(logging.WARNING):
        s = load_settings(conf, environ={"HANDOVER_JOB_ENV": "dev"})
    assert s["kafka.input.topic"] == "dev.user.ownership.transfer"  # ${job.env} resolved after the override
    # Lern's group is the job's, whose offsets the worker takes over; handover's own group is its own
    assert s["kafka.upstream.transfer.groupIds"] == ("dev-user-ownership-transfer-group",)
    assert s["kafka.upstream.user_pii.groupIds"] == ()
    assert s["kafka.groupId"] == "dev-handover-group"
    assert s["lms-cassandra.port"] == 9042 and s["lms-cassandra.keyspace"] == "sunbird_courses"
    assert s["userorg_service_base_url"] == "https://dev.sunbirded.org"  # service.userorg.basePath synonym
    assert s["service.userorg.basePath"] == "https://dev.sunbirded.org"
    assert s["kafka.broker-servers"] == "localhost:9092"
    assert "task.checkpointing.interval" in s.unknown_keys
    assert "task.checkpointing.interval" in caplog.text


def test_inquiry_job_config_loads() -> None:
    s = load_settings(UPSTREAM / "inquiry" / "user-pii-data-updater.conf", environ={})
    assert s["kafka.input.topic"] == "local.user.ownership.transfer"  # ownership_transfer_topic synonym
    assert s["kafka.input.user_pii_topic"] == "local.delete.user.job.request"
    assert s["target_object_types"] == {"Question": ("1.0", "1.1"), "QuestionSet": ("1.0", "1.1")}
    assert s["userorg_service_base_url"] == "http://localhost:9000/userorg"
    assert s["notification.email.subject"] == "User Account Deletion Notification"


def test_environment_wins_over_file_and_is_typed(tmp_path: Path) -> None:
    conf = tmp_path / "h.conf"
    conf.write_text('threshold.batch.write.size = 5\nownership_transfer_roles = ["A"]\n')
    s = load_settings(
        conf,
        environ={
            "HANDOVER_THRESHOLD_BATCH_WRITE_SIZE": "7",
            "HANDOVER_COURSE_BATCH_STATUSES": "[1]",
            "HANDOVER_ADMIN_EMAIL_NOTIFICATION_ENABLE": "false",
            "HANDOVER_TARGET_OBJECT_TYPES": '{"Content": ["1.0"]}',
        },
    )
    assert s["threshold.batch.write.size"] == 7
    assert s["ownership_transfer_roles"] == ("A",)
    policy = s.policy()
    assert policy.course_batch_statuses == {1} and policy.notify_admins is False
    assert policy.object_type_names() == ("Content", "ContentImage")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threshold.batch.write.size = lots", "threshold.batch.write.size: expected an integer"),
        ("admin_email_notification_enable = maybe", "expected true or false"),
        ("target_object_types = 3", "target_object_types"),
        ("auth.mode = ldap", "auth.mode"),
        ("ownership_transfer_roles = [1, 2]", "list of strings"),
        ("kafka {", "config file"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(conf, environ={})


def test_bad_environment_value_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        load_settings(None, environ={"HANDOVER_MAX_ATTEMPTS": "0"})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.conf", environ={})


def test_pii_fields_from_upstream_schemas() -> None:
    types = {"Question": ("1.0", "1.1"), "QuestionSet": ("1.0", "1.1")}
    fields = load_pii_fields(str(UPSTREAM / "inquiry" / "schemas"), types)
    assert fields == {(t, v): {"createdBy": ("creator",)} for t in types for v in types[t]}


def test_pii_fields_from_a_schema_directory_change_the_policy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "question" / "1.1"
    target.mkdir(parents=True)
    (target / "config.json").write_text(
        json.dumps({"PII_Fields": {"user": {"createdBy": ["creator", "originData.creator.name"]}}})
    )
    with caplog.at_level(logging.WARNING):
        policy = load_settings(None, environ={"HANDOVER_SCHEMA_BASEPATH": str(tmp_path)}).policy()
    assert policy.pii_for("Question", "1.1") == {"createdBy": ("creator", "originData.creator.name")}
    assert policy.pii_for("Question", "1.0") == {"createdBy": ("creator",)}  # unreadable: built-in default
    assert "question/1.0/config.json" in caplog.text


def test_bad_schema_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "question" / "1.0"
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps({"PII_Fields": {"user": {"createdBy": 5}}}))
    with pytest.raises(ConfigError, match="PII_Fields"):
        load_pii_fields(str(tmp_path), {"Question": ("1.0",)})


# --- both upstream jobs' files (SPEC 7), each key with its own file's meaning ---------------------------

LERN_CONF = UPSTREAM / "lern" / "user-ownership-transfer.conf"
INQUIRY_8_CONF = UPSTREAM / "inquiry" / "user-pii-data-updater.conf"  # release-8.0.0 layout
# inQuiry master / 7.x layout (kafka.input.topic = the delete-user topic); see the file's header for the source
INQUIRY_MASTER_CONF = Path(__file__).resolve().parents[1] / "data" / "inquiry-master" / "user-pii-data-updater.conf"


def origin(s: Settings, key: str) -> tuple[str, str | None, str | None, str | None]:
    (only,) = s.origins[key]
    return only.kind, only.file and Path(only.file).name, only.layout, only.key


def test_upstream_files_are_recognised_by_their_content() -> None:
    s = load_settings([INQUIRY_MASTER_CONF, LERN_CONF, INQUIRY_8_CONF], environ={})
    assert [(Path(f.path).parent.name, f.layout) for f in s.files] == [
        ("inquiry-master", "inquiry"), ("lern", "lern"), ("inquiry", "inquiry")
    ]
    assert s.files[0].recognised_by == "content: has user_pii_replacement_value"
    assert s.files[1].recognised_by == "content: has batch_search_api, service.lms.basePath"


def test_inquiry_master_and_lern_together_each_key_from_its_own_job(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        s = load_settings([INQUIRY_MASTER_CONF, LERN_CONF], environ={"HANDOVER_JOB_ENV": "dev"})
    # kafka.input.topic: the delete-user topic in inQuiry's file, the transfer topic in Lern's
    assert s.topic_names() == ("dev.user.ownership.transfer", "dev.delete.user", "dev.handover.failed")
    assert origin(s, "kafka.input.user_pii_topic") == ("file", "user-pii-data-updater.conf", "inquiry",
                                                       "kafka.input.topic")
    assert origin(s, "kafka.input.topic") == ("file", "user-ownership-transfer.conf", "lern", "kafka.input.topic")
    # course batches from Lern's file, not the content-search cluster of inQuiry's base config
    assert s["es.basePath"] == "localhost:9200" and origin(s, "es.basePath")[2] == "lern"
    assert s["lms-cassandra.host"] == "localhost" and origin(s, "lms-cassandra.host")[2] == "lern"
    # assets from inQuiry's file, not the localhost of Lern's base config
    assert s["neo4j.routePath"] == "bolt://inquiry-neo4j:7687" and origin(s, "neo4j.routePath")[2] == "inquiry"
    assert s["schema.basePath"] == "https://example.org/schemas/inquiry"
    # each job's consumer group kept for the cut-over; handover's group is its own
    assert s["kafka.upstream.user_pii.groupIds"] == ("dev-user-pii-data-updater-group",)
    assert s["kafka.upstream.transfer.groupIds"] == ("dev-user-ownership-transfer-group",)
    assert s["kafka.groupId"] == "dev-handover-group"
    assert s["target_object_types"] == {"Question": ("1.0", "1.1"), "QuestionSet": ("1.0", "1.1")}
    # the keys not read are listed, with the file they are in
    not_read = {(Path(i.file).parent.name, i.key) for i in s.ignored}
    assert {("inquiry-master", "es.basePath"), ("inquiry-master", "lms-cassandra.host"),
            ("lern", "neo4j.routePath"), ("lern", "schema.basePath")} <= not_read
    # both files name the brokers and userorg, differently: the later file wins and a warning says so
    assert s["kafka.broker-servers"] == "localhost:9092"
    assert any("kafka.broker-servers" in w and "later file wins" in w for w in s.warnings)
    assert s["userorg_service_base_url"] == "https://dev.sunbirded.org"
    assert not any("is not set" in w for w in s.warnings)  # every key that matters came from its job's file


def test_inquiry_8_and_lern_together() -> None:
    s = load_settings([LERN_CONF, INQUIRY_8_CONF], environ={})
    assert s.topic_names() == ("local.user.ownership.transfer", "local.delete.user.job.request",
                               "local.handover.failed")
    assert origin(s, "kafka.input.topic") == ("file", "user-pii-data-updater.conf", "inquiry",
                                              "kafka.input.ownership_transfer_topic")
    # release-8.0.0 consumes both topics in one group: its offsets count for the transfer topic too
    assert s["kafka.upstream.transfer.groupIds"] == ("local-user-ownership-transfer-group",
                                                     "local-user-pii-data-updater-group")
    assert s["kafka.upstream.user_pii.groupIds"] == ("local-user-pii-data-updater-group",)
    assert [o.file and Path(o.file).parent.name for o in s.origins["kafka.upstream.transfer.groupIds"]] == [
        "lern", "inquiry"
    ]
    assert origin(s, "es.basePath")[2] == "lern" and origin(s, "neo4j.routePath")[2] == "inquiry"


def test_inquiry_master_alone_warns_about_the_course_batch_stores(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        s = load_settings(INQUIRY_MASTER_CONF, environ={})
    assert s.topic_names() == ("dev.user.ownership.transfer", "dev.delete.user", "dev.handover.failed")
    assert s["es.basePath"] == "localhost:9200"  # the default, not inQuiry's content-search cluster
    assert s["lms-cassandra.host"] == "localhost"
    missing = [w for w in s.warnings if "is not set" in w]
    assert len(missing) == 2
    assert "es.basePath (the course batches' Elasticsearch) is not set" in missing[0]
    assert "Lern's user-ownership-transfer.conf" in missing[0] and "HANDOVER_ES_BASEPATH" in missing[0]
    assert "user-pii-data-updater.conf is another job's and not read" in missing[0]
    assert "lms-cassandra.host" in missing[1]
    assert "es.basePath (the course batches' Elasticsearch) is not set" in caplog.text


def test_lern_alone_warns_about_neo4j() -> None:
    s = load_settings(LERN_CONF, environ={})
    assert [w.split(" is not set")[0] for w in s.warnings if "is not set" in w] == [
        "neo4j.routePath (the assets' Neo4j)"
    ]
    # the environment fills the gap: no warning
    s = load_settings(LERN_CONF, environ={"HANDOVER_NEO4J_ROUTEPATH": "bolt://neo4j:7687"})
    assert not [w for w in s.warnings if "is not set" in w]
    assert s.origins["neo4j.routePath"][0].variable == "HANDOVER_NEO4J_ROUTEPATH"


def test_a_key_that_matters_missing_from_its_job_file_is_named(tmp_path: Path) -> None:
    conf = tmp_path / "lern.conf"  # Lern's job file without its base config (no include)
    text = LERN_CONF.read_text().replace('include "base-config.conf"', 'job.env = "dev"')
    conf.write_text(text)
    s = load_settings([INQUIRY_MASTER_CONF, conf], environ={})
    assert {w.split(" (")[0] for w in s.warnings if "is not set" in w} == {"es.basePath", "lms-cassandra.host"}


def test_handover_files_and_no_files_give_no_missing_key_warnings(tmp_path: Path) -> None:
    conf = tmp_path / "h.conf"
    conf.write_text("threshold.batch.write.size = 5\n")
    assert load_settings(conf, environ={}).warnings == ()
    assert load_settings(None, environ={}).warnings == ()


def test_a_prefix_names_the_layout(tmp_path: Path) -> None:
    # the same inQuiry master file read as handover's: kafka.input.topic is the transfer topic, es.basePath read
    s = load_settings(f"handover={INQUIRY_MASTER_CONF}", environ={})
    assert s.files[0].layout == "handover" and s.files[0].recognised_by == "prefix"
    assert s["kafka.input.topic"] == "dev.delete.user" and s["kafka.input.user_pii_topic"] == "dev.delete.user"
    assert s["es.basePath"] == "content-search-es:9200"
    assert s["kafka.groupId"] == "dev-user-pii-data-updater-group"
    # a file without marks read as inQuiry's
    plain = tmp_path / "plain.conf"
    plain.write_text('kafka.input.topic = "x.delete"\nes.basePath = "es:9200"\n')
    s = load_settings([f"inquiry={plain}"], environ={})
    assert s["kafka.input.user_pii_topic"] == "x.delete" and s["kafka.input.topic"] == "local.user.ownership.transfer"
    assert s["es.basePath"] == "localhost:9200"
    # a path that merely contains '=' is a path
    odd = tmp_path / "a=b.conf"
    odd.write_text("max_attempts = 3\n")
    assert load_settings(str(odd), environ={})["max_attempts"] == 3


@pytest.mark.parametrize(
    ("keys", "layout"),
    [
        ({"user_pii_replacement_value": "x", "kafka.input.topic": "t"}, "inquiry"),
        ({"batch_search_api": "/b", "kafka.input.topic": "t"}, "lern"),
        ({"service.lms.basePath": "http://lms"}, "lern"),
        ({"user_pii_replacement_value": "x", "batch_search_api": "/b"}, "handover"),  # both jobs' marks
        ({"kafka.input.topic": "t", "es.basePath": "e"}, "handover"),
    ],
)
def test_recognise_layout(keys: dict[str, str], layout: str) -> None:
    assert recognise_layout(keys)[0] == layout


def test_inquiry_8_file_with_a_stray_kafka_input_topic_does_not_read_it(tmp_path: Path) -> None:
    shutil.copy(UPSTREAM / "inquiry" / "base-config.conf", tmp_path / "base-config.conf")
    conf = tmp_path / "user-pii-data-updater.conf"
    conf.write_text(INQUIRY_8_CONF.read_text() + '\nkafka.input.topic = "stray"\n')
    s = load_settings(conf, environ={})
    assert s["kafka.input.user_pii_topic"] == "local.delete.user.job.request"
    assert s["kafka.input.topic"] == "local.user.ownership.transfer"
    (stray,) = [i for i in s.ignored if i.key == "kafka.input.topic"]
    assert "release-8.0.0 reads kafka.input.user_pii_topic" in stray.why


def test_several_paths_from_handover_config(tmp_path: Path) -> None:
    a, b = tmp_path / "a.conf", tmp_path / "b.conf"
    a.write_text("max_attempts = 3\npage_size = 50\n")
    b.write_text("max_attempts = 4\n")
    entries = config_paths_from_env({"HANDOVER_CONFIG": f"{a}{os.pathsep}lern={b}{os.pathsep}"})
    assert entries == [str(a), f"lern={b}"]
    assert config_entries(entries) == [(a, None), (b, "lern")]
    s = load_settings(entries, environ={})
    assert (s["max_attempts"], s["page_size"]) == (4, 50)  # the later file wins
    assert origin(s, "max_attempts") == ("file", "b.conf", "lern", "max_attempts")
    assert origin(s, "page_size") == ("file", "a.conf", "handover", "page_size")
    assert any("max_attempts" in w and "a.conf says 3" in w for w in s.warnings)


def test_a_bad_value_names_its_file_or_variable(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.conf", tmp_path / "bad.conf"
    good.write_text("max_attempts = 3\n")
    bad.write_text("max_attempts = none\n")
    with pytest.raises(ConfigError, match=r"bad\.conf: max_attempts: expected an integer"):
        load_settings([good, bad], environ={})
    with pytest.raises(ConfigError, match="environment HANDOVER_PAGE_SIZE: page_size"):
        load_settings(None, environ={"HANDOVER_PAGE_SIZE": "many"})
    with pytest.raises(ConfigError, match="names no file"):
        load_settings("lern=", environ={})


def test_describe_gives_every_value_its_source_and_masks_secrets(tmp_path: Path) -> None:
    conf = tmp_path / "h.conf"
    conf.write_text(
        'neo4j.password = "s3cret-pw"\nuserorg_service_base_url = "https://admin:hunter2@userorg:9000/u"\n'
        'handover-cassandra.keyspace = "ks"\n'
    )
    s = load_settings(conf, environ={"HANDOVER_AUTH_PUBLIC_KEY": "MIIBIjANBgkq", "HANDOVER_JOB_ENV": "qa"})
    doc = s.describe()
    text = json.dumps(doc)
    assert "s3cret-pw" not in text and "hunter2" not in text and "MIIBIjANBgkq" not in text
    settings = doc["settings"]
    assert settings["neo4j.password"] == {"value": MASK, "source": "file", "file": str(conf), "layout": "handover",
                                          "key": "neo4j.password"}
    assert settings["userorg_service_base_url"]["value"] == f"https://admin:{MASK}@userorg:9000/u"
    assert settings["auth.public_key"] == {"value": MASK, "source": "environment",
                                           "variable": "HANDOVER_AUTH_PUBLIC_KEY"}
    assert settings["handover-cassandra.keyspace"]["value"] == "ks"  # a keyspace is no key
    assert settings["neo4j.user"] == {"value": None, "source": "default"}
    assert settings["kafka.input.topic"] == {"value": "qa.user.ownership.transfer", "source": "default"}
    assert settings["kafka.auto.offset.reset"] == {"value": "latest", "source": "default"}
    assert doc["files"] == [{"path": str(conf), "layout": "handover", "recognisedBy": "content: no job's marks"}]
    assert set(settings) == set(s.values)


@pytest.mark.parametrize(
    ("key", "secret"),
    [("neo4j.password", True), ("auth.public_key", True), ("kafka.sasl.token", True), ("x.client_secret", True),
     ("lms-cassandra.keyspace", False), ("kafka.input.topic", False), ("user_read_api", False)],
)
def test_is_secret(key: str, secret: bool) -> None:
    assert is_secret(key) is secret


# --- Kafka settings (SPEC 6, 7) -------------------------------------------------------------------------


def test_kafka_defaults_are_kafkas() -> None:
    s = load_settings(None, environ={})
    assert s["kafka.auto.offset.reset"] == "latest"
    assert s["kafka.max.poll.interval.ms"] == 300_000
    assert s["kafka.topic.create"] is False
    assert s["kafka.topic.replication.factor"] == -1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HANDOVER_KAFKA_AUTO_OFFSET_RESET": "smallest"}, "kafka.auto.offset.reset: expected 'earliest' or 'latest'"),
        ({"HANDOVER_KAFKA_TOPIC_REPLICATION_FACTOR": "0"}, "kafka.topic.replication.factor"),
        ({"HANDOVER_KAFKA_TOPIC_CREATE": "sometimes"}, "kafka.topic.create: expected true or false"),
        ({"HANDOVER_KAFKA_MAX_POLL_INTERVAL_MS": "5000"}, r"kafka.max.poll.interval.ms \(5000\) must be at least"),
        ({"HANDOVER_WORKER_BATCH_MAX_MS": "300000"}, r"worker.batch.max.ms \(300000\) must be less than"),
    ],
)
def test_bad_kafka_settings_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, environ=env)


def test_kafka_settings_from_a_file(tmp_path: Path) -> None:
    conf = tmp_path / "h.conf"
    conf.write_text(
        'kafka { auto.offset.reset = "EARLIEST"\n max.poll.interval.ms = 60000\n'
        ' topic { create = true, partitions = 6, replication.factor = 3 } }\nworker.batch.max.ms = 5000\n'
    )
    s = load_settings(conf, environ={})
    assert (s["kafka.auto.offset.reset"], s["kafka.max.poll.interval.ms"], s["worker.batch.max.ms"]) == (
        "earliest", 60000, 5000
    )
    assert (s["kafka.topic.create"], s["kafka.topic.partitions"], s["kafka.topic.replication.factor"]) == (
        True, 6, 3
    )
