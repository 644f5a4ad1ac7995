"""Data of the console tests beyond the shared fixture: a second organisation whose transfer the tests make
fail for real (``tests.store_faults``), and request bodies for it."""

from __future__ import annotations

from typing import Any

from tests.e2e.api_support import body, role

# org-2 (u-zoe and u-admin2 come from the shared fixture and api_support.EXTRA_USERS)
ORG2: dict[str, Any] = {
    "users": [
        {"id": "u-kim", "userName": "kim", "firstName": "Kim", "lastName": "Park", "rootOrgId": "org-2",
         "roles": ["CONTENT_CREATOR"], "isDeleted": False},
    ],
    "assets": [
        {"identifier": "do_z1", "objectType": "Question", "schemaVersion": "1.1", "status": "Live",
         "visibility": "Default", "createdBy": "u-zoe", "creator": "Zoë Ünal", "originData": None},
    ],
}


def zoe_to_kim() -> dict[str, Any]:
    """An ownership transfer of everything of u-zoe to u-kim in org-2, by org-2's admin."""
    return body(
        organisationId="org-2",
        actionBy={"userId": "u-admin2"},
        fromUser={"userId": "u-zoe", "roles": [role("CONTENT_CREATOR", "org-2")]},
        toUser={"userId": "u-kim", "roles": [role("CONTENT_CREATOR", "org-2")]},
    )


def ravi_to_ann() -> dict[str, Any]:
    """Accepted by the API, rejected by the worker: the to-user u-ann is deleted (USER_DELETED)."""
    return body(
        fromUser={"userId": "u-ravi", "roles": [role("CONTENT_CREATOR", "org-1")]},
        toUser={"userId": "u-ann", "roles": [role("CONTENT_CREATOR", "org-1")]},
    )
