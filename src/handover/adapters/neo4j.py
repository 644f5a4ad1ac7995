"""Neo4j over Bolt: Sunbird's asset nodes (label ``domain``; ``IL_UNIQUE_ID``, ``IL_FUNC_OBJECT_TYPE``,
``IL_SYS_NODE_TYPE = "DATA_NODE"``), read keyset-paged and written in pages with ``UNWIND $rows``.

Cypher is parameterized only: every value is a ``$parameter``; the one name that cannot be a parameter, the
graph label (``neo4j.graph``, default ``domain``), is validated. Map values (``originData``) are stored as JSON
strings, as Sunbird's graph layer stores map metadata (a Neo4j property cannot hold a map).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handover.adapters.sunbird_errors import StoreErrors, SunbirdStoreError, check_identifier
from handover.domain.model import Asset
from handover.domain.rules import AssetUpdate

log = logging.getLogger(__name__)
STORE = "neo4j"
DATA_NODE = "DATA_NODE"
SYSTEM_PROPS = ("IL_UNIQUE_ID", "IL_FUNC_OBJECT_TYPE", "IL_SYS_NODE_TYPE")
MODEL_PROPS = ("schemaVersion", "status", "visibility", "createdBy", "creator", "originData")
JSON_PROPS = frozenset({"originData"})  # map-valued in the model, a JSON string in the graph


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AssetCypher:
    """The statements, for one graph label."""

    label: str = "domain"

    def __post_init__(self) -> None:
        check_identifier(self.label, "label")

    def created_by(self, user_id: str, object_types: Sequence[str], after: str, limit: int) -> Query:
        """One page of the user's data nodes of these types, after the identifier ``after``."""
        return Query(
            f"MATCH (n:{self.label}) "
            "WHERE n.IL_FUNC_OBJECT_TYPE IN $types AND n.IL_SYS_NODE_TYPE = $node_type "
            "AND n.createdBy = $user AND n.IL_UNIQUE_ID > $after "
            "WITH n ORDER BY n.IL_UNIQUE_ID LIMIT $limit "
            "RETURN properties(n) AS props",
            {"types": list(object_types), "node_type": DATA_NODE, "user": user_id, "after": after, "limit": limit},
        )

    def by_id(self, identifier: str) -> Query:
        return Query(
            f"MATCH (n:{self.label}) WHERE n.IL_UNIQUE_ID = $id AND n.IL_SYS_NODE_TYPE = $node_type "
            "RETURN properties(n) AS props LIMIT 1",
            {"id": identifier, "node_type": DATA_NODE},
        )

    def by_ids(self, identifiers: Sequence[str]) -> Query:
        return Query(
            f"MATCH (n:{self.label}) WHERE n.IL_UNIQUE_ID IN $ids AND n.IL_SYS_NODE_TYPE = $node_type "
            "RETURN properties(n) AS props",
            {"ids": list(identifiers), "node_type": DATA_NODE},
        )

    def write(self, updates: Sequence[AssetUpdate]) -> Query:
        """Set the updates' top-level properties (``SET n += row.props``; other properties are kept)."""
        return Query(
            f"UNWIND $rows AS row MATCH (n:{self.label}) "
            "WHERE n.IL_UNIQUE_ID = row.id AND n.IL_SYS_NODE_TYPE = $node_type "
            "SET n += row.props RETURN count(n) AS written",
            {
                "rows": [{"id": u.identifier, "props": to_graph_props(u.values)} for u in updates],
                "node_type": DATA_NODE,
            },
        )

    def upsert(self, assets: Sequence[Asset]) -> Query:
        """``load``: create or replace whole nodes (all their properties)."""
        return Query(
            f"UNWIND $rows AS row MERGE (n:{self.label} {{IL_UNIQUE_ID: row.id}}) SET n = row.props "
            "RETURN count(n) AS written",
            {"rows": [{"id": a.identifier, "props": node_props(a)} for a in assets]},
        )

    def all_data_nodes(self, after: str, limit: int) -> Query:
        """``dump``: every data node, keyset-paged by identifier."""
        return Query(
            f"MATCH (n:{self.label}) WHERE n.IL_SYS_NODE_TYPE = $node_type AND n.IL_UNIQUE_ID > $after "
            "WITH n ORDER BY n.IL_UNIQUE_ID LIMIT $limit RETURN properties(n) AS props",
            {"node_type": DATA_NODE, "after": after, "limit": limit},
        )

    def delete_all(self) -> Query:
        """Every node of the label (tests use a label of their own)."""
        return Query(f"MATCH (n:{self.label}) DETACH DELETE n", {})

    def delete(self, identifiers: Sequence[str]) -> Query:
        return Query(
            f"MATCH (n:{self.label}) WHERE n.IL_UNIQUE_ID IN $ids DETACH DELETE n",
            {"ids": list(identifiers)},
        )


# --- node properties <-> model ----------------------------------------------------------------------


def to_graph_value(key: str, value: Any) -> Any:
    """A value a Neo4j property can hold: maps (and lists of maps) become JSON strings."""
    if isinstance(value, Mapping) or (isinstance(value, list) and any(isinstance(v, Mapping) for v in value)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def to_graph_props(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_graph_value(k, v) for k, v in values.items()}


def node_props(asset: Asset) -> dict[str, Any]:
    """All properties of an asset's node; null values are left out (Neo4j has no null properties)."""
    props: dict[str, Any] = {
        "IL_UNIQUE_ID": asset.identifier,
        "IL_FUNC_OBJECT_TYPE": asset.objectType,
        "IL_SYS_NODE_TYPE": DATA_NODE,
    }
    for key in MODEL_PROPS:
        value = getattr(asset, key)
        if value is not None:
            props[key] = to_graph_value(key, dict(value) if isinstance(value, Mapping) else value)
    for key, value in asset.extra.items():
        if value is not None and key not in props:
            props[key] = to_graph_value(key, value)
    return props


def asset_from_props(props: Mapping[str, Any]) -> Asset:
    """The model of a node. ``originData`` is parsed from its JSON string (an unreadable one counts as
    absent, with a warning); other properties beyond the model's are kept in ``extra``."""
    ident = str(props.get("IL_UNIQUE_ID"))
    origin = props.get("originData")
    if isinstance(origin, str):
        try:
            origin = json.loads(origin) if origin.strip() else None
        except ValueError:
            origin = None
        if origin is not None and not isinstance(origin, dict):
            origin = None
        if origin is None and props.get("originData"):
            log.warning("neo4j: node %s has an originData that is not a JSON object; read as null", ident)
    elif not isinstance(origin, dict):
        origin = None
    extra = {
        k: _plain(v) for k, v in props.items() if k not in SYSTEM_PROPS and k not in MODEL_PROPS and k != "identifier"
    }
    return Asset(
        identifier=ident,
        objectType=str(props.get("IL_FUNC_OBJECT_TYPE") or ""),
        schemaVersion=_str_or_none(props.get("schemaVersion")),
        status=_str_or_none(props.get("status")),
        visibility=_str_or_none(props.get("visibility")),
        createdBy=_str_or_none(props.get("createdBy")),
        creator=_str_or_none(props.get("creator")),
        originData=origin,
        extra=extra,
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    """A JSON-serializable form of a property value (temporal values become ISO strings)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    iso = getattr(value, "iso_format", None)
    return iso() if callable(iso) else str(value)


# --- the gateway ------------------------------------------------------------------------------------


class AssetGraph:
    """Runs the statements with the official driver (imported on first use). Reads run in read
    transactions, each page of writes in one write transaction (the driver retries transient errors)."""

    def __init__(
        self,
        uri: str,
        user: str | None,
        password: str | None,
        cypher: AssetCypher,
        timeout: float = 10.0,
        write_page: int = 500,
    ) -> None:
        self.uri = uri
        self.auth = (user, password or "") if user else None
        self.cypher = cypher
        self.timeout = timeout
        self.write_page = write_page
        self._driver: Any = None

    def driver(self) -> Any:
        if self._driver is None:
            try:
                import neo4j
            except ImportError as exc:  # pragma: no cover - the sunbird extra is missing
                raise SunbirdStoreError(STORE, f"the neo4j driver is not installed ({exc})") from exc
            with self.errors(f"cannot connect to {self.uri}"):
                self._driver = neo4j.GraphDatabase.driver(
                    self.uri, auth=self.auth, connection_timeout=self.timeout, max_transaction_retry_time=self.timeout
                )
        return self._driver

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
        self._driver = None

    def errors(self, doing: str) -> StoreErrors:
        return StoreErrors(STORE, doing, _driver_errors)

    def _run(self, query: Query, doing: str, write: bool) -> list[dict[str, Any]]:
        def work(tx: Any) -> list[dict[str, Any]]:
            return [dict(record) for record in tx.run(query.text, query.params)]

        with self.errors(doing), self.driver().session() as session:
            # execute_read/execute_write (driver 5+) or read_/write_transaction (driver 4.4, for Neo4j 3.5)
            name = (
                ("execute_write" if write else "execute_read")
                if hasattr(session, "execute_read")
                else ("write_transaction" if write else "read_transaction")
            )
            result: list[dict[str, Any]] = getattr(session, name)(work)
            return result

    def get(self, identifier: str) -> Asset | None:
        rows = self._run(self.cypher.by_id(identifier), f"reading node {identifier!r}", write=False)
        return asset_from_props(rows[0]["props"]) if rows else None

    def get_many(self, identifiers: Sequence[str]) -> dict[str, Asset]:
        out: dict[str, Asset] = {}
        for i in range(0, len(identifiers), self.write_page):
            rows = self._run(self.cypher.by_ids(identifiers[i : i + self.write_page]), "reading assets", write=False)
            for row in rows:
                asset = asset_from_props(row["props"])
                out[asset.identifier] = asset
        return out

    def pages_created_by(self, user_id: str, object_types: Sequence[str], page_size: int) -> Iterator[list[Asset]]:
        after = ""
        while True:
            query = self.cypher.created_by(user_id, object_types, after, page_size)
            rows = self._run(query, "reading a user's assets", write=False)
            if not rows:
                return
            page = [asset_from_props(r["props"]) for r in rows]
            after = page[-1].identifier
            yield page
            if len(rows) < page_size:
                return

    def write(self, updates: Sequence[AssetUpdate]) -> int:
        written = 0
        for i in range(0, len(updates), self.write_page):
            chunk = [u for u in updates[i : i + self.write_page] if u.values]
            if chunk:
                rows = self._run(self.cypher.write(chunk), "updating assets", write=True)
                count = int(rows[0]["written"]) if rows else 0
                if count < len(chunk):
                    log.warning(
                        "neo4j: %d of %d asset nodes no longer exist; not written", len(chunk) - count, len(chunk)
                    )
                written += count
        return written

    def upsert(self, assets: Sequence[Asset]) -> None:
        for i in range(0, len(assets), self.write_page):
            self._run(self.cypher.upsert(assets[i : i + self.write_page]), "loading assets", write=True)

    def delete(self, identifiers: Sequence[str]) -> None:
        if identifiers:
            self._run(self.cypher.delete(identifiers), "deleting assets", write=True)

    def delete_all(self) -> None:
        self._run(self.cypher.delete_all(), "deleting every node of the label", write=True)

    def all_assets(self, page_size: int = 1000) -> Iterator[Asset]:
        after = ""
        while True:
            rows = self._run(self.cypher.all_data_nodes(after, page_size), "reading assets", write=False)
            if not rows:
                return
            for row in rows:
                asset = asset_from_props(row["props"])
                after = asset.identifier
                yield asset
            if len(rows) < page_size:
                return


def _driver_errors() -> tuple[type[BaseException], ...]:
    from neo4j.exceptions import DriverError, Neo4jError

    return (Neo4jError, DriverError)
