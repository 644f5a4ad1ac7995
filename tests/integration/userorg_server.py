"""A small HTTP server that answers as Sunbird userorg does, for the userorg adapter's tests.

Answers follow Sunbird-Lern/userorg-service: the private read (v3 profile: ``organisations[].roles``), HTTP 400
``UOS_USRRED0006`` "User account has been blocked ." for a user whose ``isDeleted`` is true, 404 for an unknown
id; the private user search (v1 shape) finds deleted users too, by id or (``query``) by free text within a root
organisation; ``POST /v2/notification`` accepts an email.
A user id can also be given a behaviour: ``error`` (500 every time), ``flaky`` (500 once, then the profile),
``slow`` (answers after ``slow_seconds``), ``garbage`` (200 with a body that is not JSON).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from handover.domain.model import User
from tests.servers.process import http_server

READ_PREFIX = "/userorg/private/user/v1/read/"
SEARCH_PATH = "/userorg/private/user/v1/search"
NOTIFICATION_PATH = "/userorg/v2/notification"
ORG_READ_PATH = "/userorg/v1/org/read"


def profile(user: User) -> dict[str, Any]:
    """A user as userorg stores it: roles on the root-org membership; deleted users have status 2."""
    return {
        "id": user.id,
        "identifier": user.id,
        "userId": user.id,
        "userName": user.userName,
        "firstName": user.firstName,
        "lastName": user.lastName or None,
        "rootOrgId": user.rootOrgId,
        "channel": "channel-" + user.rootOrgId,
        "status": 2 if user.isDeleted else 1,
        "isDeleted": user.isDeleted,
        "organisations": [
            {"organisationId": user.rootOrgId, "roles": list(user.roles), "isDeleted": False, "userId": user.id}
        ],
    }


def envelope(
    api: str, status: int, result: Any = None, err: str | None = None, errmsg: str | None = None
) -> dict[str, Any]:
    code = "OK" if status < 300 else "CLIENT_ERROR" if status < 500 else "SERVER_ERROR"
    if status == 404:
        code = "RESOURCE_NOT_FOUND"
    return {
        "id": api,
        "ver": "v1",
        "ts": "2024-04-10 12:00:00:000+0000",
        "params": {
            "resmsgid": "r-1",
            "msgid": None,
            "err": err,
            "status": "SUCCESS" if status < 300 else "FAILED",
            "errmsg": errmsg,
        },
        "responseCode": code,
        "result": result if result is not None else {},
    }


@dataclass
class FakeUserOrg:
    users: dict[str, User] = field(default_factory=dict)
    behaviours: dict[str, str] = field(default_factory=dict)
    organisations: set[str] = field(default_factory=set)  # beyond the users' root organisations
    org_read_status: int | None = None  # answer the organisation read with this status instead
    search_misses: set[str] = field(default_factory=set)  # deleted users the search index has not caught up on
    notification_status: int = 200
    slow_seconds: float = 1.0
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, raw path, JSON body or None)
    notifications: list[Any] = field(default_factory=list)
    _served: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *users: User) -> None:
        for user in users:
            self.users[user.id] = user

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and path_part in p)

    def answer(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append((method, path, body))
        if method == "GET" and path.startswith(READ_PREFIX):
            return self._read(unquote(path[len(READ_PREFIX) :]))
        if method == "POST" and path == SEARCH_PATH:
            return self._search(body)
        if method == "POST" and path == ORG_READ_PATH:
            return self._org_read(body)
        if method == "POST" and path == NOTIFICATION_PATH:
            self.notifications.append(body)
            status = self.notification_status
            return status, _json(
                envelope("api.notification", status, {"response": "SUCCESS"} if status < 300 else None)
            )
        return 404, _json(envelope("api.unknown", 404, err="UOS_RESOURCE_NOT_FOUND"))

    def _read(self, user_id: str) -> tuple[int, bytes]:
        behaviour = self.behaviours.get(user_id)
        with self._lock:
            served = self._served[user_id] = self._served.get(user_id, 0) + 1
        if behaviour == "error" or (behaviour == "flaky" and served == 1):
            return 500, _json(envelope("api.user.read", 500, err="UOS_USRRED0072", errmsg="server error"))
        if behaviour == "slow":
            time.sleep(self.slow_seconds)
        if behaviour == "garbage":
            return 200, b"<html>gateway</html>"
        user = self.users.get(user_id)
        if user is None:
            return 404, _json(
                envelope("api.user.read", 404, err="UOS_USRRED0014", errmsg="Requested user resource not found")
            )
        if user.isDeleted:
            return 400, _json(
                envelope("api.user.read", 400, err="UOS_USRRED0006", errmsg="User account has been blocked .")
            )
        return 200, _json(envelope("api.user.read", 200, {"response": profile(user)}))

    def _org_read(self, body: Any) -> tuple[int, bytes]:
        """An organisation exists when it is some user's root organisation (or was added to ``organisations``);
        an unknown one is userorg's 404 resource-not-found."""
        if self.org_read_status is not None:
            return self.org_read_status, _json(envelope("api.org.read", self.org_read_status, err="UOS_ORGRED0001"))
        request = body.get("request") if isinstance(body, dict) else None
        org_id = request.get("organisationId") if isinstance(request, dict) else None
        if not isinstance(org_id, str) or not org_id.strip():
            return 400, _json(envelope("api.org.read", 400, err="UOS_ORGRED0006", errmsg="organisationId is required"))
        known = self.organisations | {u.rootOrgId for u in self.users.values()}
        if org_id not in known:
            return 404, _json(envelope("api.org.read", 404, err="UOS_ORGRED0041", errmsg="Organisation not found"))
        org = {"id": org_id, "identifier": org_id, "organisationId": org_id, "orgName": f"Org {org_id}",
               "isRootOrg": True, "status": 1}
        return 200, _json(envelope("api.org.read", 200, {"response": org}))

    def _search(self, body: Any) -> tuple[int, bytes]:
        """Filters as userorg hands them to Elasticsearch: a plain value is a term, a map a range (``>``,
        ``>=``, ``<``, ``<=``), a list any of its values; ``sort_by`` ``{"field": "asc"|"desc"}``; ``limit``
        (default 100 here). A free-text ``query`` matches ids and names within the ``rootOrgId`` filter."""
        request = body.get("request", {}) if isinstance(body, dict) else {}
        filters = request.get("filters", {})
        if isinstance(request.get("query"), str):  # free text within a root organisation (id and names)
            text, org = request["query"].lower(), filters.get("rootOrgId")
            found = [u for u in self.users.values() if u.rootOrgId == org and any(
                text in v.lower() for v in (u.id, u.userName, u.firstName, u.lastName, f"{u.firstName} {u.lastName}"))]
            hits = [profile(u) for u in sorted(found, key=lambda u: u.id)][: int(request.get("limit") or 10)]
            return 200, _json(envelope("api.user.search", 200, {"response": {"count": len(hits), "content": hits}}))
        hits = [profile(u) for uid, u in self.users.items() if uid not in self.search_misses]
        hits = [h for h in hits if all(_matches(h.get(k), v) for k, v in filters.items())]
        for key, order in (request.get("sort_by") or {}).items():
            hits.sort(key=lambda h, k=key: str(h.get(k)), reverse=str(order).lower() == "desc")
        count = len(hits)
        hits = hits[: int(request.get("limit") or 100)]
        for hit in hits:  # the v1 search keeps roles only on the organisations
            hit["roles"] = []
        return 200, _json(envelope("api.user.search", 200, {"response": {"count": count, "content": hits}}))


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        tests = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
        return value is not None and all(tests[op](value, bound) for op, bound in wanted.items())
    if isinstance(wanted, list):
        return value in wanted
    return bool(value == wanted)


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@contextmanager
def serve(fake: FakeUserOrg) -> Iterator[str]:
    """Run ``fake`` on 127.0.0.1 (a free port); yields the base URL (``userorg_service_base_url``)."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            status, payload = fake.answer(method, self.path, body)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with http_server(Handler) as base:
        yield f"{base}/userorg"
