"""Neo4j: Sunbird's asset nodes (label ``domain``; ``IL_UNIQUE_ID``, ``IL_FUNC_OBJECT_TYPE``,
``IL_SYS_NODE_TYPE = "DATA_NODE"``), read keyset-paged and written in pages with ``UNWIND $rows``.

Cypher is parameterized only: every value is a ``$parameter``; the one name that cannot be a parameter, the
graph label (``neo4j.graph``, default ``domain``), is validated. Map values (``originData``) are stored as JSON
strings, as Sunbird's graph layer stores map metadata (a Neo4j property cannot hold a map).

Transports, by server version (setting ``neo4j.transport``: ``auto``, the default, ``bolt`` or ``http``; the
Bolt versions each Neo4j speaks are in the Bolt documentation, "Bolt Protocol and Neo4j compatibility"):

- Neo4j 3.5, 4.x, 5.x and later: Bolt through the official driver (``neo4j`` 6.x offers Bolt 3.0 and later).
- Neo4j 3.0-3.4 (Sunbird Knowlg/inQuiry run 3.3, helm value ``neo4j:3.3.0``): these speak Bolt v1 (3.4 also v2)
  only, so the driver fails before the first query. The same statements then go to the transactional Cypher
  HTTP endpoint, which every Neo4j version has (``adapters/neo4j_http.py``), at ``neo4j.http.basePath``
  (default: the host of ``neo4j.routePath``, port 7474).

``auto`` learns the server's Bolt version once, with the Bolt handshake on the ``neo4j.routePath`` address: the
magic ``60 60 B0 17`` and four proposals (5.8 down to 5.0, 4.4 down to 4.2, 3.0, 1.0), answered with the one
version the server picked, ``00 00 00 00`` for none (Bolt protocol documentation, "Handshake"). An answer of 1 or
2 means HTTP; any other answer means Bolt, and the driver then negotiates its own version. With a TLS scheme
(``bolt+s``, ``neo4j+s``, ``+ssc``) ``auto`` means Bolt without probing; set ``neo4j.transport=http`` for a 3.x
server behind TLS.

Why not the 1.7 driver (PyPI ``neo4j==1.7.6`` + ``neobolt``, which speaks Bolt v1): it installs under the same
import name as the modern driver, so one environment cannot hold both, and handover would carry two drivers'
APIs. Why not HTTP for every version: on the servers it supports, Bolt is the driver's protocol, with its
routing, retries and typed values, and the HTTP API manual marks the endpoint deprecated as of Neo4j 5.26. The
HTTP transport stays small (one POST per statement); its request and answer format is the same in the Neo4j
3.3 server docs and the 5.x HTTP API manual.

Every Cypher construct used exists in Neo4j 3.3. Its parser (neo4j/neo4j, ``community/cypher/frontend-3.3``,
``parser/Clauses.scala``) has ``UNWIND Expression AS Variable``, ``SET Variable += Expression`` and
``SET Variable = Expression`` (so ``SET n += row.props``), ``MERGE``, ``WITH ... ORDER BY ... LIMIT Expression``
(so ``LIMIT $limit``) and ``DETACH DELETE``. The Neo4j 3.3 Cypher manual (neo4j/neo4j-documentation branch 3.3,
``cypher/cypher-docs``) lists ``$parameter`` syntax and ``properties()`` as added in 3.0 ("Deprecations, additions
and compatibility"), and shows ``UNWIND $events AS event MERGE (y:Year {year: event.year})`` (``UnwindTest``),
``SET p += {...}`` (``SetTest``), ``LIMIT`` with an expression (``LimitTest``) and ``DETACH DELETE``
(``DeleteTest``), ``IN`` (``WhereTest``) and ``count()`` (``AggregatingFunctionsTest``).
"""

from __future__ import annotations

import json
import logging
import socket
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from handover import metrics
from handover.adapters.neo4j_http import NEO4J_3_COMMIT_PATH, TransactionalEndpoint
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

    def created_by_any(self, users: Sequence[str], object_types: Sequence[str], limit: int) -> Query:
        """The data nodes of these types that any of ``users`` created, by creator and identifier, at most
        ``limit`` (a micro-batch's read ahead)."""
        return Query(
            f"MATCH (n:{self.label}) "
            "WHERE n.IL_FUNC_OBJECT_TYPE IN $types AND n.IL_SYS_NODE_TYPE = $node_type AND n.createdBy IN $users "
            "WITH n ORDER BY n.createdBy, n.IL_UNIQUE_ID LIMIT $limit "
            "RETURN properties(n) AS props",
            {"types": list(object_types), "node_type": DATA_NODE, "users": list(users), "limit": limit},
        )

    def types_created_by(self, user_id: str) -> Query:
        """How many data nodes the user created, by objectType."""
        return Query(
            f"MATCH (n:{self.label}) WHERE n.createdBy = $user AND n.IL_SYS_NODE_TYPE = $node_type "
            "RETURN n.IL_FUNC_OBJECT_TYPE AS type, count(n) AS assets",
            {"user": user_id, "node_type": DATA_NODE},
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
        """``load``: create a missing node; on an existing one set the fixture's fields only (``SET n += ...``;
        a field the fixture gives as null is removed), every other property of a live node is kept."""
        return Query(
            f"UNWIND $rows AS row MERGE (n:{self.label} {{IL_UNIQUE_ID: row.id}}) SET n += row.props "
            "RETURN count(n) AS written",
            {"rows": [{"id": a.identifier, "props": load_props(a)} for a in assets]},
        )

    def all_data_nodes(self, object_types: Sequence[str], after: str, limit: int) -> Query:
        """``dump``: the data nodes of these types, keyset-paged by identifier."""
        return Query(
            f"MATCH (n:{self.label}) WHERE n.IL_FUNC_OBJECT_TYPE IN $types AND n.IL_SYS_NODE_TYPE = $node_type "
            "AND n.IL_UNIQUE_ID > $after WITH n ORDER BY n.IL_UNIQUE_ID LIMIT $limit RETURN properties(n) AS props",
            {"types": list(object_types), "node_type": DATA_NODE, "after": after, "limit": limit},
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


def load_props(asset: Asset) -> dict[str, Any]:
    """``node_props`` plus a null for each model field the asset leaves empty (``SET n +=`` removes those)."""
    props = node_props(asset)
    for key in MODEL_PROPS:
        props.setdefault(key, None)
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


def with_values(asset: Asset, values: Mapping[str, Any]) -> Asset:
    """The node as the graph reads it after ``SET n += row.props`` of ``values`` (``AssetCypher.write``: a None
    value removes the property)."""
    props = node_props(asset)
    for key, value in to_graph_props(values).items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    return asset_from_props(props)


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


# --- which transport: the Bolt handshake --------------------------------------------------------------

TRANSPORTS = ("auto", "bolt", "http")
BOLT_PORT = 7687
HTTP_PORT = 7474
BOLT_MAGIC = bytes.fromhex("6060B017")
# Each proposal is [reserved, range, minor, major]: 5.8 down to 5.0, 4.4 down to 4.2, 3.0, 1.0. Servers before
# 4.3 ignore ranges and compare the whole number, so a 3.x server sees exactly 3.0 and 1.0.
BOLT_PROPOSALS = (0x00080805, 0x00020404, 0x00000003, 0x00000001)
HTTP_ANSWER = b"HTTP"  # an HTTP server on the Bolt port answers the handshake with a status line
TLS_SCHEMES = frozenset({"bolt+s", "bolt+ssc", "neo4j+s", "neo4j+ssc"})
BOLT_SCHEMES = frozenset({"bolt", "neo4j"}) | TLS_SCHEMES


def handshake_request(proposals: Sequence[int] = BOLT_PROPOSALS) -> bytes:
    """The 20 bytes a client opens a Bolt connection with: the magic and four 32-bit big-endian proposals."""
    if len(proposals) != 4:
        raise ValueError("the Bolt handshake carries exactly four proposals")
    return BOLT_MAGIC + b"".join(struct.pack(">I", p) for p in proposals)


def handshake_answer(answer: bytes) -> tuple[int, int] | None:
    """The (major, minor) the server picked, None when it supports none of the proposals. ValueError for an
    answer that is not a Bolt handshake answer (an HTTP server, a closed connection)."""
    if answer[:4] == HTTP_ANSWER:
        raise ValueError("an HTTP server answered on the Bolt port (neo4j.routePath names the HTTP port?)")
    if len(answer) != 4:
        raise ValueError(f"the server closed the connection after {len(answer)} of the 4 answer bytes")
    if answer == b"\x00\x00\x00\x00":
        return None
    return answer[3], answer[2]


def speaks_only_old_bolt(version: tuple[int, int] | None) -> bool:
    """Bolt v1/v2 only: Neo4j 3.0-3.4, which the installed driver cannot talk to."""
    return version is not None and version[0] in (1, 2)


def bolt_address(route_path: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``neo4j.routePath`` (``bolt://host:7687``; a bare ``host:port`` means bolt)."""
    text = route_path.strip()
    parts = urlsplit(text if "://" in text else f"bolt://{text}")
    scheme = parts.scheme.lower()
    if scheme not in BOLT_SCHEMES:
        raise ValueError(f"neo4j.routePath {route_path!r}: expected a bolt:// or neo4j:// address")
    if not parts.hostname:
        raise ValueError(f"neo4j.routePath {route_path!r} names no host")
    try:
        port = parts.port or BOLT_PORT
    except ValueError as exc:
        raise ValueError(f"neo4j.routePath {route_path!r}: {exc}") from None
    return scheme, parts.hostname, port


def default_http_base(route_path: str) -> str:
    """``http://<routePath host>:7474``, Neo4j's default HTTP port (``https`` and 7473 for a TLS scheme)."""
    scheme, host, _ = bolt_address(route_path)
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:7473" if scheme in TLS_SCHEMES else f"http://{host}:{HTTP_PORT}"


def bolt_version(host: str, port: int, timeout: float) -> tuple[int, int] | None:
    """The Bolt version the server at host:port picks from ``BOLT_PROPOSALS`` (one handshake, then the
    connection is closed). OSError when it cannot be reached, ValueError for an answer that is not Bolt's."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(handshake_request())
        answer = b""
        while len(answer) < 4:
            chunk = sock.recv(4 - len(answer))
            if not chunk:
                break
            answer += chunk
    return handshake_answer(answer)


class CypherRunner(Protocol):
    """Runs one statement in a transaction of its own; rows as ``{column: value}``; SunbirdStoreError."""

    name: str

    def run(self, query: Query, doing: str, write: bool) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class BoltRunner:
    """The official driver (imported on first use). Reads run in read transactions, writes in write
    transactions (the driver retries transient errors)."""

    name = "bolt"

    def __init__(self, uri: str, auth: tuple[str, str] | None, timeout: float, database: str | None) -> None:
        self.uri = uri
        self.auth = auth
        self.timeout = timeout
        self.database = database
        self._driver: Any = None

    def driver(self) -> Any:
        if self._driver is None:
            try:
                import neo4j
            except ImportError as exc:  # pragma: no cover - the sunbird extra is missing
                raise SunbirdStoreError(STORE, f"the neo4j driver is not installed ({exc})") from exc
            with StoreErrors(STORE, f"cannot connect to {self.uri}", _driver_errors):
                self._driver = neo4j.GraphDatabase.driver(
                    self.uri, auth=self.auth, connection_timeout=self.timeout, max_transaction_retry_time=self.timeout
                )
        return self._driver

    def run(self, query: Query, doing: str, write: bool) -> list[dict[str, Any]]:
        def work(tx: Any) -> list[dict[str, Any]]:
            return [dict(record) for record in tx.run(query.text, query.params)]

        options = {"database": self.database} if self.database else {}
        with StoreErrors(STORE, doing, _driver_errors), self.driver().session(**options) as session:
            # execute_read/execute_write (driver 5+) or read_/write_transaction (driver 4.4, for Neo4j 3.5)
            name = (
                ("execute_write" if write else "execute_read")
                if hasattr(session, "execute_read")
                else ("write_transaction" if write else "read_transaction")
            )
            result: list[dict[str, Any]] = getattr(session, name)(work)
            return result

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
        self._driver = None


class HttpRunner:
    """The transactional Cypher HTTP endpoint (``adapters/neo4j_http.py``)."""

    name = "http"

    def __init__(self, endpoint: TransactionalEndpoint) -> None:
        self.endpoint = endpoint

    def run(self, query: Query, doing: str, write: bool) -> list[dict[str, Any]]:
        return self.endpoint.run(query.text, query.params, doing)

    def close(self) -> None:
        self.endpoint.close()


# --- the gateway ------------------------------------------------------------------------------------


class AssetGraph:
    """The asset statements over Bolt or over HTTP (see the module doc for which, and why). The transport is
    chosen on first use and kept; ``transport`` names it afterwards (``bolt`` or ``http``)."""

    def __init__(
        self,
        uri: str,
        user: str | None,
        password: str | None,
        cypher: AssetCypher,
        timeout: float = 10.0,
        write_page: int = 500,
        *,
        transport: str = "auto",
        http_base: str | None = None,
        database: str | None = None,
        http_attempts: int = 3,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"neo4j.transport {transport!r}: expected one of {', '.join(TRANSPORTS)}")
        self.uri = uri
        self.user = user
        self.password = password
        self.auth = (user, password or "") if user else None
        self.cypher = cypher
        self.timeout = timeout
        self.write_page = write_page
        self.wanted = transport
        self.http_base = http_base or (default_http_base(uri) if transport != "bolt" else None)
        self.database = database
        self.http_attempts = http_attempts
        self._runner: CypherRunner | None = None

    @property
    def transport(self) -> str | None:
        return self._runner.name if self._runner is not None else None

    def runner(self) -> CypherRunner:
        if self._runner is None:
            self._runner = self._choose()
        return self._runner

    def _http(self, path: str | None) -> HttpRunner:
        assert self.http_base is not None
        return HttpRunner(
            TransactionalEndpoint(
                self.http_base,
                self.user,
                self.password,
                path=path,
                database=self.database,
                timeout=self.timeout,
                attempts=self.http_attempts,
            )
        )

    def _choose(self) -> CypherRunner:
        bolt = BoltRunner(self.uri, self.auth, self.timeout, self.database)
        if self.wanted == "bolt":
            return bolt
        if self.wanted == "http":
            return self._http(None)  # the endpoint's path comes from the discovery document
        scheme, host, port = bolt_address(self.uri)
        if scheme in TLS_SCHEMES:
            return bolt
        try:
            version = bolt_version(host, port, self.timeout)
        except (OSError, ValueError) as exc:
            raise SunbirdStoreError(STORE, f"Bolt handshake with {host}:{port}: {type(exc).__name__}: {exc}") from exc
        if speaks_only_old_bolt(version):
            assert version is not None
            log.info(
                "neo4j: %s speaks Bolt %d.%d only (Neo4j 3.0-3.4), which the driver does not; "
                "using the transactional HTTP endpoint at %s",
                self.uri,
                *version,
                self.http_base,
            )
            return self._http(NEO4J_3_COMMIT_PATH)
        return bolt

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner = None

    def _run(self, query: Query, doing: str, write: bool) -> list[dict[str, Any]]:
        metrics.store_call(STORE, "write" if write else "read")
        return self.runner().run(query, doing, write)

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

    def types_created_by(self, user_id: str) -> dict[str, int]:
        """How many assets ``user_id`` created, by objectType (the preview's "stays with the old owner")."""
        rows = self._run(self.cypher.types_created_by(user_id), "counting a user's assets by type", write=False)
        return {str(r["type"]): int(r["assets"]) for r in rows if r.get("type") is not None}

    def created_by_any(self, users: Sequence[str], object_types: Sequence[str], limit: int) -> dict[str, list[Asset]]:
        """Every data node of these types that each of ``users`` created, in one query; {} when they have more
        than ``limit`` together (the caller then pages each user)."""
        query = self.cypher.created_by_any(users, object_types, limit + 1)
        rows = self._run(query, "reading the users' assets", write=False)
        if len(rows) > limit:
            return {}
        out: dict[str, list[Asset]] = {u: [] for u in users}
        for row in rows:
            asset = asset_from_props(row["props"])
            out.setdefault(asset.createdBy or "", []).append(asset)
        return {u: out[u] for u in users}  # each in the server's identifier order, as the pages

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

    def all_assets(self, object_types: Sequence[str], page_size: int = 1000) -> Iterator[Asset]:
        """Every data node of these types (``IL_FUNC_OBJECT_TYPE``), by identifier, ``page_size`` a query."""
        after = ""
        while True:
            query = self.cypher.all_data_nodes(object_types, after, page_size)
            rows = self._run(query, "reading assets", write=False)
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
