"""Elasticsearch index ``course-batch`` over its REST API (httpx): find a user's batches, page through every
hit with ``search_after``, and partially update exactly ``createdBy`` / ``mentors`` with the bulk API.

The request bodies are built by pure functions (tested to the byte); values go into JSON documents built by a
serializer, never into query strings. The REST API is used directly (no client library: each client major
speaks to one server major) so that the same code talks to every server a Sunbird deployment runs.

Server versions. The major version is read once per ``CourseBatchIndex`` (``GET /`` -> ``version.number``, or
the ``es.version`` setting when ``GET /`` is not allowed) and each request is shaped for it:

- Elasticsearch 6.x (Sunbird Lern ran 6.8.22): every document belongs to a mapping type, and lms-service names
  it ``_doc`` (``ElasticSearchService._DOC``, used in its index, update, get, delete and bulk requests). A bulk
  action line without ``_type`` makes 6.x refuse the whole request (400 ``action_request_validation_exception``
  "type is missing"), so the action lines carry ``"_type": "_doc"``; documents are read at
  ``/{index}/_doc/{id}``; an index is created with its mapping under ``_doc``.
- Elasticsearch 7.x (Lern documents the upgrade to 7.17.13): typeless requests, which 7.x prefers (a ``_type``
  is deprecated there); ``/{index}/_doc/{id}`` is the typeless document endpoint.
- Elasticsearch 8.x and later, and OpenSearch: typeless; a ``_type`` in a bulk action is refused (400
  ``illegal_argument_exception`` "Action/metadata line [1] contains an unknown parameter [_type]").
- Before 6.0: refused with a ``SunbirdStoreError`` naming the version.

The search request is the same on every version: ``bool`` / ``term`` / ``terms``, ``_source`` filtering,
``sort`` and ``search_after`` exist since 5.x. Only ``hits.total`` differs (a number on 6.x, an object
``{value, relation}`` on 7+), and it is not read: paging stops on a short page.

Refresh (a search right after a write must find it). Elasticsearch makes a change searchable at the index's next
refresh (``index.refresh_interval``, 1 s by default; Sunbird's course-batch settings keep the default), and a
transfer finds its batches through a search: B->C run within a second of A->B (one micro-batch, a replay, a
Kafka backlog, another worker) found none of B's new batches. ``es.refresh`` chooses how a write is made
searchable for the next search:

- ``before_search`` (the default): ``POST /{index}/_refresh`` before the first search for a user's batches of a
  unit of work (a micro-batch), and again before a later search of it once this process wrote the index since
  (``CourseBatchIndex.writes``); the writes carry no ``refresh``. Every write acknowledged before the unit of
  work's first search is found, whoever made it (another worker, re-syncs, the LMS itself), and every write of
  this process before the search (earlier events of the micro-batch). Cost: one refresh call per micro-batch that
  searches, plus one per search that follows a write of the index; on Elasticsearch it refreshes the index's
  shards, which makes a new small segment only when changes are pending. On a secured cluster it needs the
  ``maintenance`` index privilege.
- ``wait_for``: every bulk write carries ``refresh=wait_for`` and returns once its change is searchable; no
  refresh call. Cost: on Elasticsearch each write waits for the next scheduled refresh, up to
  ``index.refresh_interval`` (and for ever when it is ``-1``), so a backlog of events that write batches runs
  at about one event per refresh interval; it covers handover's own writes only.

``refresh=true`` on the writes is not offered: a forced refresh per write, with ``wait_for``'s coverage.
Measured with ``bench/es_refresh.py`` (figures in the README): on the noida-db emulator each way adds tens of
milliseconds to an event (the refresh call: median 70 ms on a loaded 2-core machine); the emulator does not make
``wait_for`` wait (it refreshes at once), so ``wait_for``'s cost on Elasticsearch is the one described above.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from handover import metrics
from handover.adapters.sunbird_errors import SunbirdStoreError, check_identifier
from handover.domain.model import CourseBatch
from handover.domain.rules import BatchUpdate

log = logging.getLogger(__name__)
STORE = "elasticsearch"
CONCURRENCY = 8  # searches in flight at once (CourseBatchIndex.first_pages)
SOURCE_FIELDS = ("batchId", "courseId", "createdBy", "mentors", "status")
# search_after needs a total order: the document id is the batch id, and courseId breaks any tie that
# lower-casing could create.
SORT = ({"batchId.raw": "asc"}, {"courseId.raw": "asc"})
# the mapping type of every lms-service request on Elasticsearch 6.x (Sunbird-Lern/lms-service,
# ElasticSearchService._DOC)
DOC_TYPE = "_doc"
# ``refresh`` of a bulk request: "false" (Elasticsearch's default), "wait_for" (return once the change is
# searchable, at the next scheduled refresh), "true" (refresh the touched shards now)
Refresh = Literal["false", "wait_for", "true"]
# ``es.refresh``: how a write is made searchable before the next search (module doc)
RefreshMode = Literal["before_search", "wait_for"]
REFRESH_MODES: tuple[RefreshMode, ...] = ("before_search", "wait_for")


# --- the server's version -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerVersion:
    """What ``GET /`` reports (or ``es.version`` says): ``number`` as given (``"6.8.22"``), its major, and the
    distribution (``elasticsearch`` or ``opensearch``)."""

    number: str
    major: int
    distribution: str = "elasticsearch"

    @property
    def doc_type(self) -> str | None:
        """The type named in bulk action lines and index mappings: ``_doc`` on Elasticsearch 6.x, none after."""
        return DOC_TYPE if self.distribution == "elasticsearch" and self.major == 6 else None

    def __str__(self) -> str:
        name = "Elasticsearch" if self.distribution == "elasticsearch" else "OpenSearch"
        return f"{name} {self.number}"


_VERSION = re.compile(r"(\d+)(?:\.\d+){0,2}(?:[-.+][0-9A-Za-z.-]*)?")


def parse_version(number: Any, distribution: Any = None) -> ServerVersion:
    """A version string (``"6.8.22"``, ``"7.17.13"``, ``"8.15.3"``, ``"7.0.0-beta1"``) as a ``ServerVersion``.
    ValueError when it is not one, or names an Elasticsearch before 6.0 (the versions handled are 6.x, 7.x and
    8.x and later)."""
    dist = "elasticsearch" if distribution in (None, "", "elasticsearch") else str(distribution).lower()
    if dist not in ("elasticsearch", "opensearch"):
        raise ValueError(f"unknown distribution {distribution!r}")
    match = _VERSION.fullmatch(number.strip()) if isinstance(number, str) else None
    if match is None:
        raise ValueError(f"not a version number: {number!r}")
    version = ServerVersion(number.strip(), int(match.group(1)), dist)
    if dist == "elasticsearch" and version.major < 6:
        raise ValueError(f"{version} is not supported (Elasticsearch 6.x, 7.x and 8.x are)")
    return version


def version_from_root(body: Any) -> ServerVersion:
    """The version in the answer to ``GET /`` (``{"version": {"number": "6.8.22", ...}, ...}``; OpenSearch adds
    ``"distribution": "opensearch"``). ValueError when it has none."""
    version = body.get("version") if isinstance(body, Mapping) else None
    if not isinstance(version, Mapping) or "number" not in version:
        raise ValueError(f"no version.number in {json.dumps(body)[:300] if body is not None else 'an empty body'}")
    return parse_version(version["number"], version.get("distribution"))


# --- pure request bodies ----------------------------------------------------------------------------


def batches_of_user_query(
    user_id: str, statuses: Sequence[int], size: int, after: Sequence[Any] | None = None
) -> dict[str, Any]:
    """The search body: batches with one of ``statuses`` whose ``createdBy`` or ``mentors`` is the user.
    ``.raw`` fields are analysed with ``keylower`` (keyword + lowercase), so the value is lower-cased, as the
    LMS batch search does; the exact match is checked against the Cassandra row afterwards."""
    value = user_id.lower()
    body: dict[str, Any] = {
        "size": size,
        "_source": list(SOURCE_FIELDS),
        "query": {
            "bool": {
                "filter": [{"terms": {"status": sorted(statuses)}}],
                "should": [{"term": {"createdBy.raw": value}}, {"term": {"mentors.raw": value}}],
                "minimum_should_match": 1,
            }
        },
        "sort": [dict(s) for s in SORT],
    }
    if after is not None:
        body["search_after"] = list(after)
    return body


def partial_doc(update: BatchUpdate) -> dict[str, Any]:
    """Exactly the fields the update writes, in the index's field names."""
    doc: dict[str, Any] = {}
    if update.createdby is not None:
        doc["createdBy"] = update.createdby
    if update.mentors is not None:
        doc["mentors"] = list(update.mentors)
    return doc


def action_line(action: str, index: str, batch_id: str, doc_type: str | None, **extra: Any) -> dict[str, Any]:
    """A bulk action line; ``doc_type`` (``ServerVersion.doc_type``) is named only when the server needs it."""
    meta: dict[str, Any] = {"_index": index}
    if doc_type is not None:
        meta["_type"] = doc_type
    meta["_id"] = batch_id
    meta.update(extra)
    return {action: meta}


def bulk_update_lines(
    index: str, docs: Sequence[tuple[str, Mapping[str, Any]]], doc_type: str | None = None
) -> list[dict[str, Any]]:
    """Action and partial document for each (batch id, fields) pair."""
    lines: list[dict[str, Any]] = []
    for batch_id, doc in docs:
        if not doc:
            continue
        lines.append(action_line("update", index, batch_id, doc_type, retry_on_conflict=3))
        lines.append({"doc": dict(doc)})
    return lines


def bulk_load_lines(index: str, batches: Sequence[CourseBatch], doc_type: str | None = None) -> list[dict[str, Any]]:
    """``load``: a partial update of the batch's fields, or the whole document when it is missing
    (``doc_as_upsert``); every other field of a live document is kept. Doc id = batch id, as the LMS indexes."""
    lines: list[dict[str, Any]] = []
    for b in batches:
        lines.append(action_line("update", index, b.batchid, doc_type))
        lines.append({"doc": batch_document(b), "doc_as_upsert": True})
    return lines


def document_path(index: str, batch_id: str) -> str:
    """One document: ``/{index}/_doc/{id}``, the typed path on 6.x (type ``_doc``) and the typeless endpoint on
    7.x and later. The id is one path segment."""
    return f"/{index}/{DOC_TYPE}/{quote(batch_id, safe='')}"


def index_body(mappings: Mapping[str, Any], settings: Mapping[str, Any], doc_type: str | None) -> dict[str, Any]:
    """``PUT /{index}``: on 6.x the mapping sits under its type, on 7.x and later it is typeless."""
    return {"settings": dict(settings), "mappings": {doc_type: dict(mappings)} if doc_type else dict(mappings)}


def batch_document(b: CourseBatch) -> dict[str, Any]:
    return {
        "id": b.batchid,
        "identifier": b.batchid,
        "batchId": b.batchid,
        "courseId": b.courseid,
        "name": b.name,
        "status": b.status,
        "createdBy": b.createdby,
        "mentors": list(b.mentors),
    }


def ndjson(lines: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines).encode()


@dataclass(frozen=True, slots=True)
class BatchHit:
    batch_id: str
    course_id: str
    created_by: str | None
    mentors: tuple[str, ...]
    sort: tuple[Any, ...]


def parse_hits(response: Mapping[str, Any]) -> list[BatchHit]:
    hits = response.get("hits", {}).get("hits", [])
    out: list[BatchHit] = []
    for hit in hits:
        src = hit.get("_source") or {}
        batch_id = src.get("batchId") or hit.get("_id")
        course_id = src.get("courseId")
        if not isinstance(batch_id, str) or not isinstance(course_id, str):
            log.warning("elasticsearch: course-batch document %s has no batchId/courseId; skipped", hit.get("_id"))
            continue
        mentors = src.get("mentors") or []
        out.append(
            BatchHit(
                batch_id,
                course_id,
                src.get("createdBy") if isinstance(src.get("createdBy"), str) else None,
                tuple(m for m in mentors if isinstance(m, str)) if isinstance(mentors, list) else (),
                tuple(hit.get("sort") or ()),
            )
        )
    return out


def bulk_failures(response: Mapping[str, Any]) -> list[str]:
    """Item errors of a bulk response; a document that no longer exists (404) is not a failure."""
    if not response.get("errors"):
        return []
    out = []
    for item in response.get("items", []):
        result: Mapping[str, Any] = next(iter(item.values()), {})
        status = result.get("status", 0)
        if status >= 300 and status != 404:
            out.append(f"{result.get('_id')}: {status} {json.dumps(result.get('error'))[:300]}")
        elif status == 404:
            log.warning("elasticsearch: course-batch document %s not found; not updated", result.get("_id"))
    return out


# --- the client -------------------------------------------------------------------------------------


def base_urls(base_path: str) -> list[str]:
    """``es.basePath`` as upstream writes it (``host:port``, maybe several, comma-separated) to URLs."""
    urls = []
    for part in base_path.split(","):
        part = part.strip().rstrip("/")
        if part:
            urls.append(part if "://" in part else f"http://{part}")
    if not urls:
        raise ValueError("es.basePath is empty")
    return urls


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, _HttpStatus) and (exc.status >= 500 or exc.status == 429)


class _HttpStatus(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:500]}")
        self.status = status


def check_refresh_mode(value: str) -> RefreshMode:
    """``es.refresh`` checked: ``before_search`` or ``wait_for``; ValueError otherwise."""
    for mode in REFRESH_MODES:
        if value == mode:
            return mode
    raise ValueError(f"es.refresh: expected one of {', '.join(REFRESH_MODES)}, got {value!r}")


class CourseBatchIndex:
    """The ``course-batch`` index of the servers in ``base_path`` (``es.basePath``).

    ``version``: the server's version (``es.version``) when ``GET /`` must not be asked; otherwise it is read
    from ``GET /`` at the first request that depends on it and kept. ``refresh``: how a write is made
    searchable for the next search (``es.refresh``, see the module doc). Every failure is a
    ``SunbirdStoreError``; transport errors, 429 and 5xx are retried ``attempts`` times, on the next node.
    """

    def __init__(
        self,
        base_path: str,
        index: str = "course-batch",
        timeout: float = 10.0,
        attempts: int = 3,
        max_wait: float = 2.0,
        client: httpx.Client | None = None,
        *,
        version: str | None = None,
        refresh: RefreshMode = "before_search",
    ) -> None:
        self.urls = base_urls(base_path)
        self.index = check_identifier(index, "index")
        self.attempts = attempts
        self.max_wait = max_wait
        self.refresh_mode = check_refresh_mode(refresh)
        self._version = parse_version(version) if version is not None else None
        self._version_lock = threading.Lock()
        self._client = client or httpx.Client(timeout=timeout)
        self.writes = 0  # bulk requests sent so far (a unit of work refreshes again before a search after one)

    def close(self) -> None:
        self._client.close()

    def server_version(self) -> ServerVersion:
        """The server's version: ``es.version``, or ``GET /`` once (a failure is not kept: the next call asks
        again). SunbirdStoreError when the server cannot be reached or its answer names no version handled."""
        if self._version is None:
            with self._version_lock:
                if self._version is None:
                    root = self._request("GET", "/", "reading the server version (GET /)")
                    try:
                        self._version = version_from_root(root)
                    except ValueError as exc:
                        raise SunbirdStoreError(
                            STORE,
                            f"reading the server version (GET /): {exc}; set es.version to the version the "
                            "server runs if GET / is not allowed",
                        ) from exc
                    log.info("elasticsearch: %s at %s", self._version, self.urls[0])
        return self._version

    def _request(
        self, method: str, path: str, doing: str, body: bytes | None = None, ndjson_body: bool = False,
        counted: bool = False,
    ) -> Any:
        """The answer's JSON. ``counted``: the first attempt's round trip was counted by the caller (requests sent
        concurrently)."""
        headers = {"Content-Type": "application/x-ndjson" if ndjson_body else "application/json"}
        writes = method != "GET" and not path.endswith(("/_search", "/_refresh"))  # a refresh is the search's
        kind = "write" if writes else "read"
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.1, max=self.max_wait),
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    # another node of es.basePath on each retry
                    url = self.urls[(attempt.retry_state.attempt_number - 1) % len(self.urls)] + path
                    if not counted or attempt.retry_state.attempt_number > 1:
                        metrics.store_call(STORE, kind)
                    response = self._client.request(method, url, content=body, headers=headers)
                    if response.status_code >= 400:
                        raise _HttpStatus(response.status_code, response.text)
                    return response.json() if response.content else {}
        except (httpx.HTTPError, _HttpStatus, ValueError) as exc:
            raise SunbirdStoreError(STORE, f"{doing}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def search_pages(
        self, user_id: str, statuses: Sequence[int], size: int, refresh: bool = True
    ) -> Iterator[list[BatchHit]]:
        """Every matching document, ``size`` at a time, in sort order. With ``es.refresh: before_search`` and
        ``refresh`` the index is refreshed first, so every write acknowledged before this call is found (the
        caller passes False when it refreshed since the last write it must find)."""
        after: Sequence[Any] | None = None
        size = max(1, min(size, 10_000))
        if refresh and self.refresh_mode == "before_search":
            self.refresh()
        while True:
            body = batches_of_user_query(user_id, statuses, size, after)
            response = self._request(
                "POST", f"/{self.index}/_search", f"searching {self.index}", json.dumps(body).encode()
            )
            hits = parse_hits(response)
            raw = response.get("hits", {}).get("hits", [])
            if hits:
                yield hits
            if len(raw) < size or not raw:
                return
            after = raw[-1].get("sort")
            if not after:
                raise SunbirdStoreError(STORE, f"searching {self.index}: hits carry no sort values")

    def first_pages(
        self, user_ids: Sequence[str], statuses: Sequence[int], size: int, refresh: bool = True
    ) -> dict[str, list[BatchHit]]:
        """The first page of ``search_pages`` of each user, the searches sent concurrently (one round trip, after
        the refresh ``search_pages`` makes); a user whose first page is full is left out (the caller pages it)."""
        size = max(1, min(size, 10_000))
        if refresh and self.refresh_mode == "before_search":
            self.refresh()

        def search(user_id: str) -> tuple[list[BatchHit], int]:
            body = json.dumps(batches_of_user_query(user_id, statuses, size)).encode()
            response = self._request("POST", f"/{self.index}/_search", f"searching {self.index}", body, counted=True)
            return parse_hits(response), len(response.get("hits", {}).get("hits", []))

        if not user_ids:
            return {}
        metrics.store_call(STORE, "read", len(user_ids))
        with ThreadPoolExecutor(min(len(user_ids), CONCURRENCY), thread_name_prefix="es-search") as pool:
            found = list(pool.map(search, user_ids))
        return {u: hits for u, (hits, raw) in zip(user_ids, found, strict=True) if raw < size}

    def update_fields(self, docs: Sequence[tuple[str, Mapping[str, Any]]], refresh: Refresh | None = None) -> None:
        """Partial updates of exactly the given fields of these batch documents. ``refresh`` of the bulk
        request: by default ``wait_for`` with ``es.refresh: wait_for``, none with ``before_search``."""
        lines = bulk_update_lines(self.index, docs, self.server_version().doc_type)
        if lines:
            self._bulk(lines, f"updating {self.index}", refresh or self.write_refresh)

    @property
    def write_refresh(self) -> Refresh:
        return "wait_for" if self.refresh_mode == "wait_for" else "false"

    def write(self, updates: Sequence[BatchUpdate], refresh: Refresh | None = None) -> None:
        self.update_fields([(u.batchid, partial_doc(u)) for u in updates], refresh)

    def index_batches(self, batches: Sequence[CourseBatch], refresh: Refresh = "wait_for") -> None:
        if batches:
            lines = bulk_load_lines(self.index, batches, self.server_version().doc_type)
            self._bulk(lines, f"loading {self.index}", refresh)

    def _bulk(self, lines: Sequence[Mapping[str, Any]], doing: str, refresh: Refresh) -> None:
        suffix = "" if refresh == "false" else f"?refresh={refresh}"
        self.writes += 1
        response = self._request("POST", f"/_bulk{suffix}", doing, ndjson(lines), ndjson_body=True)
        failures = bulk_failures(response)
        if failures:
            raise SunbirdStoreError(STORE, f"{doing}: {len(failures)} failed: " + "; ".join(failures[:5]))

    def refresh(self) -> None:
        """``POST /{index}/_refresh``: every change acknowledged so far becomes searchable. On a secured cluster
        this needs the ``maintenance`` (or ``manage``) index privilege; without it, use ``es.refresh: wait_for``."""
        self._request("POST", f"/{self.index}/_refresh", f"refreshing {self.index} (es.refresh: before_search)")

    def get_document(self, batch_id: str) -> dict[str, Any] | None:
        try:
            doc = self._request("GET", document_path(self.index, batch_id), f"reading {self.index}")
        except SunbirdStoreError as exc:
            if isinstance(exc.__cause__, _HttpStatus) and exc.__cause__.status == 404:
                return None
            raise
        source = doc.get("_source")
        return source if isinstance(source, dict) else None

    def create_index(self, mappings: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        """Create the index with the LMS mapping (typeless, as ``course-batch-mapping.json``) when missing."""
        try:
            self._request("GET", f"/{self.index}", f"reading {self.index}")
            return
        except SunbirdStoreError as exc:
            if not (isinstance(exc.__cause__, _HttpStatus) and exc.__cause__.status == 404):
                raise
        body = json.dumps(index_body(mappings, settings, self.server_version().doc_type)).encode()
        self._request("PUT", f"/{self.index}", f"creating {self.index}", body)

    def delete_index(self) -> None:
        try:
            self._request("DELETE", f"/{self.index}", f"deleting {self.index}")
        except SunbirdStoreError as exc:
            if not (isinstance(exc.__cause__, _HttpStatus) and exc.__cause__.status == 404):
                raise
