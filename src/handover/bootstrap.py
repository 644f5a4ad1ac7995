"""The one place that picks adapters: from a store URL and a config file to a wired ``App``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handover.config import ConfigError, ConfigPaths, Settings, config_paths_from_env, load_settings
from handover.service.engine import Engine, EngineSettings
from handover.service.ports import (
    Backlog,
    EventSink,
    FailedEvents,
    RecordsWritten,
    RequestHistory,
    RequestLog,
    UnitOfWork,
)
from handover.service.reports import DeletedOwnersReport
from handover.service.requests import TransferRequests
from handover.service.undo import Undoer

if TYPE_CHECKING:
    from collections import Counter
    from pathlib import Path

    from handover.adapters.kafka import KafkaEventSink
    from handover.adapters.kafka_worker import Worker
    from handover.adapters.sql_queue import QueueWorker

DEFAULT_STORE = "sqlite:///handover.db"


def store_url(explicit: str | None) -> str:
    """``--store``, else ``HANDOVER_STORE``, else the embedded default."""
    return explicit or os.environ.get("HANDOVER_STORE") or DEFAULT_STORE


@dataclass
class App:
    settings: Settings
    store_url: str
    store: object  # SqlStore, or the Sunbird store

    def engine(
        self, *, sample_limit: int = 0, uow_factory: object | None = None, on_written: RecordsWritten | None = None
    ) -> Engine:
        factory = uow_factory if uow_factory is not None else self.store
        return Engine(
            factory,  # type: ignore[arg-type]
            self.settings.policy(),
            EngineSettings(
                page_size=self.settings["page_size"],
                audit=self.settings["audit.enabled"],
                sample_limit=sample_limit,
            ),
            on_written=on_written,
        )

    def reader(self) -> UnitOfWork:
        """A unit of work for reads only (validation, status, console pages): no write lock on SQLite."""
        unit: UnitOfWork = self.store.read_only()  # type: ignore[attr-defined]
        return unit

    def deleted_owners(self) -> DeletedOwnersReport:
        """The deleted-owner report (SPEC 12) over read-only units of work of the store."""
        return DeletedOwnersReport(self.reader, self.settings.policy(), self.settings["page_size"])

    def undoer(self, on_written: RecordsWritten | None = None) -> Undoer:
        return Undoer(
            self.store,  # type: ignore[arg-type]
            page_size=self.settings["page_size"],
            audit=self.settings["audit.enabled"],
            replacement=self.settings.policy().replacement_value,
            on_written=on_written,
        )


def settings_of(config: ConfigPaths = None) -> Settings:
    """The settings of ``config`` (one entry or several), else of ``HANDOVER_CONFIG`` (``ConfigError`` when a file
    or value is bad). Imports no adapter."""
    return load_settings(config or config_paths_from_env(os.environ) or None)


def bootstrap(store: str | None = None, config: ConfigPaths = None) -> App:
    """Settings from ``config`` (one entry or several, ``config.config_entries``), else ``HANDOVER_CONFIG``;
    the store from ``store_url``."""
    settings = settings_of(config)
    url = store_url(store)
    if url.startswith("sunbird:"):
        from handover.adapters.sunbird import SunbirdStore  # type: ignore[import-not-found,unused-ignore]

        return App(settings, url, SunbirdStore(settings))
    import handover.adapters.sql_queue  # noqa: F401  (puts the queue and request-log tables on the schema)
    from handover.adapters.sql import SqlStore

    return App(settings, url, SqlStore(url))


@dataclass
class ApiParts:
    """What the HTTP API needs besides the store: where events go, the request log behind the status endpoint
    (None when the store has none), the request history and failed events behind the console (None where the store
    keeps none), the queue's backlog, and the in-process worker (only when events go to the embedded queue).
    ``requests_service`` is the use cases over these ports."""

    sink: EventSink
    requests: RequestLog | None
    worker: QueueWorker | None
    history: RequestHistory | None = None
    failed: FailedEvents | None = None
    backlog: Backlog | None = None

    def service(self, app: App) -> TransferRequests:
        """The request use cases over ``app``'s store and these parts."""
        return TransferRequests(
            store=app.store,  # type: ignore[arg-type]
            sink=self.sink,
            requests=self.requests,
            engine=app.engine,
            undoer=app.undoer,
            preview_store=getattr(app.store, "preview", None),
            history_log=self.history,
            failed_store=self.failed,
            backlog=self.backlog,
            reader=app.reader,
            max_objects=app.settings["api.max_objects"],
        )


def request_log(app: App) -> tuple[RequestLog | None, RequestHistory | None]:
    """The store's request log and request history (one object; both None on a store that keeps none)."""
    from handover.adapters.sql import SqlStore
    from handover.adapters.sql_queue import SqlRequestLog

    if isinstance(app.store, SqlStore):
        log = SqlRequestLog(app.store)
        return log, log
    if app.store_url.startswith("sunbird:"):
        from handover.adapters.sunbird import SunbirdRequestLog, SunbirdStore

        assert isinstance(app.store, SunbirdStore)
        sunbird = SunbirdRequestLog(app.store)
        return sunbird, sunbird
    return None, None


def api_parts(app: App, poll_seconds: float = 1.0, linger_seconds: float = 0.0) -> ApiParts:
    """Kafka when ``kafka.broker-servers`` is set, else the embedded store's queue and its worker (which looks
    for events every ``poll_seconds`` when it has not been woken by a publish of this process, and waits
    ``linger_seconds`` after a batch that was not full: ``QueueWorker``)."""
    from handover.adapters.sql import SqlStore
    from handover.adapters.sql_queue import QueueWorker, SqlEventQueue

    requests, history = request_log(app)
    if app.settings["kafka.broker-servers"]:
        from handover.adapters.kafka import KafkaEventSink

        # failed events are on the Kafka failed topic: `handover redrive` reads them
        return ApiParts(KafkaEventSink(app.settings), requests, None, history)
    if not isinstance(app.store, SqlStore):
        raise ConfigError(f"store {app.store_url} has no event queue: set kafka.broker-servers")
    queue = SqlEventQueue(app.store)
    worker = QueueWorker(
        queue, app.engine(), app.settings["max_attempts"], poll_seconds=poll_seconds,
        linger_seconds=linger_seconds, lease_seconds=app.settings["queue.processing.lease.seconds"],
    )
    return ApiParts(queue, requests, worker, history, queue, queue)


def kafka_worker(app: App) -> Worker:
    """The Kafka consumer of the input topics over ``app``'s store (``handover worker``)."""
    from handover.adapters.kafka_worker import Worker

    return Worker(app)


def kafka_sink(app: App) -> KafkaEventSink:
    """The Kafka producer (``handover publish``); ``ConfigError`` without ``kafka.broker-servers``."""
    from handover.adapters.kafka import KafkaEventSink

    return KafkaEventSink(app.settings)


def redrive(app: App, from_file: Path | None = None) -> Counter[str]:
    """Process failed events again, from ``from_file`` (failed-topic records or events, one per line) or from
    the Kafka failed topic (what it gained since the last redrive): counts by outcome."""
    from handover.adapters import kafka_redrive

    if from_file is not None:
        return kafka_redrive.redrive_path(app, from_file)
    return kafka_redrive.redrive_topic(app)


def store_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the store failed (the CLI's exit 1)."""
    import sqlalchemy.exc

    from handover.adapters.sql_schema import StoreError

    return (StoreError, sqlalchemy.exc.SQLAlchemyError, ConnectionError, TimeoutError)


def poison_errors() -> tuple[type[BaseException], ...]:
    """Errors that one event's data causes (the store refused a value), as opposed to a store outage."""
    import sqlalchemy.exc

    return (sqlalchemy.exc.DataError, sqlalchemy.exc.IntegrityError, UnicodeError)


def kafka_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean Kafka failed (the broker cannot be reached; a redrive could not write back)."""
    from confluent_kafka import KafkaException

    from handover.adapters.kafka_redrive import RedriveError

    return (KafkaException, RedriveError)
