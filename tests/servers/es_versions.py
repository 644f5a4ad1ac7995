"""A stand-in HTTP server that answers as Elasticsearch 6.8.22 or 7.17.13 does where the two differ from 8.x in the
requests handover makes, and forwards the rest to the noida-db emulator (an Elasticsearch 8 API).

Written from Elastic's documentation and the answers those versions give (not from their code):

- ``GET /``: the root answer of that version (``version.number`` etc.).
- ``POST /_bulk``: 6.x needs a type in every action line; without one it refuses the whole request with 400
  ``action_request_validation_exception`` "Validation Failed: 1: type is missing;" (one numbered reason per
  action). Here the type must be ``_doc`` (the one type of a Sunbird index; a second type would be refused by
  6.x per item). 7.x accepts ``_type`` with a deprecation ``Warning`` header, and typeless lines. The type is
  dropped before the request goes to noida, which refuses ``_type`` as 8.x does. Item answers get ``_type``
  back on 6.x.
- ``PUT /{index}``: 6.x needs the mapping under a type (``{"mappings": {"_doc": {...}}}``), a typeless mapping
  is 400 ``mapper_parsing_exception`` "Root mapping definition has unsupported parameters"; 7.x refuses a
  typed mapping (400 ``illegal_argument_exception``: "The mapping definition cannot be nested under a type
  [_doc] unless include_type_name is set to true.").
- ``_search`` and ``GET /{index}/_doc/{id}`` answers: 6.x gives ``hits.total`` as a number and ``_type`` on
  every hit and document.

Every request is recorded (method, path, query, body) so that tests can check what handover sent. Behaviours
for the error paths: ``root`` replaces the ``GET /`` answer (status, body bytes).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.servers.process import http_server

ROOTS = {
    "6.8.22": {"lucene_version": "7.7.3", "minimum_wire_compatibility_version": "5.6.0",
               "minimum_index_compatibility_version": "5.0.0", "build_date": "2021-12-13T16:27:16.577219Z"},
    "7.17.13": {"lucene_version": "8.11.1", "minimum_wire_compatibility_version": "6.8.0",
                "minimum_index_compatibility_version": "6.0.0-beta1", "build_date": "2023-08-31T12:39:12.591416Z"},
}
DOC_TYPE = "_doc"
TYPES_DEPRECATED = "[types removal] Specifying types in bulk requests is deprecated."


def root_answer(number: str) -> dict[str, Any]:
    extra = ROOTS.get(number, {"lucene_version": "", "minimum_wire_compatibility_version": "",
                               "minimum_index_compatibility_version": "", "build_date": ""})
    return {
        "name": "es-node-1",
        "cluster_name": "sunbird-es",
        "cluster_uuid": "x6pZgkXkTtKDJ2BbKpmZVg",
        "version": {"number": number, "build_flavor": "default", "build_type": "docker",
                    "build_hash": "standin", "build_snapshot": False, **extra},
        "tagline": "You Know, for Search",
    }


def _error(kind: str, reason: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
                    "status": status}


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    body: bytes

    def ndjson(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class VersionedElasticsearch:
    """Answers as Elasticsearch ``number`` (6.x or 7.x); ``upstream`` is the noida-db URL. With ``number`` None it
    only records and forwards every request (noida itself answers, as 8.x)."""

    number: str | None
    upstream: str
    requests: list[Recorded] = field(default_factory=list)
    root: tuple[int, bytes] | None = None  # replaces the GET / answer
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def major(self) -> int:
        return int(self.number.split(".")[0]) if self.number else 8

    def bulk_actions(self) -> list[dict[str, Any]]:
        """Every action line of every ``_bulk`` request received (documents left out)."""
        out = []
        for request in self.requests:
            if request.path == "/_bulk":
                lines = request.ndjson()
                out += [line for line in lines if next(iter(line)) in ("index", "update", "create", "delete")
                        and isinstance(next(iter(line.values())), dict) and "_id" in next(iter(line.values()))]
        return out

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path == path)

    # --- answering -----------------------------------------------------------------------------------------
    def answer(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        with self._lock:
            self.requests.append(Recorded(method, parts.path, parts.query, body))
        if method == "GET" and parts.path == "/" and self.root is not None:
            return self.root[0], {"Content-Type": "application/json"}, self.root[1]
        if self.number is None:
            return self._forward(method, target, body, "application/x-ndjson" if parts.path == "/_bulk" else None)
        if method == "GET" and parts.path == "/":
            return self._json(200, root_answer(self.number))
        if method == "POST" and parts.path == "/_bulk":
            return self._bulk(parts.query, body)
        segments = [s for s in parts.path.split("/") if s]
        if method == "PUT" and len(segments) == 1:
            return self._create_index(target, body)
        status, headers, content = self._forward(method, target, body)
        if self.major == 6 and status < 300 and content:
            doc = json.loads(content)
            if len(segments) >= 2 and segments[1] == "_search":
                hits = doc.get("hits", {})
                if isinstance(hits.get("total"), dict):
                    hits["total"] = hits["total"]["value"]
                for hit in hits.get("hits", []):
                    hit["_type"] = DOC_TYPE
            elif len(segments) == 3 and segments[1] == DOC_TYPE:
                doc["_type"] = DOC_TYPE
            content = json.dumps(doc).encode()
        return status, headers, content

    def _bulk(self, query: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        missing: list[int] = []
        out: list[dict[str, Any]] = []
        warn, index, number = False, 0, 0
        while index < len(lines):
            action = lines[index]
            name = next(iter(action))
            meta = dict(action[name])
            number += 1
            doc_type = meta.pop("_type", None)
            if doc_type is None and self.major == 6:
                missing.append(number)
            elif doc_type is not None and doc_type != DOC_TYPE:
                return self._json(*_error("illegal_argument_exception", f"stand-in: only type {DOC_TYPE} exists"))
            warn = warn or doc_type is not None
            out.append({name: meta})
            if name != "delete":
                index += 1
                out.append(lines[index])
            index += 1
        if missing:
            reason = "Validation Failed: " + "".join(f"{n}: type is missing;" for n in missing)
            status, doc = _error("action_request_validation_exception", reason)
            doc["error"]["root_cause"][0]["reason"] = f"Validation Failed: {missing[0]}: type is missing;"
            return self._json(status, doc)
        content = "".join(json.dumps(line) + "\n" for line in out).encode()
        target = "/_bulk" + (f"?{query}" if query else "")
        status, headers, answer = self._forward("POST", target, content, "application/x-ndjson")
        if self.major == 6 and status < 300:
            doc = json.loads(answer)
            for item in doc.get("items", []):
                next(iter(item.values()))["_type"] = DOC_TYPE
            answer = json.dumps(doc).encode()
        if warn and self.major == 7:
            headers["Warning"] = f'299 Elasticsearch-{self.number} "{TYPES_DEPRECATED}"'
        return status, headers, answer

    def _create_index(self, target: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        doc = json.loads(body) if body else {}
        mappings = doc.get("mappings")
        if isinstance(mappings, dict) and mappings:
            typed = len(mappings) == 1 and isinstance(mappings.get(DOC_TYPE), dict)
            if self.major == 6 and not typed:
                names = ", ".join(sorted(mappings))
                return self._json(*_error("mapper_parsing_exception",
                                          f"Root mapping definition has unsupported parameters:  [{names}]"))
            if self.major == 7 and typed:
                return self._json(*_error(
                    "illegal_argument_exception",
                    "The mapping definition cannot be nested under a type [_doc] unless include_type_name is set "
                    "to true."))
            if typed:
                doc["mappings"] = mappings[DOC_TYPE]
        return self._forward("PUT", target, json.dumps(doc).encode())

    def _forward(self, method: str, target: str, body: bytes,
                 content_type: str | None = None) -> tuple[int, dict[str, str], bytes]:
        response = httpx.request(method, self.upstream + target, content=body or None,
                                 headers={"Content-Type": content_type or "application/json"}, timeout=60)
        return response.status_code, {"Content-Type": "application/json"}, response.content

    @staticmethod
    def _json(status: int, doc: Any) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


@contextmanager
def serve(standin: VersionedElasticsearch) -> Iterator[str]:
    """Serve ``standin`` on a free loopback port; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, headers, content = standin.answer(self.command, self.path, body)
            except Exception as exc:  # a fault of the stand-in itself: say so
                status, headers, content = 500, {"Content-Type": "text/plain"}, f"stand-in: {exc!r}".encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with http_server(Handler) as base:
        yield base
