"""The one place that picks adapters: from a store URL and a config file to a wired ``App``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handover.config import ConfigError, ConfigPaths, Settings, config_paths_from_env, load_settings
from handover.service.engine import Engine, EngineSettings
from handover.service.ports import EventSink, RequestLog, UnitOfWork
from handover.service.undo import Undoer

if TYPE_CHECKING:
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

    def engine(self, *, sample_limit: int = 0, uow_factory: object | None = None) -> Engine:
        factory = uow_factory if uow_factory is not None else self.store
        return Engine(
            factory,  # type: ignore[arg-type]
            self.settings.policy(),
            EngineSettings(
                page_size=self.settings["page_size"],
                audit=self.settings["audit.enabled"],
                sample_limit=sample_limit,
            ),
        )

    def reader(self) -> UnitOfWork:
        """A unit of work for reads only (validation, status, console pages): no write lock on SQLite."""
        unit: UnitOfWork = self.store.read_only()  # type: ignore[attr-defined]
        return unit

    def undoer(self) -> Undoer:
        return Undoer(
            self.store,  # type: ignore[arg-type]
            page_size=self.settings["page_size"],
            audit=self.settings["audit.enabled"],
            replacement=self.settings.policy().replacement_value,
        )


def bootstrap(store: str | None = None, config: ConfigPaths = None) -> App:
    """Settings from ``config`` (one entry or several, ``config.config_entries``), else ``HANDOVER_CONFIG``;
    the store from ``store_url``."""
    settings = load_settings(config or config_paths_from_env(os.environ) or None)
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
    (None when the store has none), and the in-process worker (only when events go to the embedded queue)."""

    sink: EventSink
    requests: RequestLog | None
    worker: QueueWorker | None


def api_parts(app: App) -> ApiParts:
    """Kafka when ``kafka.broker-servers`` is set, else the embedded store's queue and its worker."""
    from handover.adapters.sql import SqlStore
    from handover.adapters.sql_queue import QueueWorker, SqlEventQueue, SqlRequestLog

    requests: RequestLog | None = None
    if isinstance(app.store, SqlStore):
        requests = SqlRequestLog(app.store)
    elif app.store_url.startswith("sunbird:"):
        from handover.adapters.sunbird import SunbirdRequestLog, SunbirdStore

        assert isinstance(app.store, SunbirdStore)
        requests = SunbirdRequestLog(app.store)
    if app.settings["kafka.broker-servers"]:
        from handover.adapters.kafka import KafkaEventSink

        return ApiParts(KafkaEventSink(app.settings), requests, None)
    if not isinstance(app.store, SqlStore):
        raise ConfigError(f"store {app.store_url} has no event queue: set kafka.broker-servers")
    queue = SqlEventQueue(app.store)
    return ApiParts(queue, requests, QueueWorker(queue, app.engine(), app.settings["max_attempts"]))
