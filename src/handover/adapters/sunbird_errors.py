"""The one error the Sunbird adapters raise: which store failed (cassandra, elasticsearch, neo4j, userorg)
and why. It is a ``ConnectionError`` so that the CLI and the workers treat it as a store failure (exit 1,
retry with backoff), never as bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SunbirdStoreError(ConnectionError):
    def __init__(self, store: str, message: str) -> None:
        super().__init__(f"{store}: {message}")
        self.store = store


def check_identifier(value: str, what: str) -> str:
    """A keyspace, table, index or label name from the configuration: letters, digits, ``_`` (and ``-`` for
    an Elasticsearch index). Such names cannot be bound as parameters, so they are validated instead."""
    allowed = value.replace("_", "").replace("-", "") if what == "index" else value.replace("_", "")
    if not value or not allowed.isascii() or not allowed.isalnum() or not value[0].isalpha() or len(value) > 48:
        raise ValueError(f"invalid {what} name {value!r}: letters, digits and _ only, starting with a letter")
    return value


class StoreErrors:
    """``with StoreErrors(store, "doing x", driver_errors):`` turns the driver's errors (and ``OSError``) into a
    ``SunbirdStoreError`` naming the store. ``driver_errors`` returns the driver's exception types, so that the
    driver is imported only when an error is raised."""

    def __init__(self, store: str, doing: str, driver_errors: Callable[[], tuple[type[BaseException], ...]]) -> None:
        self.store = store
        self.doing = doing
        self._driver_errors = driver_errors

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, SunbirdStoreError):
            return
        if isinstance(exc, (*self._driver_errors(), OSError)):
            raise SunbirdStoreError(self.store, f"{self.doing}: {type(exc).__name__}: {exc}") from exc
