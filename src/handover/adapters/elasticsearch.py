"""Elasticsearch index ``course-batch`` over its REST API (httpx): find a user's batches, page through every
hit with ``search_after``, and partially update exactly ``createdBy`` / ``mentors`` with the bulk API.

The request bodies are built by pure functions (tested to the byte); values go into JSON documents built by a
serializer, never into query strings. The REST API is used directly (no client library) so that the same code
talks to the Elasticsearch 6.8/7.x that Sunbird deployments run and to newer servers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from handover.adapters.sunbird_errors import SunbirdStoreError, check_identifier
from handover.domain.model import CourseBatch
from handover.domain.rules import BatchUpdate

log = logging.getLogger(__name__)
STORE = "elasticsearch"
SOURCE_FIELDS = ("batchId", "courseId", "createdBy", "mentors", "status")
# search_after needs a total order: the document id is the batch id, and courseId breaks any tie that
# lower-casing could create.
SORT = ({"batchId.raw": "asc"}, {"courseId.raw": "asc"})


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


def bulk_update_lines(index: str, docs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Action and partial document for each (batch id, fields) pair."""
    lines: list[dict[str, Any]] = []
    for batch_id, doc in docs:
        if not doc:
            continue
        lines.append({"update": {"_index": index, "_id": batch_id, "retry_on_conflict": 3}})
        lines.append({"doc": dict(doc)})
    return lines


def bulk_index_lines(index: str, batches: Sequence[CourseBatch]) -> list[dict[str, Any]]:
    """Whole documents for ``load``, shaped as the LMS indexes a batch (doc id = batch id)."""
    lines: list[dict[str, Any]] = []
    for b in batches:
        lines.append({"index": {"_index": index, "_id": b.batchid}})
        lines.append(batch_document(b))
    return lines


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


class CourseBatchIndex:
    def __init__(
        self,
        base_path: str,
        index: str = "course-batch",
        timeout: float = 10.0,
        attempts: int = 3,
        max_wait: float = 2.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.urls = base_urls(base_path)
        self.index = check_identifier(index, "index")
        self.attempts = attempts
        self.max_wait = max_wait
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, doing: str, body: bytes | None = None, ndjson_body: bool = False) -> Any:
        headers = {"Content-Type": "application/x-ndjson" if ndjson_body else "application/json"}
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
                    response = self._client.request(method, url, content=body, headers=headers)
                    if response.status_code >= 400:
                        raise _HttpStatus(response.status_code, response.text)
                    return response.json() if response.content else {}
        except (httpx.HTTPError, _HttpStatus, ValueError) as exc:
            raise SunbirdStoreError(STORE, f"{doing}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def search_pages(self, user_id: str, statuses: Sequence[int], size: int) -> Iterator[list[BatchHit]]:
        """Every matching document, ``size`` at a time, in sort order."""
        after: Sequence[Any] | None = None
        size = max(1, min(size, 10_000))
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

    def update_fields(self, docs: Sequence[tuple[str, Mapping[str, Any]]], refresh: bool = False) -> None:
        """Partial updates of exactly the given fields of these batch documents."""
        lines = bulk_update_lines(self.index, docs)
        if lines:
            self._bulk(lines, f"updating {self.index}", refresh)

    def write(self, updates: Sequence[BatchUpdate], refresh: bool = False) -> None:
        self.update_fields([(u.batchid, partial_doc(u)) for u in updates], refresh)

    def index_batches(self, batches: Sequence[CourseBatch], refresh: bool = True) -> None:
        if batches:
            self._bulk(bulk_index_lines(self.index, batches), f"loading {self.index}", refresh)

    def _bulk(self, lines: Sequence[Mapping[str, Any]], doing: str, refresh: bool) -> None:
        suffix = "?refresh=wait_for" if refresh else ""
        response = self._request("POST", f"/_bulk{suffix}", doing, ndjson(lines), ndjson_body=True)
        failures = bulk_failures(response)
        if failures:
            raise SunbirdStoreError(STORE, f"{doing}: {len(failures)} failed: " + "; ".join(failures[:5]))

    def get_document(self, batch_id: str) -> dict[str, Any] | None:
        try:
            doc = self._request("GET", f"/{self.index}/_doc/{quote(batch_id, safe='')}", f"reading {self.index}")
        except SunbirdStoreError as exc:
            if isinstance(exc.__cause__, _HttpStatus) and exc.__cause__.status == 404:
                return None
            raise
        source = doc.get("_source")
        return source if isinstance(source, dict) else None

    def create_index(self, mappings: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
        """Create the index with the LMS mapping when missing (test deployments)."""
        try:
            self._request("GET", f"/{self.index}", f"reading {self.index}")
            return
        except SunbirdStoreError as exc:
            if not (isinstance(exc.__cause__, _HttpStatus) and exc.__cause__.status == 404):
                raise
        body = json.dumps({"settings": settings, "mappings": mappings}).encode()
        self._request("PUT", f"/{self.index}", f"creating {self.index}", body)

    def delete_index(self) -> None:
        try:
            self._request("DELETE", f"/{self.index}", f"deleting {self.index}")
        except SunbirdStoreError as exc:
            if not (isinstance(exc.__cause__, _HttpStatus) and exc.__cause__.status == 404):
                raise
