"""A fixture for the deleted-owner report (SPEC 12) and the rows it must give, worked out here from the fixture's
documents by the rules of SPEC 2.2 (not by ``service.reports``).

Two organisations. In org-r: deleted users who own batches as creator, as mentor only, completed batches (not
owned any more in the report's sense), configured assets, an unconfigured type and a wrong version (not reported);
a deleted user who owns nothing; a user who is not deleted and owns things. In org-s: a deleted owner of its own.
"""

from __future__ import annotations

from typing import Any

BATCH_LABELS = {0: "Upcoming Batch", 1: "Ongoing Batch", 2: "Batch ended"}


def user(uid: str, org: str, deleted: bool, roles: list[str] | None = None, first: str = "") -> dict[str, Any]:
    return {"id": uid, "userName": uid.replace("-", "_"), "firstName": first, "lastName": "", "rootOrgId": org,
            "roles": roles if roles is not None else ["CONTENT_CREATOR"], "isDeleted": deleted}


def report_fixture(owners: int = 3, records: int = 3) -> dict[str, Any]:
    """``owners`` deleted owners in org-r with ``records`` batches and ``records`` assets each (plus the
    cases around them described in the module doc). Batch ids are unique across courses, as in Sunbird (the
    course-batch index keys its documents by batch id)."""
    users = [user("r-admin", "org-r", False, ["ORG_ADMIN"]), user("r-keeper", "org-r", False),
             user("r-idle", "org-r", True), user("s-admin", "org-s", False, ["ORG_ADMIN"]),
             user("s-gone", "org-s", True, first="Sam")]
    batches: list[dict[str, Any]] = []
    assets: list[dict[str, Any]] = []
    for n in range(owners):
        uid = f"r-gone-{n:05d}"
        users.append(user(uid, "org-r", True, ["CONTENT_CREATOR", "COURSE_MENTOR"], first=f"Gone{n}"))
        for i in range(records):
            batches.append({"courseid": f"do_c{n:05d}", "batchid": f"b{n:05d}_{i:04d}", "name": f"Batch {i} of {uid}",
                            "status": i % 2, "createdby": uid, "mentors": [uid]})
            assets.append({"identifier": f"do_q{n:05d}_{i:04d}", "objectType": "Question", "schemaVersion": "1.1",
                           "status": "Live", "createdBy": uid, "creator": f"Gone{n}", "name": f"Question {i}"})
        # mentored only; a completed batch; an unconfigured type; a version not transferred; someone else's
        batches.append({"courseid": f"do_c{n:05d}", "batchid": f"m{n:05d}", "name": "", "status": 1,
                        "createdby": "r-keeper", "mentors": ["r-keeper", uid]})
        batches.append({"courseid": f"do_c{n:05d}", "batchid": f"d{n:05d}", "name": "", "status": 2, "createdby": uid,
                        "mentors": []})
        assets.append({"identifier": f"do_doc{n:05d}", "objectType": "Content", "status": "Live", "createdBy": uid})
        assets.append({"identifier": f"do_old{n:05d}", "objectType": "Question", "schemaVersion": "0.9",
                       "status": "Live", "createdBy": uid})
    batches.append({"courseid": "do_keep", "batchid": "keep1", "name": "", "status": 1, "createdby": "r-keeper",
                    "mentors": []})
    assets.append({"identifier": "do_keep_q", "objectType": "QuestionSet", "status": "Draft", "createdBy": "r-keeper"})
    batches.append({"courseid": "do_s", "batchid": "s1", "name": "S batch", "status": 0, "createdby": "s-gone",
                    "mentors": []})
    assets.append({"identifier": "do_s_qs", "objectType": "QuestionSetImage", "status": "Draft",
                   "createdBy": "s-gone"})
    return {"users": users, "course_batches": batches, "assets": assets}


def expected_rows(doc: dict[str, Any], org: str | None) -> list[tuple[str, str, str, str, str]]:
    """(userId, assetIdentifier, assetStatus, objectType, ownedAs) of every row, sorted."""
    deleted = {u["id"]: u for u in doc["users"] if u["isDeleted"] and org in (None, u["rootOrgId"])}
    rows = []
    for b in doc["course_batches"]:
        if b["status"] not in (0, 1):
            continue
        for uid in deleted:
            if b["createdby"] == uid or uid in b["mentors"]:
                how = "createdBy" if b["createdby"] == uid else "mentors"
                rows.append((uid, f"{b['courseid']}/{b['batchid']}", BATCH_LABELS[b["status"]], "Course Batch", how))
    for a in doc["assets"]:
        base = a["objectType"].removesuffix("Image")
        if a.get("createdBy") in deleted and base in ("Question", "QuestionSet") and \
                a.get("schemaVersion", "1.0") in ("1.0", "1.1"):
            rows.append((a["createdBy"], a["identifier"], a["status"], a["objectType"], "createdBy"))
    return sorted(rows)


def row_key(row: Any) -> tuple[str, str, str, str, str]:
    """The same tuple of a ``ReportRow`` or of its JSON object."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    return (get("userId"), get("assetIdentifier"), get("assetStatus"), get("objectType"), get("ownedAs"))
