"""Parsing and static validation of Sunbird ``BE_JOB_REQUEST`` events (SPEC 2.1, rules 1-6).

``parse_event`` never raises: any input (bytes, text, a decoded JSON value) becomes either an
``OwnershipTransfer``, a ``DeleteUser`` or a ``Rejection`` with a stable ``Reason``. The rules that need the
user directory (7-10) and the duplicate check (11) live in ``rules`` and the engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from handover.domain.text import MAX_ID_LENGTH, first_bad_string, id_problem, is_storable_id, text_problem

MAX_EVENT_BYTES = 1_000_000
MAX_DEPTH = 64

OWNERSHIP_TRANSFER = "ownership-transfer"
DELETE_USER = "delete-user"


class Reason(StrEnum):
    """Why an event was rejected, or why part of an applied event was skipped. Values are stable."""

    MALFORMED_EVENT = "MALFORMED_EVENT"
    MISSING_FIELD = "MISSING_FIELD"
    UNSUPPORTED_ACTION = "UNSUPPORTED_ACTION"
    INVALID_OBJECT_TYPE = "INVALID_OBJECT_TYPE"
    SAME_USER = "SAME_USER"
    UNKNOWN_USER = "UNKNOWN_USER"
    USER_DELETED = "USER_DELETED"
    ORG_MISMATCH = "ORG_MISMATCH"
    INVALID_FIELD = "INVALID_FIELD"  # a string no store can keep (NUL, lone surrogate) or an id over its limit
    USER_NOT_DELETED = "USER_NOT_DELETED"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    # skip reasons (the event is still applied)
    ROLE_NOT_ALLOWED = "ROLE_NOT_ALLOWED"
    ASSET_NOT_FOUND = "ASSET_NOT_FOUND"
    ASSET_TYPE_NOT_CONFIGURED = "ASSET_TYPE_NOT_CONFIGURED"
    ASSET_NOT_OWNED = "ASSET_NOT_OWNED"


@dataclass(frozen=True, slots=True)
class AssetInformation:
    identifier: str
    objectType: str | None = None
    primaryCategory: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class OwnershipTransfer:
    mid: str
    organisation_id: str
    from_user_id: str
    to_user_id: str
    asset: AssetInformation | None  # None: transfer everything
    request_id: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    action = OWNERSHIP_TRANSFER

    @property
    def subject_user_id(self) -> str:
        """The user the event is about (the Kafka key)."""
        return self.from_user_id


@dataclass(frozen=True, slots=True)
class DeleteUser:
    mid: str
    user_id: str
    organisation_id: str | None
    admin_ids: tuple[str, ...]
    request_id: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    action = DELETE_USER

    @property
    def subject_user_id(self) -> str:
        return self.user_id


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    mid: str | None = None
    raw: Any = field(default=None, repr=False, compare=False)


Event = OwnershipTransfer | DeleteUser
ParseResult = OwnershipTransfer | DeleteUser | Rejection


def decode(data: bytes | str) -> Any | Rejection:
    """Decode JSON text; a ``Rejection`` for anything that is not JSON of a sane size and depth."""
    decoded = _decode(data)
    return decoded if isinstance(decoded, Rejection) else decoded[0]


def _decode(data: bytes | str) -> tuple[Any, bool] | Rejection:
    """``decode``, and whether every string of the value is known to be storable (``text.text_problem``) from the
    text alone: JSON text without a ``\\u`` escape and without a NUL or lone surrogate itself decodes to keys and
    strings made of its own characters (``json.loads`` refuses control characters inside strings; the other escapes
    give neither), so they need no check one by one."""
    if len(data) > MAX_EVENT_BYTES:
        return Rejection(Reason.MALFORMED_EVENT, f"event larger than {MAX_EVENT_BYTES} bytes")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        return Rejection(Reason.MALFORMED_EVENT, "event is not UTF-8")
    if text.count("[") + text.count("{") > MAX_DEPTH and _nesting_exceeds(text, MAX_DEPTH):
        return Rejection(Reason.MALFORMED_EVENT, f"event nested deeper than {MAX_DEPTH} levels")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return Rejection(Reason.MALFORMED_EVENT, "event is not valid JSON")
    return doc, "\\u" not in text and text_problem(text) is None


def parse_event(data: bytes | str | Mapping[str, Any] | Any) -> ParseResult:
    """Parse and statically validate one event (SPEC 2.1 rules 1-6). Never raises."""
    storable = False  # every string known to pass ``text.text_problem`` (JSON text without escapes of them)
    if isinstance(data, bytes | str):
        decoded = _decode(data)
        if isinstance(decoded, Rejection):
            return decoded
        doc, storable = decoded
    else:
        doc = data
    if not isinstance(doc, dict) or doc.get("eid") != "BE_JOB_REQUEST" or not isinstance(doc.get("edata"), dict):
        return Rejection(Reason.MALFORMED_EVENT, "not a BE_JOB_REQUEST object with an edata object", raw=doc)
    mid = doc.get("mid")
    if not _nonblank(mid):
        return Rejection(Reason.MISSING_FIELD, "mid is missing or blank", raw=doc)
    assert isinstance(mid, str)
    problem = id_problem(mid)
    if problem is not None:  # no ledger row can be keyed by this mid
        return Rejection(Reason.INVALID_FIELD, f"mid {problem}", raw=doc)
    bad = None if storable else first_bad_string(doc)
    if bad is not None:
        return Rejection(Reason.INVALID_FIELD, f"{bad[0]} contains {bad[1]}", mid, doc)
    edata: dict[str, Any] = doc["edata"]
    action = edata.get("action")
    if action not in (OWNERSHIP_TRANSFER, DELETE_USER):
        return Rejection(Reason.UNSUPPORTED_ACTION, f"unsupported action {_show(action)}", mid, doc)
    obj = doc.get("object")
    obj_type = obj.get("type") if isinstance(obj, dict) else None
    if not isinstance(obj_type, str) or obj_type.lower() != "user":
        return Rejection(Reason.INVALID_OBJECT_TYPE, f"object.type {_show(obj_type)} is not user", mid, doc)
    request_id = _request_id(doc)
    if action == DELETE_USER:
        user_id = edata.get("userId")
        if not _nonblank(user_id):
            return Rejection(Reason.MISSING_FIELD, "edata.userId is missing or blank", mid, doc)
        assert isinstance(user_id, str)
        org = edata.get("organisationId")
        too_long = _long_id(("context.cdata.id", request_id), ("edata.userId", user_id),
                            ("edata.organisationId", org if isinstance(org, str) else None),
                            *(("a user of edata.suggested_users", a) for a in _admins(edata.get("suggested_users"))))
        if too_long is not None:
            return Rejection(Reason.INVALID_FIELD, too_long, mid, doc)
        return DeleteUser(
            mid=mid,
            user_id=user_id,
            organisation_id=org if isinstance(org, str) else None,
            admin_ids=_admins(edata.get("suggested_users")),
            request_id=request_id,
            raw=doc,
        )
    org = edata.get("organisationId")
    from_id = _get_path(edata, "fromUserProfile", "userId")
    to_id = _get_path(edata, "toUserProfile", "userId")
    for value, name in ((org, "organisationId"), (from_id, "fromUserProfile.userId"), (to_id, "toUserProfile.userId")):
        if not _nonblank(value):
            return Rejection(Reason.MISSING_FIELD, f"edata.{name} is missing or blank", mid, doc)
    assert isinstance(org, str) and isinstance(from_id, str) and isinstance(to_id, str)
    asset_information = edata.get("assetInformation")
    if asset_information not in (None, {}) and _asset_information(asset_information) is None:
        # upstream userorg can produce {"objectType": ..., "name": ...} without an identifier: it names one asset,
        # so it must never widen to "everything" (upstream inQuiry moved nothing)
        return Rejection(
            Reason.MISSING_FIELD,
            "edata.assetInformation names an asset but has no non-blank identifier (an empty object means everything)",
            mid,
            doc,
        )
    asset = _asset_information(asset_information)
    too_long = _long_id(("context.cdata.id", request_id), ("edata.organisationId", org),
                        ("edata.fromUserProfile.userId", from_id), ("edata.toUserProfile.userId", to_id),
                        ("edata.assetInformation.identifier", asset.identifier if asset is not None else None))
    if too_long is not None:
        return Rejection(Reason.INVALID_FIELD, too_long, mid, doc)
    if from_id == to_id:
        return Rejection(Reason.SAME_USER, "from-user and to-user are the same", mid, doc)
    return OwnershipTransfer(
        mid=mid,
        organisation_id=org,
        from_user_id=from_id,
        to_user_id=to_id,
        asset=asset,
        request_id=request_id,
        raw=doc,
    )


def routing(doc: Any) -> tuple[str | None, str | None]:
    """``(edata.action, the user the event is about)`` of a decoded event, for choosing its topic and key:
    the from-user of a transfer, the user of a delete-user. Each is None when absent or blank. Never raises."""
    action = _get_path(doc, "edata", "action")
    if not _nonblank(action):
        return None, None
    path = ("fromUserProfile", "userId") if action == OWNERSHIP_TRANSFER else ("userId",)
    user = _get_path(doc, "edata", *path) if action in (OWNERSHIP_TRANSFER, DELETE_USER) else None
    return action, user if _nonblank(user) else None


def _long_id(*fields: tuple[str, str | None]) -> str | None:
    """The first ``(name, value)`` whose value is an id over the length limit, as a rejection detail. (Called once
    every string of the event is known to pass ``text.text_problem``: only the length is left to check.)"""
    for name, value in fields:
        if value is not None and len(value) > MAX_ID_LENGTH:
            return f"{name} {id_problem(value)}"
    return None


def safe_ids(raw: Any) -> tuple[str | None, str | None]:
    """``(edata.action, context.cdata.id)`` of any decoded event, each only when a store can keep it (a known
    action; a request id within the limits): what a rejection's ledger row may carry. Never raises."""
    action = _get_path(raw, "edata", "action")
    rid = _get_path(raw, "context", "cdata", "id")
    return (
        action if action in (OWNERSHIP_TRANSFER, DELETE_USER) else None,
        rid if _nonblank(rid) and is_storable_id(rid) else None,
    )


def _asset_information(value: Any) -> AssetInformation | None:
    if not isinstance(value, dict):
        return None
    ident = value.get("identifier")
    if not _nonblank(ident):
        return None
    assert isinstance(ident, str)

    def opt(key: str) -> str | None:
        item = value.get(key)
        return item if isinstance(item, str) else None

    return AssetInformation(ident, opt("objectType"), opt("primaryCategory"), opt("name"))


def _admins(suggested: Any) -> tuple[str, ...]:
    """Users of every ``suggested_users`` entry whose role is ORG_ADMIN (ignoring case), in order, once each."""
    if not isinstance(suggested, list):
        return ()
    seen: dict[str, None] = {}
    for entry in suggested:
        if not isinstance(entry, dict):
            continue
        role = entry.get("role")
        if not isinstance(role, str) or role.upper() != "ORG_ADMIN":
            continue
        users = entry.get("users")
        if isinstance(users, list):
            for uid in users:
                if _nonblank(uid):
                    seen.setdefault(uid, None)
    return tuple(seen)


def _request_id(doc: Mapping[str, Any]) -> str | None:
    rid = _get_path(doc, "context", "cdata", "id")
    return rid if _nonblank(rid) else None


def _get_path(doc: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _nonblank(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _nesting_exceeds(text: str, limit: int) -> bool:
    """True when brackets nest deeper than ``limit`` (strings are skipped). Linear, no recursion."""
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False
