"""Settings (SPEC 7): upstream key names, HOCON files as upstream writes them, ``HANDOVER_*`` environment
overrides. Precedence: environment > file > defaults. A value of the wrong type is a ``ConfigError`` at
start-up; an unknown key in the file is named in a warning.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handover.domain.policy import DEFAULT_TARGET_OBJECT_TYPES, PiiFields, Policy

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting is missing, unreadable or of the wrong type."""


Parser = Callable[[str, Any], Any]


def _as_str(key: str, value: Any) -> str:
    if isinstance(value, bool | dict | list):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return str(value)


def _as_opt_str(key: str, value: Any) -> str | None:
    return None if value is None or value == "" else _as_str(key, value)


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key}: expected an integer, got {value!r}") from None


def _as_positive_int(key: str, value: Any) -> int:
    number = _as_int(key, value)
    if number < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return number


def _as_opt_positive_int(key: str, value: Any) -> int | None:
    return None if value is None or value == "" else _as_positive_int(key, value)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _json_if_text(key: str, value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "{")):
            try:
                return json.loads(text)
            except ValueError:
                raise ConfigError(f"{key}: not valid JSON: {value!r}") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _as_str_list(key: str, value: Any) -> tuple[str, ...]:
    value = _json_if_text(key, value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
    return tuple(value)


def _as_int_list(key: str, value: Any) -> tuple[int, ...]:
    value = _json_if_text(key, value)
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of integers, got {value!r}")
    return tuple(_as_int(key, v) for v in value)


def _as_type_map(key: str, value: Any) -> dict[str, tuple[str, ...]]:
    value = _json_if_text(key, value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected an object of type -> list of versions, got {value!r}")
    return {str(k): _as_str_list(f"{key}.{k}", v) for k, v in value.items()}


def _as_auth_mode(key: str, value: Any) -> str:
    text = _as_str(key, value).strip().lower()
    if text not in ("jwt", "none"):
        raise ConfigError(f"{key}: expected 'jwt' or 'none', got {value!r}")
    return text


# canonical key -> (parser, default). "{env}" in a default string is replaced by job.env.
KEYS: dict[str, tuple[Parser, Any]] = {
    "job.env": (_as_str, "local"),
    "kafka.broker-servers": (_as_opt_str, None),
    "kafka.input.topic": (_as_str, "{env}.user.ownership.transfer"),
    "kafka.input.user_pii_topic": (_as_str, "{env}.delete.user"),
    "kafka.output.failed.topic": (_as_str, "{env}.handover.failed"),
    "kafka.groupId": (_as_str, "{env}-handover-group"),
    "kafka.session.timeout.ms": (_as_positive_int, 10000),
    "kafka.commit.interval.ms": (_as_int, 1000),  # the worker commits offsets at most this often (and on stop)
    "kafka.topic.partitions": (_as_positive_int, 4),  # for the input/failed topics the worker creates if missing
    "worker.batch.size": (_as_positive_int, 500),  # events per store transaction in the Kafka worker
    "log.level": (_as_str, "INFO"),
    "threshold.batch.write.size": (_as_positive_int, 10),
    "page_size": (_as_positive_int, 1000),
    "lms-cassandra.host": (_as_str, "localhost"),
    "lms-cassandra.port": (_as_int, 9042),
    "lms-cassandra.keyspace": (_as_str, "sunbird_courses"),
    "lms-cassandra.course_batch.table": (_as_str, "course_batch"),
    "lms-cassandra.protocol_version": (_as_opt_positive_int, None),  # CQL native protocol; None: negotiate
    "handover-cassandra.keyspace": (_as_str, "handover"),
    "handover-cassandra.replication_factor": (_as_positive_int, 1),  # when `handover init` creates it
    "es.basePath": (_as_str, "localhost:9200"),
    "es.course_batch.index": (_as_str, "course-batch"),
    "es.version": (_as_opt_str, None),  # e.g. 6.8.22 when GET / is not allowed; None: read from GET /
    "es.refresh": (_as_str, "before_search"),  # or wait_for: how a write is searchable for the next event
    "neo4j.routePath": (_as_str, "bolt://localhost:7687"),
    "neo4j.user": (_as_opt_str, None),
    "neo4j.password": (_as_opt_str, None),
    "neo4j.graph": (_as_str, "domain"),  # the node label of the graph (upstream base-config)
    "target_object_types": (_as_type_map, dict(DEFAULT_TARGET_OBJECT_TYPES)),
    "user_pii_replacement_value": (_as_str, "Deleted User"),
    "ownership_transfer_roles": (_as_str_list, ("CONTENT_CREATOR", "BOOK_CREATOR")),
    "admin_email_notification_enable": (_as_bool, True),
    "userorg_service_base_url": (_as_opt_str, None),
    "service.lms.basePath": (_as_opt_str, None),
    "user_read_api": (_as_str, "/private/user/v1/read/"),
    "user_search_api": (_as_str, "/private/user/v1/search"),  # reads deleted users (the read API refuses)
    "batch_search_api": (_as_str, "/v1/course/batch/search"),
    "notification.email.subject": (_as_str, "User Account Deletion Notification"),
    "notification.email.regards": (_as_str, "Team"),
    "schema.basePath": (_as_opt_str, None),
    "course_batch_statuses": (_as_int_list, (0, 1)),
    "max_attempts": (_as_positive_int, 5),
    "auth.mode": (_as_auth_mode, "jwt"),
    "auth.public_key": (_as_opt_str, None),
    "api.max_body_bytes": (_as_positive_int, 1_000_000),
    "audit.enabled": (_as_bool, True),
    "metrics.port": (_as_int, 9464),
    "http.timeout.seconds": (_as_int, 10),
    "http.retry.attempts": (_as_positive_int, 3),  # per HTTP call of the Sunbird adapters
    "notification.claim.lease.seconds": (_as_positive_int, 600),  # a crashed sender's claim on an email
}

# synonyms from the two upstream jobs -> canonical key
SYNONYMS: dict[str, str] = {
    "kafka.input.ownership_transfer_topic": "kafka.input.topic",
    "service.userorg.basePath": "userorg_service_base_url",
}

# keys whose value is an object (not flattened further)
_MAP_KEYS = frozenset({"target_object_types"})


def env_name(key: str) -> str:
    """``kafka.broker-servers`` -> ``HANDOVER_KAFKA_BROKER_SERVERS``."""
    return "HANDOVER_" + key.upper().replace(".", "_").replace("-", "_")


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    unknown_keys: tuple[str, ...] = ()
    source: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[SYNONYMS.get(key, key)]

    @property
    def env(self) -> str:
        return str(self.values["job.env"])

    def topic_names(self) -> tuple[str, str, str]:
        """(ownership transfer topic, delete-user topic, failed topic)."""
        return (
            self["kafka.input.topic"],
            self["kafka.input.user_pii_topic"],
            self["kafka.output.failed.topic"],
        )

    def policy(self) -> Policy:
        types: dict[str, tuple[str, ...]] = self["target_object_types"]
        return Policy(
            course_batch_statuses=frozenset(self["course_batch_statuses"]),
            target_object_types=types,
            pii_fields=load_pii_fields(self["schema.basePath"], types),
            replacement_value=self["user_pii_replacement_value"],
            ownership_transfer_roles=frozenset(self["ownership_transfer_roles"]),
            notify_admins=self["admin_email_notification_enable"],
            email_subject=self["notification.email.subject"],
            email_regards=self["notification.email.regards"],
        )


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then the file (HOCON or JSON), then the environment."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    unknown: list[str] = []
    env_values = _from_environment(environ)
    if path is not None:
        raw, unknown = _read_file(Path(path), env_values)
        for key in unknown:
            log.warning("config: unknown key %s in %s (ignored)", key, path)
    raw.update(env_values)
    values: dict[str, Any] = {}
    for key, (parse, default) in KEYS.items():
        values[key] = parse(key, raw[key]) if key in raw else default
    env = values["job.env"]
    for key, value in values.items():
        if isinstance(value, str) and "{env}" in value:
            values[key] = value.replace("{env}", env)
    return Settings(values, tuple(unknown), str(path) if path else None)


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in (*KEYS, *SYNONYMS):
        name = env_name(key)
        if name in environ:
            out[SYNONYMS.get(key, key)] = environ[name]
    return out


def _read_file(path: Path, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    from pyhocon import ConfigFactory, ConfigParser, ConfigTree

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = ConfigFactory.parse_file(str(path), resolve=False)
        if "job.env" in overrides:  # so that ${job.env} in the file follows HANDOVER_JOB_ENV
            tree.put("job.env", overrides["job.env"])
        ConfigParser.resolve_substitutions(tree)
    except Exception as exc:  # pyhocon raises ConfigException, pyparsing errors and OSError
        raise ConfigError(f"config file {path}: {exc}") from exc

    raw: dict[str, Any] = {}
    unknown: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for name, value in node.items():
            key = prefix + str(name).strip('"')
            if isinstance(value, ConfigTree) and key not in _MAP_KEYS:
                walk(value, key + ".")
                continue
            if isinstance(value, ConfigTree):
                value = value.as_plain_ordered_dict()
            canonical = SYNONYMS.get(key, key)
            if canonical in KEYS:
                raw[canonical] = value
            else:
                unknown.append(key)

    walk(tree, "")
    return raw, unknown


# --- PII fields from the schema configs -------------------------------------------------------------


def load_pii_fields(base: str | None, types: Mapping[str, tuple[str, ...]]) -> dict[tuple[str, str], PiiFields]:
    """``PII_Fields.user`` of ``<base>/<type lowercased>/<version>/config.json`` for every configured type
    and version. A schema that cannot be read is named in a warning and the built-in default is used."""
    out: dict[tuple[str, str], PiiFields] = {}
    if not base:
        return out
    for object_type, versions in types.items():
        for version in versions:
            location = f"{base.rstrip('/')}/{object_type.lower()}/{version}/config.json"
            try:
                doc = _read_schema(location)
            except (OSError, ValueError) as exc:  # unreadable or not JSON
                log.warning("config: schema %s not read (%s); using the built-in PII fields", location, exc)
                continue
            out[(object_type, version)] = parse_pii_fields(doc, location)
    return out


def parse_pii_fields(doc: Any, where: str) -> PiiFields:
    pii = doc.get("PII_Fields") if isinstance(doc, dict) else None
    if pii is None:
        return {}
    user = pii.get("user", {}) if isinstance(pii, dict) else None
    if not isinstance(user, dict):
        raise ConfigError(f"{where}: PII_Fields.user must be an object")
    return {str(k): _as_str_list(f"{where}: PII_Fields.user.{k}", v) for k, v in user.items()}


def _read_schema(location: str) -> Any:
    if location.startswith(("http://", "https://")):
        with urllib.request.urlopen(location, timeout=5) as response:
            return json.loads(response.read())
    return json.loads(Path(location.removeprefix("file://")).read_text(encoding="utf-8"))
