"""Neo4j's transactional Cypher HTTP endpoint (httpx): the transport for a Neo4j that the installed Bolt driver
cannot talk to (Neo4j 3.0-3.4 speak Bolt v1/v2 only; the ``neo4j`` 6.x driver offers Bolt 3.0 and later).

Each statement is sent alone to the "begin and commit a transaction in one request" endpoint, so it runs in a
transaction of its own, as each statement does on the Bolt path:

- Neo4j 3.x: ``POST {base}/db/data/transaction/commit`` (Neo4j 3.3 manual, server-docs ``TransactionDocIT``
  "Begin and commit a transaction in one request").
- Neo4j 4.x and later: ``POST {base}/db/{database}/tx/commit`` (HTTP API manual, "Endpoints"); 4.x still has the
  3.x path, deprecated, removed in 5.0.

Request ``{"statements": [{"statement": text, "parameters": {...}, "resultDataContents": ["row"]}]}``; answer
``{"results": [{"columns": [...], "data": [{"row": [...]}]}], "errors": [{"code", "message"}]}``, HTTP 200 even
when a statement failed: the ``errors`` list says so, and the server has rolled the transaction back (HTTP API
manual, "Handling errors"). Authentication is HTTP Basic; a missing or wrong password is HTTP 401 with
``Neo.ClientError.Security.Unauthorized``, a password that must first be changed is 403
``Neo.ClientError.Security.Forbidden`` (Neo4j 3.3 server-docs ``AuthenticationDocIT``). 3.x refuses literal
line breaks inside a statement (developer manual 3.x, "Transactional Cypher HTTP endpoint"): handover's
statements are single-line.

Retries (as ``adapters/elasticsearch.py``): connection errors, HTTP 5xx and 429, and ``Neo.TransientError.*``
answers are retried ``attempts`` times with exponential back-off. A statement whose answer was lost can thus run
twice; every statement handover sends is idempotent (``SET n += ...``, ``MERGE``, ``DETACH DELETE``, reads).
Every failure is a ``SunbirdStoreError`` naming ``neo4j``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from handover.adapters.sunbird_errors import SunbirdStoreError

log = logging.getLogger(__name__)
STORE = "neo4j"
NEO4J_3_COMMIT_PATH = "/db/data/transaction/commit"
DEFAULT_DATABASE = "neo4j"  # the default database of Neo4j 4.0 and later


class CypherError(Exception):
    """An entry of the answer's ``errors`` list: ``code`` (``Neo.ClientError.Statement.SyntaxError``, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        return self.code.startswith("Neo.TransientError.")


class _HttpStatus(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:500]}")
        self.status = status
        self.text = text


# --- pure request and answer handling --------------------------------------------------------------


def request_body(text: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The body for one statement; rows only (no graph format)."""
    return {"statements": [{"statement": text, "parameters": dict(params), "resultDataContents": ["row"]}]}


def rows_of(answer: Any) -> list[dict[str, Any]]:
    """The rows of a one-statement answer as ``{column: value}`` dicts (the shape a Bolt record gives).
    Raises ``CypherError`` for the first entry of ``errors``, ``ValueError`` for an answer of another shape."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("errors"), list):
        raise ValueError(f"not an answer of the transactional endpoint: {json.dumps(answer)[:300]}")
    for error in answer["errors"]:
        if isinstance(error, Mapping):
            raise CypherError(str(error.get("code", "")), str(error.get("message", "")))
        raise ValueError(f"an error entry that is not an object: {error!r}")
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], Mapping):
        raise ValueError(f"expected one result, got {json.dumps(results)[:300]}")
    columns = results[0].get("columns")
    data = results[0].get("data")
    if not isinstance(columns, list) or not isinstance(data, list):
        raise ValueError("a result without columns or data")
    out = []
    for entry in data:
        row = entry.get("row") if isinstance(entry, Mapping) else None
        if not isinstance(row, list) or len(row) != len(columns):
            raise ValueError(f"a data entry that is not a row of {len(columns)} values: {entry!r}")
        out.append(dict(zip(columns, row, strict=True)))
    return out


def commit_path(discovery: Any, database: str | None) -> str:
    """The commit endpoint's path from the discovery document of ``GET {base}/``: 3.x names ``data``
    (``.../db/data/``), 4.x and later name ``transaction`` (``.../db/{databaseName}/tx``)."""
    if isinstance(discovery, Mapping) and isinstance(discovery.get("transaction"), str):
        template = urlsplit(discovery["transaction"]).path
        name = quote(database or DEFAULT_DATABASE, safe="")
        return template.replace("{databaseName}", name).rstrip("/") + "/commit"
    if isinstance(discovery, Mapping) and isinstance(discovery.get("data"), str):
        if database:
            log.warning("neo4j: neo4j.database=%s is ignored: Neo4j 3.x has one database", database)
        return urlsplit(discovery["data"]).path.rstrip("/") + "/transaction/commit"
    raise ValueError(f"not a Neo4j discovery document: {json.dumps(discovery)[:300]}")


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, CypherError):
        return exc.transient
    return isinstance(exc, _HttpStatus) and (exc.status >= 500 or exc.status == 429)


def _explain(exc: BaseException, url: str) -> str:
    if isinstance(exc, _HttpStatus) and exc.status in (401, 403):
        try:
            first = json.loads(exc.text)["errors"][0]
            said = f"{first['code']}: {first['message']}"
        except (ValueError, KeyError, IndexError, TypeError):
            said = exc.text[:300]
        return f"HTTP {exc.status} from {url}: {said} (check neo4j.user / neo4j.password)"
    if isinstance(exc, _HttpStatus) and exc.status == 404:
        return f"HTTP 404 from {url}: no transactional Cypher endpoint there (check neo4j.http.basePath)"
    return f"{type(exc).__name__}: {exc}"


# --- the client -------------------------------------------------------------------------------------


class TransactionalEndpoint:
    """Runs one statement per request. ``path`` is the commit endpoint's path; when None it is looked up once
    from the discovery document (``GET {base}/``)."""

    def __init__(
        self,
        base_url: str,
        user: str | None,
        password: str | None,
        *,
        path: str | None = None,
        database: str | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        max_wait: float = 2.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.database = database
        self.attempts = attempts
        self.max_wait = max_wait
        auth = httpx.BasicAuth(user, password or "") if user else None
        self._client = client or httpx.Client(timeout=timeout, auth=auth)
        self._headers = {"Accept": "application/json; charset=UTF-8", "Content-Type": "application/json"}

    def close(self) -> None:
        self._client.close()

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.1, max=self.max_wait),
            retry=retry_if_exception(_transient),
            reraise=True,
        )

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _HttpStatus(response.status_code, response.text)
        try:
            return response.json()
        except ValueError:
            status, text = response.status_code, response.text[:300]
            raise ValueError(f"HTTP {status} with a body that is not JSON: {text}") from None

    def commit_url(self) -> str:
        if self.path is None:
            url = self.base_url + "/"
            try:
                for attempt in self._retrying():
                    with attempt:
                        discovery = self._json(self._client.get(url, headers={"Accept": "application/json"}))
                self.path = commit_path(discovery, self.database)
            except (httpx.HTTPError, _HttpStatus, ValueError) as exc:
                raise SunbirdStoreError(STORE, f"reading the discovery document: {_explain(exc, url)}") from exc
            log.info("neo4j: transactional endpoint %s%s", self.base_url, self.path)
        return self.base_url + self.path

    def run(self, text: str, params: Mapping[str, Any], doing: str) -> list[dict[str, Any]]:
        """The statement's rows as ``{column: value}`` dicts. ``SunbirdStoreError`` on any failure."""
        url = self.commit_url()
        body = json.dumps(request_body(text, params), ensure_ascii=False).encode()
        try:
            for attempt in self._retrying():
                with attempt:
                    response = self._client.post(url, content=body, headers=self._headers)
                    return rows_of(self._json(response))
        except (httpx.HTTPError, _HttpStatus, CypherError, ValueError) as exc:
            raise SunbirdStoreError(STORE, f"{doing}: {_explain(exc, url)}") from exc
        raise AssertionError("unreachable")  # pragma: no cover
