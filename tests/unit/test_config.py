"""Settings: defaults, upstream HOCON files, environment overrides, schema PII fields, clear errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from handover.config import ConfigError, env_name, load_pii_fields, load_settings
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
    assert s["kafka.groupId"] == "dev-user-ownership-transfer-group"
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
