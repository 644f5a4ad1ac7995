"""The one place that picks adapters: from a store URL and a config file to a wired ``App``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from handover.config import Settings, load_settings
from handover.service.engine import Engine, EngineSettings

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


def bootstrap(store: str | None = None, config: str | Path | None = None) -> App:
    settings = load_settings(config or os.environ.get("HANDOVER_CONFIG") or None)
    url = store_url(store)
    if url.startswith("sunbird:"):
        from handover.adapters.sunbird import SunbirdStore  # type: ignore[import-not-found,unused-ignore]

        return App(settings, url, SunbirdStore(settings))
    from handover.adapters.sql import SqlStore

    return App(settings, url, SqlStore(url))
