"""The records handover reads and writes, with Sunbird's field names.

Plain frozen dataclasses: every store adapter converts its rows to and from these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handover.domain.text import MAX_ID_LENGTH, first_bad_string, id_problem

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class User:
    id: str
    userName: str = ""
    firstName: str = ""
    lastName: str = ""
    rootOrgId: str = ""
    roles: tuple[str, ...] = ()
    isDeleted: bool = False

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "userName": self.userName,
            "firstName": self.firstName,
            "lastName": self.lastName,
            "rootOrgId": self.rootOrgId,
            "roles": list(self.roles),
            "isDeleted": self.isDeleted,
        }


# Records read in bulk are plain slotted dataclasses: a frozen one costs ~6x more to build, which shows at
# hundreds of thousands of rows per transfer. Treat them as values all the same: never mutate one.
@dataclass(slots=True)
class CourseBatch:
    courseid: str
    batchid: str
    name: str = ""
    status: int = 0
    createdby: str | None = None
    mentors: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.courseid, self.batchid)

    def to_json(self) -> JsonObject:
        return {
            "courseid": self.courseid,
            "batchid": self.batchid,
            "name": self.name,
            "status": self.status,
            "createdby": self.createdby,
            "mentors": list(self.mentors),
        }


@dataclass(slots=True)
class Asset:
    identifier: str
    objectType: str
    schemaVersion: str | None = None
    status: str | None = None
    visibility: str | None = None
    createdBy: str | None = None
    creator: str | None = None
    originData: Mapping[str, Any] | None = None
    # Any other node property a store keeps (PII target fields beyond creator/originData).
    extra: Mapping[str, Any] = field(default_factory=dict)

    def get(self, prop: str) -> Any:
        """The value of a top-level node property by name."""
        if prop in _ASSET_COLUMNS:
            return getattr(self, prop)
        return self.extra.get(prop)

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "identifier": self.identifier,
            "objectType": self.objectType,
            "schemaVersion": self.schemaVersion,
            "status": self.status,
            "visibility": self.visibility,
            "createdBy": self.createdBy,
            "creator": self.creator,
            "originData": dict(self.originData) if self.originData is not None else None,
        }
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


_ASSET_COLUMNS = frozenset(
    {"identifier", "objectType", "schemaVersion", "status", "visibility", "createdBy", "creator", "originData"}
)
ASSET_COLUMNS = _ASSET_COLUMNS


def user_from_json(doc: Mapping[str, Any]) -> User:
    """Build a user from a fixture / API document; raises ValueError on a wrong shape."""
    uid = doc.get("id")
    if not isinstance(uid, str) or not uid.strip():
        raise ValueError("user needs a non-blank string 'id'")
    _check_text(doc, "user", ("id", uid), ("rootOrgId", doc.get("rootOrgId")))
    roles = doc.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ValueError(f"user {uid}: 'roles' must be a list of strings")
    return User(
        id=uid,
        userName=_str(doc.get("userName"), f"user {uid}: userName"),
        firstName=_str(doc.get("firstName"), f"user {uid}: firstName"),
        lastName=_str(doc.get("lastName"), f"user {uid}: lastName"),
        rootOrgId=_str(doc.get("rootOrgId"), f"user {uid}: rootOrgId"),
        roles=tuple(roles),
        isDeleted=bool(doc.get("isDeleted", False)),
    )


def batch_from_json(doc: Mapping[str, Any], *, text_checked: bool = False) -> CourseBatch:
    """``text_checked``: the caller found no NUL or lone surrogate in ``doc`` (a whole fixture checked at once)."""
    courseid, batchid = doc.get("courseid"), doc.get("batchid")
    if not isinstance(courseid, str) or not isinstance(batchid, str) or not courseid or not batchid:
        raise ValueError("course batch needs string 'courseid' and 'batchid'")
    _check_text(doc, "course batch", ("courseid", courseid), ("batchid", batchid), ("createdby", doc.get("createdby")),
                *(("mentors", m) for m in doc.get("mentors") or () if isinstance(m, str)), strings=not text_checked)
    status = doc.get("status", 0)
    if isinstance(status, bool) or not isinstance(status, int):
        raise ValueError(f"course batch {courseid}/{batchid}: 'status' must be an integer")
    mentors = doc.get("mentors") or []
    if not isinstance(mentors, list) or not all(isinstance(m, str) for m in mentors):
        raise ValueError(f"course batch {courseid}/{batchid}: 'mentors' must be a list of strings")
    createdby = doc.get("createdby")
    if createdby is not None and not isinstance(createdby, str):
        raise ValueError(f"course batch {courseid}/{batchid}: 'createdby' must be a string")
    return CourseBatch(
        courseid=courseid,
        batchid=batchid,
        name=_str(doc.get("name"), f"course batch {courseid}/{batchid}: name"),
        status=status,
        createdby=createdby,
        mentors=tuple(mentors),
    )


def asset_from_json(doc: Mapping[str, Any], *, text_checked: bool = False) -> Asset:
    """``text_checked``: as for ``batch_from_json``."""
    ident, otype = doc.get("identifier"), doc.get("objectType")
    if not isinstance(ident, str) or not ident or not isinstance(otype, str) or not otype:
        raise ValueError("asset needs string 'identifier' and 'objectType'")
    _check_text(doc, "asset", ("identifier", ident), ("createdBy", doc.get("createdBy")), strings=not text_checked)
    for key in ("schemaVersion", "status", "visibility", "createdBy", "creator"):
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"asset {ident}: '{key}' must be a string or null")
    origin = doc.get("originData")
    if origin is not None and not isinstance(origin, dict):
        raise ValueError(f"asset {ident}: 'originData' must be an object or null")
    extra = {k: v for k, v in doc.items() if k not in _ASSET_COLUMNS}
    return Asset(
        identifier=ident,
        objectType=otype,
        schemaVersion=doc.get("schemaVersion"),
        status=doc.get("status"),
        visibility=doc.get("visibility"),
        createdBy=doc.get("createdBy"),
        creator=doc.get("creator"),
        originData=origin,
        extra=extra,
    )


def _check_text(doc: Mapping[str, Any], what: str, *ids: tuple[str, Any], strings: bool = True) -> None:
    """ValueError when a string of ``doc`` cannot be stored (NUL, lone surrogate; unless not ``strings``: the caller
    has checked every string of ``doc``) or one of ``ids`` (values of ``doc``) is longer than the id limit: the
    same limits on every store (``domain.text``)."""
    bad = first_bad_string(doc) if strings else None
    if bad is not None:
        raise ValueError(f"{what}: {bad[0]} contains {bad[1]}")
    # every string of doc can be stored now (checked here, or by the caller): of an id, only its length is left
    for name, value in ids:
        if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
            raise ValueError(f"{what}: '{name}' {id_problem(value)}")


def _str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    return value
