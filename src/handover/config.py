"""Settings (SPEC 7): upstream key names, HOCON files as upstream writes them, ``HANDOVER_*`` environment
overrides. Precedence: environment > files (a later file over an earlier one) > defaults. A value of the wrong
type is a ``ConfigError`` at start-up; an unknown key in a file is named in a warning.

Several files, each read in its own job's layout (``FileLayout``): the two upstream jobs give some keys different
meanings, so each key is read with the meaning it has in the file it comes from:

- ``inquiry``: Sunbird-inQuiry data-pipeline ``user-pii-data-updater.conf``. On master and release-7.0.0
  ``kafka.input.topic`` is the delete-user topic (``UserPiiUpdaterConfig.kafkaInputTopic``); on release-8.0.0
  the job reads ``kafka.input.user_pii_topic`` and ``kafka.input.ownership_transfer_topic`` instead, and a
  ``kafka.input.topic`` beside them is not read. The job uses Neo4j (``neo4j.*``) and ``schema.basePath``; the
  ``es.*`` and ``lms-cassandra.*`` its base config carries are another cluster's (content search), not read.
- ``lern``: Sunbird-Lern data-pipeline ``user-ownership-transfer.conf``: ``kafka.input.topic`` is the transfer
  topic; ``es.basePath`` and ``lms-cassandra.*`` are the course batches' stores; the ``neo4j.*`` and
  ``schema.*`` of its base config are not read by the job.
- ``handover``: SPEC 7 as written (every key with its canonical meaning).

A job file's ``kafka.groupId`` is that job's consumer group, not handover's: it goes to
``kafka.upstream.transfer.groupIds`` (Lern; inQuiry release-8.0.0 too, which consumes both topics in one group)
or ``kafka.upstream.user_pii.groupIds`` (inQuiry), from whose committed offsets the worker starts a partition
that handover's own group (``kafka.groupId``) has none for (the cut-over of README "Cut-over").

A file's layout is given as a prefix (``inquiry=PATH``, ``lern=PATH``, ``handover=PATH``) or recognised from
its content: ``user_pii_replacement_value`` marks the inQuiry job's file (its config reads it with
``getString``, no default, on every branch; Lern's job never reads it), ``batch_search_api`` or
``service.lms.basePath`` mark Lern's (required by ``UserOwnershipTransferConfig``; not read by inQuiry's job).
A file with the marks of both jobs, or of neither, is read as handover's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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


MAX_API_WORKERS = 64  # api.workers: more processes than this is a typo (999999 spawned until the machine stalled)


def _as_api_workers(key: str, value: Any) -> int:
    number = _as_positive_int(key, value)
    if number > MAX_API_WORKERS:
        raise ConfigError(f"{key}: at most {MAX_API_WORKERS} serving processes, got {value!r}")
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


def _as_non_negative_int(key: str, value: Any) -> int:
    number = _as_int(key, value)
    if number < 0:
        raise ConfigError(f"{key}: expected 0 or a positive integer, got {value!r}")
    return number


def _as_auto_bool(key: str, value: Any) -> bool | None:
    """``auto`` (None: decided at run time) or a boolean."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        return _as_bool(key, value)
    except ConfigError:
        raise ConfigError(f"{key}: expected auto, true or false, got {value!r}") from None


def _as_auth_mode(key: str, value: Any) -> str:
    text = _as_str(key, value).strip().lower()
    if text not in ("jwt", "none"):
        raise ConfigError(f"{key}: expected 'jwt' or 'none', got {value!r}")
    return text


OFFSET_RESETS = ("earliest", "latest")


def _as_offset_reset(key: str, value: Any) -> str:
    text = _as_str(key, value).strip().lower()
    if text not in OFFSET_RESETS:
        raise ConfigError(f"{key}: expected 'earliest' or 'latest', got {value!r}")
    return text


def _as_replication_factor(key: str, value: Any) -> int:
    number = _as_int(key, value)
    if number < 1 and number != -1:
        raise ConfigError(f"{key}: expected a positive integer, or -1 for the broker's default, got {value!r}")
    return number


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
    "kafka.topic.create": (_as_bool, False),  # the worker creates missing topics only when this is true
    "kafka.topic.replication.factor": (_as_replication_factor, -1),  # -1: the broker's default.replication.factor
    "kafka.auto.offset.reset": (_as_offset_reset, "latest"),  # where a partition without committed offset starts
    "kafka.max.poll.interval.ms": (_as_positive_int, 300_000),  # Kafka's; a consumer silent longer is evicted
    "kafka.upstream.transfer.groupIds": (_as_str_list, ()),  # groups whose committed offsets a new group takes
    "kafka.upstream.user_pii.groupIds": (_as_str_list, ()),
    "worker.batch.max.ms": (_as_positive_int, 10_000),  # a micro-batch takes no new event after this long
    "worker.batch.size": (_as_positive_int, 500),  # events per store transaction in the Kafka worker
    "log.level": (_as_str, "INFO"),
    "threshold.batch.write.size": (_as_positive_int, 10),
    "page_size": (_as_positive_int, 1000),
    "lms-cassandra.host": (_as_str, "localhost"),
    "lms-cassandra.port": (_as_int, 9042),
    "lms-cassandra.keyspace": (_as_str, "sunbird_courses"),
    "lms-cassandra.course_batch.table": (_as_str, "course_batch"),
    "lms-cassandra.protocol_version": (_as_opt_positive_int, None),  # CQL native protocol; None: negotiate
    "lms-cassandra.isMultiDCEnabled": (_as_bool, False),  # upstream: DC-aware routing
    "lms-cassandra.local_dc": (_as_opt_str, None),  # with isMultiDCEnabled; None: the first contact point's DC
    "lms-cassandra.consistency_level": (_as_str, "LOCAL_QUORUM"),  # every read and write (upstream's level)
    "lms-cassandra.serial_consistency_level": (_as_str, "LOCAL_SERIAL"),  # lightweight transactions
    "lms-cassandra.username": (_as_opt_str, None),  # with password: PlainTextAuthProvider
    "lms-cassandra.password": (_as_opt_str, None),
    "handover-cassandra.keyspace": (_as_str, "handover"),
    "handover-cassandra.replication_class": (_as_str, "SimpleStrategy"),  # or NetworkTopologyStrategy
    "handover-cassandra.replication_factor": (_as_positive_int, 1),  # SimpleStrategy, when `handover init` creates it
    "handover-cassandra.datacenters": (_as_str_list, ()),  # NetworkTopologyStrategy: "dc1:3,dc2:3"
    "es.basePath": (_as_str, "localhost:9200"),
    "es.course_batch.index": (_as_str, "course-batch"),
    "es.version": (_as_opt_str, None),  # e.g. 6.8.22 when GET / is not allowed; None: read from GET /
    "es.refresh": (_as_str, "before_search"),  # or wait_for: how a write is searchable for the next event
    "neo4j.routePath": (_as_str, "bolt://localhost:7687"),
    "neo4j.user": (_as_opt_str, None),
    "neo4j.password": (_as_opt_str, None),
    "neo4j.graph": (_as_str, "domain"),  # the node label of the graph (upstream base-config)
    "neo4j.transport": (_as_str, "auto"),  # auto | bolt | http (auto: HTTP for a Bolt v1/v2-only Neo4j 3.x)
    "neo4j.http.basePath": (_as_opt_str, None),  # the HTTP API; None: http://<routePath host>:7474
    "neo4j.database": (_as_opt_str, None),  # Neo4j 4.0+; None: the server's default (HTTP on 4.0+: neo4j)
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
    "queue.processing.lease.seconds": (_as_positive_int, 60),  # embedded queue: a stopped worker's event back
    "queue.worker.in_process": (_as_bool, True),  # embedded queue: serve runs its worker (else `queue-worker`)
    "auth.mode": (_as_auth_mode, "jwt"),
    "auth.public_key": (_as_opt_str, None),
    "accesstoken.publickey.basepath": (_as_opt_str, None),  # userorg: a directory of public keys, file name = kid
    "sso.url": (_as_opt_str, None),  # with sso.realm: the token issuer must be {sso.url}realms/{sso.realm}
    "sso.realm": (_as_opt_str, None),
    "auth.issuer": (_as_opt_str, None),  # the token issuer, when it is not a Keycloak realm of sso.url
    "auth.audience": (_as_str_list, ()),  # the token's aud must name one of these (empty: not checked)
    "auth.max_token_lifetime.seconds": (_as_non_negative_int, 0),  # exp - iat above it is refused (0: no limit)
    "auth.protect_metrics_and_docs": (_as_bool, False),  # /metrics, /docs, /redoc, /openapi.json need a token
    "auth.cookie.secure": (_as_auto_bool, None),  # the console's session cookie: auto (by the request's scheme)
    "api.max_body_bytes": (_as_positive_int, 1_000_000),
    "api.max_objects": (_as_positive_int, 1000),  # objects one transfer request may name (one event each)
    "api.workers": (_as_api_workers, 1),  # serving processes of `handover serve` (uvicorn's workers)
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

# --- the layouts of the two upstream jobs' files (module docstring) ---------------------------------

FileLayout = Literal["inquiry", "lern", "handover"]
INQUIRY: FileLayout = "inquiry"
LERN: FileLayout = "lern"
HANDOVER: FileLayout = "handover"
LAYOUTS: tuple[FileLayout, ...] = (INQUIRY, LERN, HANDOVER)
JOB_FILES = {INQUIRY: "inQuiry's user-pii-data-updater.conf", LERN: "Lern's user-ownership-transfer.conf"}

_MARKS: dict[FileLayout, tuple[str, ...]] = {
    INQUIRY: ("user_pii_replacement_value",),
    LERN: ("batch_search_api", "service.lms.basePath"),
}
# canonical-key prefixes a job's file carries (from its base config) but the job does not read
_NOT_READ: dict[FileLayout, tuple[str, ...]] = {
    INQUIRY: ("es.", "lms-cassandra."),
    LERN: ("neo4j.", "schema."),
}
_UPSTREAM_GROUPS = ("kafka.upstream.transfer.groupIds", "kafka.upstream.user_pii.groupIds")

# keys whose default is wrong on a deployment: a warning names them when job files are given and none sets them
# (key -> what it locates, the job whose file holds it or None for either)
MATTERS: dict[str, tuple[str, FileLayout | None]] = {
    "kafka.broker-servers": ("the Kafka brokers", None),
    "userorg_service_base_url": ("userorg (user reads, emails)", None),
    "es.basePath": ("the course batches' Elasticsearch", LERN),
    "lms-cassandra.host": ("the course batches' Cassandra", LERN),
    "neo4j.routePath": ("the assets' Neo4j", INQUIRY),
}

ConfigPaths = str | Path | Sequence[str | Path] | None


def env_name(key: str) -> str:
    """``kafka.broker-servers`` -> ``HANDOVER_KAFKA_BROKER_SERVERS``."""
    return "HANDOVER_" + key.upper().replace(".", "_").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value came from: the default, a file (with its layout and the key as written there) or an
    environment variable."""

    kind: Literal["default", "file", "environment"]
    file: str | None = None
    layout: FileLayout | None = None
    key: str | None = None
    variable: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"source": self.kind}
        if self.kind == "file":
            doc.update(file=self.file, layout=self.layout, key=self.key)
        elif self.kind == "environment":
            doc["variable"] = self.variable
        return doc


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A file given to ``load_settings``, its layout and how the layout was found."""

    path: str
    layout: FileLayout
    recognised_by: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "layout": self.layout, "recognisedBy": self.recognised_by}


@dataclass(frozen=True, slots=True)
class IgnoredKey:
    """A known key in a job's file that the job does not read (its value is another cluster's)."""

    file: str
    key: str
    why: str


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    unknown_keys: tuple[str, ...] = ()
    source: str | None = None
    files: tuple[ConfigFile, ...] = ()
    origins: Mapping[str, tuple[Origin, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    ignored: tuple[IgnoredKey, ...] = ()

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

    def describe(self) -> dict[str, Any]:
        """``handover config``: every setting with its value (secrets masked, see ``shown``) and origin, the
        files and their layouts, the keys not read, unknown keys and warnings. JSON-ready."""
        settings: dict[str, Any] = {}
        for key in sorted(self.values):
            origins = self.origins.get(key) or (Origin("default"),)
            doc: dict[str, Any] = {"value": shown(key, self.values[key])}
            if len(origins) == 1:
                doc.update(origins[0].to_json())
            else:
                doc.update(source="files", origins=[o.to_json() for o in origins])
            settings[key] = doc
        return {
            "files": [f.to_json() for f in self.files],
            "settings": settings,
            "notRead": [{"file": i.file, "key": i.key, "why": i.why} for i in self.ignored],
            "unknownKeys": list(self.unknown_keys),
            "warnings": list(self.warnings),
        }


# --- masking ------------------------------------------------------------------------------------------

MASK = "********"
_SECRET_WORDS = ("password", "secret", "token", "credential", "passphrase")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+@")


def is_secret(key: str) -> bool:
    """A key whose value is masked: a password, secret, token or credential, or a key (``*key``, as
    ``auth.public_key``; ``keyspace`` is no key)."""
    last = key.lower().rsplit(".", 1)[-1]
    return any(word in key.lower() for word in _SECRET_WORDS) or last.endswith(("key", "keys"))


def mask_text(text: str) -> str:
    """The password of every ``scheme://user:password@host`` in ``text`` masked."""
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)


def shown(key: str, value: Any) -> Any:
    """``value`` as ``handover config`` prints it: ``MASK`` for a set secret, URL passwords masked."""
    if is_secret(key) and value not in (None, "", (), [], {}):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list | tuple):
        return [shown(key, v) for v in value]
    if isinstance(value, Mapping):
        return {k: shown(key, v) for k, v in value.items()}
    return value


# --- loading ------------------------------------------------------------------------------------------


def config_entries(paths: ConfigPaths) -> list[tuple[Path, FileLayout | None]]:
    """``(path, layout or None)`` for each entry; an entry ``inquiry=PATH``, ``lern=PATH`` or
    ``handover=PATH`` names its layout."""
    if paths is None:
        return []
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[tuple[Path, FileLayout | None]] = []
    for item in items:
        text = str(item)
        layout: FileLayout | None = None
        name, sep, rest = text.partition("=")
        for candidate in LAYOUTS:
            if sep and name.strip().lower() == candidate:
                layout, text = candidate, rest
        if not text.strip():
            raise ConfigError(f"config entry {str(item)!r} names no file")
        out.append((Path(text), layout))
    return out


def config_paths_from_env(environ: Mapping[str, str]) -> list[str]:
    """``HANDOVER_CONFIG``: entries separated by ``os.pathsep`` (``:`` on Unix, as ``KUBECONFIG``)."""
    return [part for part in environ.get("HANDOVER_CONFIG", "").split(os.pathsep) if part.strip()]


def recognise_layout(keys: Mapping[str, Any]) -> tuple[FileLayout, str]:
    """The layout of a file from the keys it holds, and why (module docstring)."""
    found = {layout: [k for k in marks if k in keys] for layout, marks in _MARKS.items()}
    if found[INQUIRY] and found[LERN]:
        return HANDOVER, f"content: marks of both jobs ({', '.join(found[INQUIRY] + found[LERN])})"
    for layout in (INQUIRY, LERN):
        if found[layout]:
            return layout, f"content: has {', '.join(found[layout])}"
    return HANDOVER, "content: no job's marks"


def load_settings(paths: ConfigPaths = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then each file in order (HOCON or JSON, read in its layout), then the environment.
    ``paths``: one entry or several (``config_entries``). Raises ``ConfigError``, naming the file or the
    variable, for an unreadable file or a value of the wrong type."""
    environ = os.environ if environ is None else environ
    env_values = _from_environment(environ)
    loader = _Loader(env_values.get("job.env", (None, ""))[0])
    for path, layout in config_entries(paths):
        loader.read(path, layout)
    for key, (value, variable) in env_values.items():
        loader.put(key, _parse(key, value, f"environment {variable}"), Origin("environment", variable=variable))
    return loader.settings()


class _Loader:
    """Merges the files and the environment, value by value, keeping each value's origins."""

    def __init__(self, env_override: Any) -> None:
        self.env_override = env_override
        self.values: dict[str, Any] = {}
        self.origins: dict[str, tuple[Origin, ...]] = {}
        self.files: list[ConfigFile] = []
        self.unknown: list[str] = []
        self.ignored: list[IgnoredKey] = []
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        log.warning("config: %s", message)
        self.warnings.append(message)

    def put(self, key: str, value: Any, origin: Origin, accumulate: bool = False) -> None:
        if accumulate and key in self.values and self.origins[key][0].kind == "file":
            self.values[key] = tuple(dict.fromkeys((*self.values[key], *value)))
            self.origins[key] = (*self.origins[key], origin)
            return
        previous = self.origins.get(key, (Origin("default"),))[-1]
        if origin.kind == "file" and previous.kind == "file" and self.values[key] != value:
            self.warn(
                f"{key}: {previous.file} says {shown(key, self.values[key])!r}, {origin.file} says "
                f"{shown(key, value)!r}; the later file wins"
            )
        self.values[key] = value
        self.origins[key] = (origin,)

    def read(self, path: Path, layout: FileLayout | None) -> None:
        flat = _read_file(path, self.env_override)
        found, why = (layout, "prefix") if layout else recognise_layout(flat)
        name = str(path)
        self.files.append(ConfigFile(name, found, why))
        log.info("config: %s read as %s (%s)", name, JOB_FILES.get(found, "handover's own file"), why)
        for file_key, value in flat.items():
            canonical = SYNONYMS.get(file_key, file_key)
            if canonical not in KEYS:
                self.unknown.append(file_key)
                log.warning("config: unknown key %s in %s (ignored)", file_key, name)
                continue
            for key, why_not in _meaning(found, file_key, canonical, flat):
                if why_not is not None:
                    self.ignored.append(IgnoredKey(name, file_key, why_not))
                    log.info("config: %s in %s not read: %s", file_key, name, why_not)
                    continue
                parsed = _parse(key, [value] if key in _UPSTREAM_GROUPS else value, name)
                self.put(key, parsed, Origin("file", name, found, file_key), accumulate=key in _UPSTREAM_GROUPS)

    def settings(self) -> Settings:
        values: dict[str, Any] = {}
        for key, (_parse_fn, default) in KEYS.items():
            values[key] = self.values.get(key, default)
        env = values["job.env"]
        for key, value in values.items():
            if isinstance(value, str) and "{env}" in value:
                values[key] = value.replace("{env}", env)
        _check(values)
        if any(f.layout != HANDOVER for f in self.files):
            self._warn_missing(values)
        return Settings(
            values,
            tuple(self.unknown),
            ", ".join(f.path for f in self.files) or None,
            tuple(self.files),
            dict(self.origins),
            tuple(self.warnings),
            tuple(self.ignored),
        )

    def _warn_missing(self, values: Mapping[str, Any]) -> None:
        for key, (what, job) in MATTERS.items():
            if key in self.origins:
                continue
            where = f"{JOB_FILES[job]}, a handover file" if job else "a config file"
            not_read = [i.file for i in self.ignored if SYNONYMS.get(i.key, i.key) == key]
            also = f"; the one in {', '.join(not_read)} is another job's and not read" if not_read else ""
            self.warn(
                f"{key} ({what}) is not set: give it in {where} or {env_name(key)}{also}; "
                f"using the default {shown(key, values[key])!r}"
            )


def _meaning(
    layout: FileLayout, file_key: str, canonical: str, flat: Mapping[str, Any]
) -> list[tuple[str, str | None]]:
    """The canonical keys a file's key sets in ``layout``: ``(key, None)``, or ``(key, why it is not read)``."""
    if layout == HANDOVER:
        return [(canonical, None)]
    if canonical.startswith(_NOT_READ[layout]):
        return [(canonical, f"{JOB_FILES[layout]} carries it for another purpose; the job does not read it")]
    if canonical == "kafka.groupId":
        if layout == LERN:
            return [("kafka.upstream.transfer.groupIds", None)]
        groups: list[tuple[str, str | None]] = [("kafka.upstream.user_pii.groupIds", None)]
        if "kafka.input.ownership_transfer_topic" in flat:  # release-8.0.0: one group for both topics
            groups.append(("kafka.upstream.transfer.groupIds", None))
        return groups
    if layout == INQUIRY and file_key == "kafka.input.topic":
        if "kafka.input.user_pii_topic" in flat:
            return [(canonical, "inQuiry release-8.0.0 reads kafka.input.user_pii_topic and "
                                "kafka.input.ownership_transfer_topic, not kafka.input.topic")]
        return [("kafka.input.user_pii_topic", None)]  # master and 7.x: the delete-user topic
    return [(canonical, None)]


def _parse(key: str, value: Any, where: str) -> Any:
    try:
        return KEYS[key][0](key, value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check(values: Mapping[str, Any]) -> None:
    """Settings that must agree with each other."""
    poll, session = values["kafka.max.poll.interval.ms"], values["kafka.session.timeout.ms"]
    if poll < session:
        raise ConfigError(
            f"kafka.max.poll.interval.ms ({poll}) must be at least kafka.session.timeout.ms ({session})"
        )
    if values["worker.batch.max.ms"] >= poll:
        raise ConfigError(
            f"worker.batch.max.ms ({values['worker.batch.max.ms']}) must be less than kafka.max.poll.interval.ms "
            f"({poll}): a micro-batch longer than that gets the consumer evicted from its group"
        )


def _from_environment(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """canonical key -> (value, variable name)."""
    out: dict[str, tuple[str, str]] = {}
    for key in (*KEYS, *SYNONYMS):
        name = env_name(key)
        if name in environ:
            out[SYNONYMS.get(key, key)] = (environ[name], name)
    return out


def _read_file(path: Path, job_env: Any) -> dict[str, Any]:
    """Every key of the file as written (``a.b.c``), values plain; ``target_object_types`` as an object."""
    from pyhocon import ConfigFactory, ConfigParser, ConfigTree

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        tree = ConfigFactory.parse_file(str(path), resolve=False)
        if job_env is not None:  # so that ${job.env} in the file follows HANDOVER_JOB_ENV
            tree.put("job.env", job_env)
        ConfigParser.resolve_substitutions(tree)
    except Exception as exc:  # pyhocon raises ConfigException, pyparsing errors and OSError
        raise ConfigError(f"config file {path}: {exc}") from exc

    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for name, value in node.items():
            key = prefix + str(name).strip('"')
            if isinstance(value, ConfigTree) and key not in _MAP_KEYS:
                walk(value, key + ".")
            else:
                flat[key] = value.as_plain_ordered_dict() if isinstance(value, ConfigTree) else value

    walk(tree, "")
    return flat


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
