"""The Lern userorg ownership-transfer request (SPEC 5): validation and the events a valid request produces.

Validation follows upstream's ``UserOwnershipTransferActor`` order, codes and messages: the organisation
(present, exists), then ``actionBy``, ``fromUser``, ``toUser`` one after the other (key present, user id present
and known; ``actionBy`` must be an org admin, the other two need a non-empty ``roles`` list). This project's
fixes come after those checks: a user value that is not an object, a missing ``context``, ``objects`` that is
not a list of objects, an object without an identifier and ``fromUser == toUser`` are client errors (upstream
answered 500 or accepted them), and ``actionBy`` must be ``ORG_ADMIN`` of ``organisationId`` itself. What the
worker would reject is refused here (SPEC 5, "More fixes"): a ``fromUser`` or ``toUser`` outside ``organisationId``
gets the very answer of an unknown id (no probing of other organisations' users), a deleted ``toUser`` a 0028.

Pure: the user directory is passed in; nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from handover.domain.events import MAX_EVENT_BYTES, OWNERSHIP_TRANSFER
from handover.domain.model import User
from handover.domain.text import first_bad_string, id_problem

# upstream error codes: "UOS_" + operation "UOWNTRANS" + ResponseMessage key
INVALID_REQUEST_DATA = "UOS_UOWNTRANS0028"
DATA_TYPE_ERROR = "UOS_UOWNTRANS0003"
CANNOT_TRANSFER_OWNERSHIP = "UOS_UOWNTRANS0084"

ACTION_BY = "actionBy"
FROM_USER = "fromUser"
TO_USER = "toUser"
ORG_ADMIN = "ORG_ADMIN"

SUBMITTED = "Ownership transfer process is submitted successfully!"
RESTRICTED = "User is restricted from transfering the ownership based on roles!"  # sic, as upstream


class InvalidRequest(Exception):
    """A client error: ``code`` goes to ``params.err``, ``message`` to ``params.errmsg`` (HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Directory(Protocol):
    """What validation reads from the user directory."""

    def organisation_exists(self, organisation_id: str) -> bool: ...

    def user(self, user_id: str) -> User | None: ...


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A user as it appears in the event: ``actionBy``, ``fromUserProfile`` or ``toUserProfile``."""

    userId: str
    userName: str
    roles: tuple[str, ...] | None = None  # from/to: role names scoped to the organisation
    firstName: str | None = None  # to-user only
    lastName: str | None = None
    deleted: bool = False  # the directory marks the user deleted (not part of the event)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"userId": self.userId, "userName": self.userName}
        if self.firstName is not None:
            out["firstName"] = self.firstName
        if self.lastName is not None:
            out["lastName"] = self.lastName
        if self.roles is not None:
            out["roles"] = list(self.roles)
        return out


@dataclass(frozen=True, slots=True)
class TransferRequest:
    organisation_id: str
    context: str
    action_by: UserProfile
    from_user: UserProfile
    to_user: UserProfile
    objects: tuple[Mapping[str, Any], ...]  # empty: transfer everything


def invalid(message: str) -> InvalidRequest:
    return InvalidRequest(INVALID_REQUEST_DATA, message)


def data_type_error(key: str, expected: str) -> InvalidRequest:
    """Upstream's ``Data type of {0} should be {1}.``"""
    return InvalidRequest(DATA_TYPE_ERROR, f"Data type of {key} should be {expected}.")


def validate(body: Any, directory: Directory, *, max_objects: int | None = None) -> TransferRequest:
    """Validate a decoded request body ``{"request": {...}}``; raises ``InvalidRequest`` at the first failure.
    ``max_objects``: how many ``objects`` a request may name (setting ``api.max_objects``; None: no cap); more is a
    0028 naming the cap, checked before any user is looked up."""
    if not isinstance(body, Mapping):
        raise data_type_error("request body", "Map")
    data = body.get("request", {})  # upstream maps a missing "request" to an empty request
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise data_type_error("request", "Map")
    bad = first_bad_string(data, "request")  # before any of it reaches the directory or a store
    if bad is not None:
        raise invalid(f"{bad[0]} contains {bad[1]}.")
    objects = data.get("objects")
    if max_objects is not None and isinstance(objects, list) and len(objects) > max_objects:
        raise invalid(f"objects names {len(objects)} objects: a request may name at most {max_objects} "
                      "(api.max_objects); split it into several requests.")
    org_id = _organisation(data, directory)
    action_by = _user(data, ACTION_BY, org_id, directory)
    from_user = _user(data, FROM_USER, org_id, directory)
    to_user = _user(data, TO_USER, org_id, directory)
    context = _context(data)
    objects = _objects(data)
    if from_user.userId == to_user.userId:
        raise invalid("fromUser and toUser must be different users.")
    if to_user.deleted:  # the worker would reject the event (USER_DELETED): refused up front
        raise invalid(f"given user id under {TO_USER} is a deleted user")
    return TransferRequest(org_id, context, action_by, from_user, to_user, objects)


def _organisation(data: Mapping[str, Any], directory: Directory) -> str:
    org_id = data.get("organisationId")
    if not isinstance(org_id, str) or not org_id.strip():
        raise invalid("Organization ID is mandatory in the request.")
    problem = id_problem(org_id)
    if problem is not None:
        raise invalid(f"Organization ID {problem}.")
    if not directory.organisation_exists(org_id):
        raise invalid(f"Organization with ID {org_id} does not exist.")
    return org_id


def _user(data: Mapping[str, Any], key: str, org_id: str, directory: Directory) -> UserProfile:
    if key not in data:
        raise invalid(f"{key} key is not present in the data.")
    node = data[key]
    if not isinstance(node, Mapping):
        raise data_type_error(key, "Map")
    raw_id = node.get("userId")
    user_id = raw_id.strip() if isinstance(raw_id, str) else ""
    problem = id_problem(user_id)
    if problem is not None:
        raise invalid(f"given user id under {key} {problem}")
    user = directory.user(user_id) if user_id else None
    if user is None or (key != ACTION_BY and user.rootOrgId != org_id):
        # a user of another organisation answers exactly as an unknown one: no probing across organisations
        raise invalid(f"given user id under {key} is not present or blank")
    if key == ACTION_BY:
        if not is_org_admin_of(user, org_id):
            raise InvalidRequest(CANNOT_TRANSFER_OWNERSHIP, RESTRICTED)
        return UserProfile(user.id, user.userName)
    roles = _roles(node, key, org_id)
    if key == TO_USER:
        return UserProfile(user.id, user.userName, roles, user.firstName, user.lastName, user.isDeleted)
    return UserProfile(user.id, user.userName, roles)


def is_org_admin_of(user: User, org_id: str) -> bool:
    """Directory roles are scoped to the user's root organisation (SPEC 3)."""
    return ORG_ADMIN in user.roles and user.rootOrgId == org_id


def _roles(node: Mapping[str, Any], key: str, org_id: str) -> tuple[str, ...]:
    if "roles" not in node:
        raise invalid(f"Roles key is not present for {key}")
    roles = node["roles"]
    if not isinstance(roles, list):
        raise data_type_error("roles", "List")
    if not roles:
        raise invalid(f"Roles are empty in {key} details.")
    return scoped_role_names(roles, org_id)


def scoped_role_names(roles: Sequence[Any], org_id: str) -> tuple[str, ...]:
    """The names of the roles whose ``scope`` names ``org_id``, in order (anything else is left out)."""
    names: list[str] = []
    for role in roles:
        if not isinstance(role, Mapping):
            continue
        name, scope = role.get("role"), role.get("scope")
        if not isinstance(name, str) or not isinstance(scope, list):
            continue
        if any(isinstance(s, Mapping) and s.get("organisationId") == org_id for s in scope):
            names.append(name)
    return tuple(names)


def _context(data: Mapping[str, Any]) -> str:
    context = data.get("context")
    if context is None:
        raise invalid("context key is not present in the data.")
    if not isinstance(context, str):
        raise data_type_error("context", "String")
    return context


def _objects(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    objects = data.get("objects")
    if objects is None:
        return ()
    if not isinstance(objects, list) or not all(isinstance(o, Mapping) for o in objects):
        raise data_type_error("objects", "List of Map")
    for obj in objects:
        ident = obj.get("identifier")
        if not isinstance(ident, str) or not ident.strip():
            raise invalid("given identifier under objects is not present or blank")
        problem = id_problem(ident)
        if problem is not None:
            raise invalid(f"given identifier under objects {problem}")
    return tuple(objects)


def build_events(
    request: TransferRequest, request_id: str, now_ms: int, new_id: Callable[[], str]
) -> list[dict[str, Any]]:
    """One ``BE_JOB_REQUEST`` per object, or one with ``assetInformation: {}`` (upstream's event shape).
    ``InvalidRequest`` (0028) when the request id is not a storable id or an event would be larger than a
    worker takes (``events.MAX_EVENT_BYTES``): a request is accepted only when every event it produces can be
    processed."""
    problem = id_problem(request_id)
    if problem is not None:
        raise invalid(f"The request id {problem}.")
    assets: Sequence[Mapping[str, Any]] = request.objects or ({},)
    events = [_event(request, request_id, now_ms, new_id(), asset) for asset in assets]
    for position, event in enumerate(events):
        size = len(json.dumps(event, allow_nan=False))  # ASCII-escaped: an upper bound of every encoding's size
        if size > MAX_EVENT_BYTES:
            where = f"objects[{position}]" if request.objects else "the request"
            raise invalid(f"The event for {where} would be {size} bytes, over the worker's limit of "
                          f"{MAX_EVENT_BYTES} bytes.")
    return events


def _event(
    request: TransferRequest, request_id: str, now_ms: int, unique: str, asset: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "eid": "BE_JOB_REQUEST",
        "ets": now_ms,
        "mid": f"LP.{now_ms}.{unique}",
        "actor": {"id": "ownership-transfer", "type": "System"},
        "context": {
            "pdata": {"id": "org.sunbird.platform", "ver": "1.0"},
            "cdata": {"id": request_id, "type": "Request"},
        },
        "object": {"id": request.from_user.userId, "type": "user"},
        "edata": {
            "action": OWNERSHIP_TRANSFER,
            "organisationId": request.organisation_id,
            "context": request.context,
            "actionBy": request.action_by.to_json(),
            "fromUserProfile": request.from_user.to_json(),
            "toUserProfile": request.to_user.to_json(),
            "assetInformation": dict(asset),
            "iteration": 1,
        },
    }
