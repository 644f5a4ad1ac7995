"""userorg over HTTP: the user directory (private user read, with the user search as the fallback for
deleted users) and the admin email (``POST /v2/notification``).

What userorg answers (Sunbird-Lern/userorg-service): ``GET /private/user/v1/read/{id}`` is the v3 profile
read. For a user whose ``isDeleted`` is true it does not return the profile: it fails with HTTP 400,
``params.err = "UOS_USRRED0006"`` (``ResponseCode.userAccountlocked``, "User account has been blocked .");
an unknown id is a 404. Upstream therefore skipped every deleted from-user. Here that 400 is followed by
``POST /private/user/v1/search`` with the filter ``{"id": <id>}`` (the search does not exclude deleted
users), whose hit is read as a deleted user. Roles are the role names that apply to the user's root org:
``organisations[].roles`` of the entry whose ``organisationId`` is ``rootOrgId`` (read v3, search v1), or
``roles[]`` entries ``{"role", "scope": [{"organisationId"}]}`` whose scope names it (read v5, search v3).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from handover import metrics
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.domain.model import User
from handover.domain.notification import Notification

log = logging.getLogger(__name__)
T = TypeVar("T")
STORE = "userorg"
READ_BLOCKED_ERR = "UOS_USRRED0006"
READ_BLOCKED_MESSAGE = "User account has been blocked"
CONCURRENCY = 8  # user reads in flight at once (UserOrgClient.get_users)
DELETED_STATUS = 2  # userorg user status DELETED (1 active, 0 inactive)
SEARCH_FIELDS = (
    "id",
    "userName",
    "firstName",
    "lastName",
    "rootOrgId",
    "status",
    "isDeleted",
    "organisations",
    "roles",
)


@dataclass(frozen=True, slots=True)
class UserOrgEndpoints:
    base_url: str
    read_api: str = "/private/user/v1/read/"
    search_api: str = "/private/user/v1/search"
    notification_api: str = "/v2/notification"
    org_read_api: str = "/v1/org/read"  # userorg-service routes: POST /v1/org/read (OrgController.getOrgDetails)

    def _join(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.strip("/")

    def read_url(self, user_id: str) -> str:
        """The id is one path segment, percent-encoded (``/``, ``?``, ``..`` cannot change the request)."""
        segment = quote(user_id, safe="")
        if segment in (".", ".."):  # a dot segment would be removed from the path, so encode the dots too
            segment = segment.replace(".", "%2E")
        return self._join(self.read_api) + "/" + segment

    def search_url(self) -> str:
        return self._join(self.search_api)

    def notification_url(self) -> str:
        return self._join(self.notification_api)

    def org_read_url(self) -> str:
        return self._join(self.org_read_api)


def search_body(user_id: str) -> dict[str, Any]:
    return {"request": {"filters": {"id": user_id}, "fields": list(SEARCH_FIELDS), "limit": 1}}


def deleted_search_body(organisation_id: str | None, after: str, limit: int) -> dict[str, Any]:
    """The user search for a page of deleted users (``status`` 2) of one root organisation, in id order, after
    ``after``: userorg's search passes ``filters`` to Elasticsearch (a map value such as ``{">": id}`` is a range
    filter) and ``sort_by`` as a sort on the field's ``.raw`` keyword, so the pages are keyset pages (an offset
    would stop at the index's 10,000-hit window)."""
    filters: dict[str, Any] = {"status": DELETED_STATUS}
    if organisation_id is not None:
        filters["rootOrgId"] = organisation_id
    if after:
        filters["id"] = {">": after}
    return {"request": {"filters": filters, "fields": list(SEARCH_FIELDS), "sort_by": {"id": "asc"}, "limit": limit}}


def find_body(organisation_id: str, text: str, limit: int) -> dict[str, Any]:
    """The user search of the console's look-up: userorg's free-text ``query`` within one root organisation."""
    return {"request": {"query": text, "filters": {"rootOrgId": organisation_id}, "fields": list(SEARCH_FIELDS),
                        "limit": limit}}


def notification_payload(note: Notification) -> bytes:
    """The request body of SPEC 2.3, serialized by the JSON encoder (the HTML was escaped when built)."""
    return json.dumps(note.request_body(), ensure_ascii=False).encode("utf-8")


def scoped_roles(profile: Mapping[str, Any], root_org_id: str) -> tuple[str, ...]:
    found: dict[str, None] = {}
    roles = profile.get("roles")
    if isinstance(roles, list):
        for entry in roles:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("role"), str):
                continue
            scope = entry.get("scope")
            orgs = (
                {s.get("organisationId") for s in scope if isinstance(s, Mapping)} if isinstance(scope, list) else set()
            )
            if root_org_id in orgs:
                found.setdefault(entry["role"], None)
    orgs_list = profile.get("organisations")
    if isinstance(orgs_list, list):
        for org in orgs_list:
            if isinstance(org, Mapping) and org.get("organisationId") == root_org_id:
                for role in org.get("roles") or []:
                    if isinstance(role, str):
                        found.setdefault(role, None)
    return tuple(found)


def user_from_profile(profile: Mapping[str, Any], user_id: str, *, deleted: bool = False) -> User:
    """A userorg profile (read or search hit) as the directory's ``User``."""
    root = _text(profile.get("rootOrgId"))
    status = profile.get("status")
    return User(
        id=user_id,
        userName=_text(profile.get("userName")),
        firstName=_text(profile.get("firstName")),
        lastName=_text(profile.get("lastName")),
        rootOrgId=root,
        roles=scoped_roles(profile, root),
        isDeleted=deleted or profile.get("isDeleted") is True or status == DELETED_STATUS,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def is_blocked_answer(status: int, body: Any) -> bool:
    """userorg's answer to reading a deleted (``isDeleted``) user."""
    if status != 400 or not isinstance(body, Mapping):
        return False
    params = body.get("params")
    if not isinstance(params, Mapping):
        return False
    err, message = params.get("err"), params.get("errmsg")
    return (isinstance(err, str) and err.endswith("USRRED0006")) or (
        isinstance(message, str) and message.startswith(READ_BLOCKED_MESSAGE)
    )


class _Status(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


def _read_retryable(exc: BaseException) -> bool:
    """Reads are safe to repeat: any transport error, 5xx or 429."""
    return isinstance(exc, httpx.TransportError) or (
        isinstance(exc, _Status) and (exc.status >= 500 or exc.status == 429)
    )


def _post_retryable(exc: BaseException) -> bool:
    """An email must not go twice: only retry when the request cannot have been handled."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or (
        isinstance(exc, _Status) and exc.status == 503
    )


class _Blocked:
    """The read API's answer for a deleted user (``UOS_USRRED0006``)."""


_BLOCKED = _Blocked()


class UserOrgClient:
    def __init__(
        self,
        endpoints: UserOrgEndpoints,
        timeout: float = 10.0,
        attempts: int = 3,
        max_wait: float = 2.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.attempts = attempts
        self.max_wait = max_wait
        self._client = client or httpx.Client(timeout=timeout)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._client.close()

    def _call(
        self,
        method: str,
        url: str,
        doing: str,
        retryable: Any,
        body: bytes | None = None,
        ok: tuple[int, ...] = (),
        counted: bool = False,
    ) -> httpx.Response:
        """The response (2xx or a status in ``ok``); anything else, after retries, is a SunbirdStoreError.
        ``counted``: the first attempt's round trip was counted by the caller (requests sent concurrently)."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        kind = "write" if retryable is _post_retryable else "read"
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.1, max=self.max_wait),
                retry=retry_if_exception(retryable),
                reraise=True,
            ):
                with attempt:
                    if not counted or attempt.retry_state.attempt_number > 1:
                        metrics.store_call(STORE, kind)
                    response = self._client.request(method, url, content=body, headers=headers)
                    if response.status_code >= 300 and response.status_code not in ok:
                        raise _Status(response.status_code, response.text)
                    return response
        except (httpx.HTTPError, _Status) as exc:
            raise SunbirdStoreError(STORE, f"{doing}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(response: httpx.Response, doing: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise SunbirdStoreError(STORE, f"{doing}: the answer is not JSON ({response.text[:200]!r})") from exc

    def get_user(self, user_id: str) -> User | None:
        """The user, a deleted user (``isDeleted``), or None when userorg does not know the id."""
        found = self._read(user_id)
        return self._search_deleted(user_id) if isinstance(found, _Blocked) else found

    def get_users(self, user_ids: Sequence[str]) -> dict[str, User | None]:
        """``get_user`` of each id, the reads sent concurrently (one round trip), then the searches of the
        deleted ones concurrently (one more). The first failure is raised once every request has ended."""
        ids = list(dict.fromkeys(user_ids))
        if len(ids) <= 1:
            return {u: self.get_user(u) for u in ids}
        read = dict(zip(ids, self._concurrently(lambda u: self._read(u, counted=True), ids), strict=True))
        blocked = [u for u, found in read.items() if found is _BLOCKED]
        if blocked:
            searched = self._concurrently(lambda u: self._search_deleted(u, counted=True), blocked)
            read.update(zip(blocked, searched, strict=True))
        return {u: found for u, found in read.items() if found is not _BLOCKED}

    def _concurrently(self, read: Callable[[str], Any], ids: Sequence[str]) -> list[Any]:
        """``read`` of each id on the client's threads, counted as one round trip of ``len(ids)`` requests. The
        first failure is raised once every read has ended."""
        outcomes = self._on_threads(read, ids, "read")
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes

    def _on_threads(self, call: Callable[[T], Any], items: Sequence[T], kind: str) -> list[Any]:
        """``call`` of each item on the client's threads, counted as one round trip of ``len(items)`` requests:
        each one's result, or the exception it raised."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="userorg")
            pool = self._pool
        metrics.store_call(STORE, kind, len(items))
        futures = [pool.submit(call, item) for item in items]
        return [f.exception() or f.result() for f in futures]

    def _read(self, user_id: str, counted: bool = False) -> User | _Blocked | None:
        """The read API's answer: the user, None (unknown id) or ``_BLOCKED`` (deleted: the search has it)."""
        doing = f"reading user {user_id!r}"
        response = self._call(
            "GET", self.endpoints.read_url(user_id), doing, _read_retryable, ok=(400, 404), counted=counted
        )
        if response.status_code == 404:
            return None
        body = self._json(response, doing)
        if response.status_code == 400:
            if is_blocked_answer(400, body):
                return _BLOCKED
            raise SunbirdStoreError(STORE, f"{doing}: HTTP 400: {json.dumps(body)[:300]}")
        metrics.api_read_success.inc()  # Lern's api-read-success-count: a read answered 200
        profile = body.get("result", {}).get("response") if isinstance(body, Mapping) else None
        if not isinstance(profile, Mapping):
            raise SunbirdStoreError(STORE, f"{doing}: no result.response in the answer")
        return user_from_profile(profile, user_id)

    def _search_deleted(self, user_id: str, counted: bool = False) -> User:
        doing = f"searching deleted user {user_id!r}"
        payload = json.dumps(search_body(user_id)).encode()
        response = self._call("POST", self.endpoints.search_url(), doing, _read_retryable, payload, counted=counted)
        body = self._json(response, doing)
        result = body.get("result", {}).get("response", {}) if isinstance(body, Mapping) else {}
        content = result.get("content") if isinstance(result, Mapping) else None
        for hit in content or []:
            if isinstance(hit, Mapping) and hit.get("id") == user_id:
                return user_from_profile(hit, user_id, deleted=True)
        # read says the user exists but is deleted; the search index has not caught up: retry later
        raise SunbirdStoreError(STORE, f"{doing}: the read API reports it deleted, the search finds no such user")

    def deleted_users(self, organisation_id: str | None, after: str, limit: int) -> list[User]:
        """A page of deleted users of ``organisation_id`` (None: any) with ids after ``after``, in id order
        (``deleted_search_body``). A full page of hits out of that order or range means the search ignored the
        filter or the sort: a SunbirdStoreError rather than a report that silently misses users."""
        doing = f"searching the deleted users of {organisation_id or 'every organisation'!r}"
        hits = self._search(deleted_search_body(organisation_id, after, limit), doing)
        found = [user_from_profile(h, h["id"]) for h in hits]
        kept = [u for u in found if u.id > after and u.isDeleted and organisation_id in (None, u.rootOrgId)]
        if [u.id for u in kept] != sorted(u.id for u in kept) or (len(hits) >= limit and len(kept) < len(hits)):
            raise SunbirdStoreError(STORE, f"{doing}: the search answered users out of id order or range")
        return kept

    def find_users(self, organisation_id: str, text: str, limit: int) -> list[User]:
        """``POST {base}/private/user/v1/search`` with the free-text ``query`` and the filter ``rootOrgId``: up to
        ``limit`` users of the organisation (deleted ones too, marked ``isDeleted``). ``SunbirdStoreError`` when
        userorg fails."""
        hits = self._search(find_body(organisation_id, text, limit), f"searching users of {organisation_id!r}")
        users = [user_from_profile(h, h["id"]) for h in hits]
        return [u for u in users if u.rootOrgId == organisation_id][:limit]

    def _search(self, request: Mapping[str, Any], doing: str) -> list[Mapping[str, Any]]:
        """The user search's hits (``result.response.content``) that have a text ``id``."""
        response = self._call("POST", self.endpoints.search_url(), doing, _read_retryable, json.dumps(request).encode())
        body = self._json(response, doing)
        result = body.get("result", {}).get("response", {}) if isinstance(body, Mapping) else {}
        content = result.get("content") if isinstance(result, Mapping) else None
        return [h for h in content or [] if isinstance(h, Mapping) and isinstance(h.get("id"), str)]

    def organisation_exists(self, organisation_id: str) -> bool:
        """``POST {base}/v1/org/read`` with ``{"request": {"organisationId": id}}``: True on 200 with an
        organisation in ``result.response``, False on 404 (userorg's resource-not-found) or an empty response.
        Anything else, after retries, is a SunbirdStoreError (the caller answers 503, never a guess)."""
        doing = f"reading organisation {organisation_id!r}"
        payload = json.dumps({"request": {"organisationId": organisation_id}}).encode()
        response = self._call("POST", self.endpoints.org_read_url(), doing, _read_retryable, payload, ok=(404,))
        if response.status_code == 404:
            return False
        body = self._json(response, doing)
        org = body.get("result", {}).get("response") if isinstance(body, Mapping) else None
        return isinstance(org, Mapping) and bool(org)

    def send_notifications(self, notes: Sequence[Notification]) -> list[BaseException | None]:
        """``send_notification`` of each note, the POSTs sent concurrently (one round trip): for each, None when
        it was sent, else the SunbirdStoreError it failed with."""
        if len(notes) <= 1:
            out: list[BaseException | None] = []
            for note in notes:
                try:
                    self.send_notification(note)
                    out.append(None)
                except SunbirdStoreError as exc:
                    out.append(exc)
            return out
        outcomes = self._on_threads(lambda note: self.send_notification(note, counted=True), notes, "write")
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, SunbirdStoreError):
                raise outcome
        return [o if isinstance(o, BaseException) else None for o in outcomes]

    def send_notification(self, note: Notification, counted: bool = False) -> None:
        doing = f"sending the notification of {note.mid}"
        self._call(
            "POST", self.endpoints.notification_url(), doing, _post_retryable, notification_payload(note),
            counted=counted,
        )
        log.info("userorg: notification of %s sent to %d admins", note.mid, len(note.recipient_user_ids))
