"""An independent, deliberately naive model of SPEC 2 over fixture dicts, for differential tests.

It shares no code with ``handover`` (only the spec): each event is applied to an in-memory copy of the
fixture, and the result must equal what the engine did to a real store.
"""

from __future__ import annotations

import copy
import json
from typing import Any

TYPES = {"Question": ["1.0", "1.1"], "QuestionSet": ["1.0", "1.1"]}
ROLES = {"CONTENT_CREATOR", "BOOK_CREATOR"}


def _blank(v: Any) -> bool:
    return not isinstance(v, str) or not v.strip()


def _configured(a: dict[str, Any]) -> bool:
    t = a["objectType"]
    base = t[: -len("Image")] if t.endswith("Image") and t != "Image" else t
    return base in TYPES and (a.get("schemaVersion") or "1.0") in TYPES[base]


class Reference:
    def __init__(self, fixture: dict[str, Any]) -> None:
        self.state = copy.deepcopy(fixture)
        self.state.setdefault("notifications", [])
        self.seen: set[str] = set()

    def users(self) -> dict[str, dict[str, Any]]:
        return {u["id"]: u for u in self.state["users"]}

    def apply(self, line: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "outcome": "rejected",
            "reason": None,
            "skipped": [],
            "changed": {"course_batches": 0, "assets": 0},
        }
        try:
            ev = json.loads(line)
        except ValueError:
            out["reason"] = "MALFORMED_EVENT"
            return out
        if not isinstance(ev, dict) or ev.get("eid") != "BE_JOB_REQUEST" or not isinstance(ev.get("edata"), dict):
            out["reason"] = "MALFORMED_EVENT"
            return out
        mid = ev.get("mid")
        if _blank(mid):
            out["reason"] = "MISSING_FIELD"
            return out
        if mid in self.seen:
            out["outcome"] = "duplicate"
            return out
        self.seen.add(mid)
        out["reason"] = self._reject_reason(ev)
        if out["reason"] is not None:
            return out
        out["outcome"] = "applied"
        if ev["edata"]["action"] == "ownership-transfer":
            self._transfer(ev, out)
        else:
            self._delete(ev, out)
        return out

    def _reject_reason(self, ev: dict[str, Any]) -> str | None:
        e = ev["edata"]
        if e.get("action") not in ("ownership-transfer", "delete-user"):
            return "UNSUPPORTED_ACTION"
        obj = ev.get("object")
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str) or obj["type"].lower() != "user":
            return "INVALID_OBJECT_TYPE"
        users = self.users()
        if e["action"] == "delete-user":
            if _blank(e.get("userId")):
                return "MISSING_FIELD"
            u = users.get(e["userId"])
            return "USER_NOT_DELETED" if u is not None and not u["isDeleted"] else None
        fr = e.get("fromUserProfile") if isinstance(e.get("fromUserProfile"), dict) else {}
        to = e.get("toUserProfile") if isinstance(e.get("toUserProfile"), dict) else {}
        if _blank(e.get("organisationId")) or _blank(fr.get("userId")) or _blank(to.get("userId")):
            return "MISSING_FIELD"
        info = e.get("assetInformation")
        if info not in (None, {}) and (not isinstance(info, dict) or _blank(info.get("identifier"))):
            return "MISSING_FIELD"  # names an asset without saying which: never "everything"
        if fr["userId"] == to["userId"]:
            return "SAME_USER"
        f, t = users.get(fr["userId"]), users.get(to["userId"])
        if f is None or t is None:
            return "UNKNOWN_USER"
        if t["isDeleted"]:
            return "USER_DELETED"
        if f["rootOrgId"] != e["organisationId"] or t["rootOrgId"] != e["organisationId"]:
            return "ORG_MISMATCH"
        return None

    def _transfer(self, ev: dict[str, Any], out: dict[str, Any]) -> None:
        e = ev["edata"]
        frm, to = e["fromUserProfile"]["userId"], e["toUserProfile"]["userId"]
        info = e.get("assetInformation")
        ident = info.get("identifier") if isinstance(info, dict) else None
        single = not _blank(ident)
        if not single:
            for b in self.state["course_batches"]:
                if b["status"] not in (0, 1) or (b["createdby"] != frm and frm not in b["mentors"]):
                    continue
                if b["createdby"] == frm:
                    b["createdby"] = to
                if frm in b["mentors"]:
                    new: list[str] = []
                    for m in b["mentors"]:
                        m = to if m == frm else m
                        if m not in new:
                            new.append(m)
                    b["mentors"] = new
                out["changed"]["course_batches"] += 1
        tu = self.users()[to]
        if not ROLES & set(tu["roles"]):
            out["skipped"] = ["ROLE_NOT_ALLOWED"]
            return
        name = f"{tu['firstName']} {tu['lastName']}".strip() or tu["userName"]
        assets = {a["identifier"]: a for a in self.state["assets"]}
        if single:
            a = assets.get(ident)
            owner = self.users().get(a["createdBy"]) if a is not None and a["createdBy"] else None
            in_org = owner is not None and owner["rootOrgId"] == e["organisationId"]
            outside = a is not None and a["createdBy"] != frm and not in_org
            if a is None or outside:  # an asset of another organisation looks absent (issue 13 item 9)
                out["skipped"] = ["ASSET_NOT_FOUND"]
                return
            if not _configured(a):
                out["skipped"] = ["ASSET_TYPE_NOT_CONFIGURED"]
                return
            if a["createdBy"] != frm:
                out["skipped"] = ["ASSET_NOT_OWNED"]
                return
            targets = [a] + [x for x in [assets.get(ident + ".img")] if x and x["createdBy"] == frm and _configured(x)]
        else:
            targets = [a for a in self.state["assets"] if a["createdBy"] == frm and _configured(a)]
        for a in targets:
            a["createdBy"], a["creator"] = to, name
            out["changed"]["assets"] += 1

    def _delete(self, ev: dict[str, Any], out: dict[str, Any]) -> None:
        e = ev["edata"]
        uid = e["userId"]
        listed: dict[str, Any] = {}
        bases: set[str] = set()
        for a in sorted(self.state["assets"], key=lambda a: a["identifier"]):
            if a["createdBy"] != uid or not _configured(a):
                continue
            cleaned = a.get("creator") != "Deleted User"  # the email lists only what this event changed
            a["creator"] = "Deleted User"
            out["changed"]["assets"] += 1
            if cleaned and a.get("visibility") == "Default":
                i = a["identifier"]
                if i.endswith(".img"):
                    if i[:-4] not in bases:
                        listed[i[:-4]] = a["status"]
                else:
                    listed[i] = a["status"]
                    bases.add(i)
        admins: list[str] = []
        for s in e.get("suggested_users") or []:
            if isinstance(s, dict) and isinstance(s.get("role"), str) and s["role"].upper() == "ORG_ADMIN":
                for u in s.get("users") or []:
                    if isinstance(u, str) and u.strip() and u not in admins:
                        admins.append(u)
        if admins and listed:
            self.state["notifications"].append(
                {"mid": ev["mid"], "recipientUserIds": admins, "assets": dict(sorted(listed.items()))}
            )

    def dump(self) -> dict[str, Any]:
        s = copy.deepcopy(self.state)
        s["users"].sort(key=lambda u: u["id"])
        s["course_batches"].sort(key=lambda b: (b["courseid"], b["batchid"]))
        s["assets"].sort(key=lambda a: a["identifier"])
        s["notifications"].sort(key=lambda n: n["mid"])
        return s
