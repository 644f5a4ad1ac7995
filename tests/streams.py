"""Synthetic event streams whose end state does not depend on how Kafka interleaves partitions and topics, so
that any consumer's result can be compared with a sequential replay of the same list.

Each group ``g`` has its own users, batches and assets: ``a<g>`` (the creator), ``b<g>`` (who receives),
``d<g>`` (deleted; their assets get cleaned and the admin notified). Its events only touch its own records,
and the events of one key (``a<g>``) stay in order on one partition: a single-asset transfer, a transfer of
everything, a redelivery of the latter; on the delete-user topic, ``d<g>``'s clean-up. Every 10th group adds a
transfer with a missing field and one to an unknown user (both rejected).
"""

from __future__ import annotations

import json
from typing import Any

ORG = "org-1"
ADMIN = "u-admin"


def _transfer(mid: str, g: str, *, to: str | None = None, asset: str | None = None) -> dict[str, Any]:
    edata: dict[str, Any] = {
        "action": "ownership-transfer",
        "organisationId": ORG,
        "context": "User Deletion",
        "actionBy": {"userId": ADMIN},
        "fromUserProfile": {"userId": f"a{g}", "roles": ["CONTENT_CREATOR"]},
        "assetInformation": {"objectType": "Question", "identifier": asset} if asset else {},
        "iteration": 1,
    }
    if to is not None:
        edata["toUserProfile"] = {"userId": to, "roles": ["CONTENT_CREATOR"]}
    return {
        "eid": "BE_JOB_REQUEST",
        "ets": 1712750750956,
        "mid": mid,
        "actor": {"id": "ownership-transfer", "type": "System"},
        "context": {
            "pdata": {"id": "org.sunbird.platform", "ver": "1.0"},
            "cdata": {"id": f"req-{g}", "type": "Request"},
        },
        "object": {"id": f"a{g}", "type": "user"},
        "edata": edata,
    }


def _delete_user(mid: str, g: str) -> dict[str, Any]:
    return {
        "eid": "BE_JOB_REQUEST",
        "ets": 1712750750956,
        "mid": mid,
        "object": {"id": f"d{g}", "type": "User"},
        "edata": {
            "action": "delete-user",
            "organisationId": ORG,
            "userId": f"d{g}",
            "userName": f"deleted_{g}",
            "suggested_users": [
                {"role": "ORG_ADMIN", "users": [ADMIN]},
                {"role": "CONTENT_CREATOR", "users": [f"b{g}"]},
            ],
            "managed_users": [],
            "iteration": 1,
        },
    }


def _asset(identifier: str, object_type: str, owner: str, creator: str, visibility: str, status: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "objectType": object_type,
        "schemaVersion": "1.1",
        "status": status,
        "visibility": visibility,
        "createdBy": owner,
        "creator": creator,
        "originData": None,
    }


def group_fixture(g: str) -> dict[str, list[dict[str, Any]]]:
    def user(uid: str, first: str, deleted: bool = False) -> dict[str, Any]:
        return {"id": uid, "userName": uid, "firstName": first, "lastName": g, "rootOrgId": ORG,
                "roles": ["CONTENT_CREATOR"], "isDeleted": deleted}

    a, b, d = f"a{g}", f"b{g}", f"d{g}"
    return {
        "users": [user(a, "Ann"), user(b, "Ben"), user(d, "Dee", deleted=True)],
        "course_batches": [
            {"courseid": f"c{g}", "batchid": "b1", "name": "B1", "status": 1, "createdby": a, "mentors": [a, b, a]},
            {"courseid": f"c{g}", "batchid": "b2", "name": "B2", "status": 2, "createdby": a, "mentors": [a]},
        ],
        "assets": [
            _asset(f"q{g}", "Question", a, f"Ann {g}", "Default", "Live"),
            _asset(f"q{g}.img", "QuestionImage", a, f"Ann {g}", "Default", "Draft"),
            _asset(f"qs{g}", "QuestionSet", a, f"Ann {g}", "Parent", "Live"),
            _asset(f"qd{g}", "Question", d, f"Dee {g}", "Default", "Live"),
            _asset(f"qsd{g}", "QuestionSet", d, f"Dee {g}", "Default", "Draft"),
        ],
    }


def group_events(g: str) -> list[dict[str, Any]]:
    everything = _transfer(f"LP.{g}.2", g, to=f"b{g}")
    events = [
        _transfer(f"LP.{g}.1", g, to=f"b{g}", asset=f"q{g}"),
        everything,
        _delete_user(f"LP.{g}.3", g),
        everything,  # redelivered
    ]
    if int(g) % 10 == 0:
        events.append(_transfer(f"LP.{g}.4", g))  # no toUserProfile: MISSING_FIELD
        events.append(_transfer(f"LP.{g}.5", g, to="u-nobody"))  # UNKNOWN_USER
    return events


def mixed_stream(groups: int, start: int = 0) -> tuple[dict[str, list[dict[str, Any]]], list[bytes]]:
    """The fixture and the events (message values) of ``groups`` groups: about 4.2 events per group."""
    fixture: dict[str, list[dict[str, Any]]] = {
        "users": [{"id": ADMIN, "userName": "admin", "firstName": "Ada", "lastName": "Min", "rootOrgId": ORG,
                   "roles": ["ORG_ADMIN"], "isDeleted": False}],
        "course_batches": [],
        "assets": [],
    }
    events: list[bytes] = []
    for n in range(start, start + groups):
        g = f"{n:06d}"
        for key, records in group_fixture(g).items():
            fixture[key].extend(records)
        events.extend(json.dumps(e).encode() for e in group_events(g))
    return fixture, events


def groups_for(n_events: int) -> int:
    """How many groups give about ``n_events`` events."""
    return max(1, round(n_events / 4.2))
