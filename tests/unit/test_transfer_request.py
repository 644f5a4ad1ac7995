"""The pure request validation and event building of the ownership-transfer API (SPEC 5)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handover.domain.events import OwnershipTransfer, parse_event
from handover.domain.model import User
from handover.domain.transfer_request import (
    CANNOT_TRANSFER_OWNERSHIP,
    DATA_TYPE_ERROR,
    INVALID_REQUEST_DATA,
    InvalidRequest,
    build_events,
    is_org_admin_of,
    scoped_role_names,
    validate,
)


class Directory:
    """An in-memory user directory; organisations are the users' root organisations."""

    def __init__(self, *users: User) -> None:
        self.users = {u.id: u for u in users}
        self.lookups: list[str] = []

    def organisation_exists(self, organisation_id: str) -> bool:
        self.lookups.append(f"org:{organisation_id}")
        return any(u.rootOrgId == organisation_id for u in self.users.values())

    def user(self, user_id: str) -> User | None:
        self.lookups.append(f"user:{user_id}")
        return self.users.get(user_id)


DIRECTORY = Directory(
    User("admin", "admin1", "Org", "Admin", "org-1", ("ORG_ADMIN",)),
    User("admin2", "admin2", "", "", "org-2", ("ORG_ADMIN",)),
    User("ann", "ann_lee", "Ann", "Lee", "org-1", ("CONTENT_CREATOR",), isDeleted=True),
    User("ravi", "ravi_k", "Ravi", "Kumar", "org-1", ("CONTENT_CREATOR",)),
)


def role(name: str, *orgs: str) -> dict[str, Any]:
    return {"role": name, "scope": [{"organisationId": o} for o in orgs]}


def request(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "context": "User Deletion",
        "organisationId": "org-1",
        "actionBy": {"userId": "admin"},
        "fromUser": {"userId": "ann", "roles": [role("CONTENT_CREATOR", "org-1")]},
        "toUser": {"userId": "ravi", "roles": [role("CONTENT_CREATOR", "org-1")]},
    }
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return {"request": data}


def error_of(doc: Any, directory: Directory = DIRECTORY) -> tuple[str, str]:
    with pytest.raises(InvalidRequest) as info:
        validate(doc, directory)
    return info.value.code, info.value.message


def test_a_valid_request() -> None:
    valid = validate(request(objects=[{"identifier": "do_1", "objectType": "Question"}]), DIRECTORY)
    assert valid.organisation_id == "org-1"
    assert valid.context == "User Deletion"
    assert valid.action_by.to_json() == {"userId": "admin", "userName": "admin1"}
    assert valid.from_user.to_json() == {"userId": "ann", "userName": "ann_lee", "roles": ["CONTENT_CREATOR"]}
    assert valid.to_user.to_json() == {
        "userId": "ravi",
        "userName": "ravi_k",
        "firstName": "Ravi",
        "lastName": "Kumar",
        "roles": ["CONTENT_CREATOR"],
    }
    assert valid.objects == ({"identifier": "do_1", "objectType": "Question"},)


def test_the_directory_is_read_in_upstream_order_and_stops_at_the_first_failure() -> None:
    directory = Directory(*DIRECTORY.users.values())
    validate(request(), directory)
    assert directory.lookups == ["org:org-1", "user:admin", "user:ann", "user:ravi"]
    directory.lookups.clear()
    assert error_of(request(organisationId="nowhere"), directory)[1] == "Organization with ID nowhere does not exist."
    assert directory.lookups == ["org:nowhere"]


def test_user_ids_are_trimmed_as_upstream() -> None:
    valid = validate(request(actionBy={"userId": " admin "}), DIRECTORY)
    assert valid.action_by.userId == "admin"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"organisationId": ...}, (INVALID_REQUEST_DATA, "Organization ID is mandatory in the request.")),
        (
            {"actionBy": {"userId": "ravi"}},
            (CANNOT_TRANSFER_OWNERSHIP, "User is restricted from transfering the ownership based on roles!"),
        ),
        (
            {"actionBy": {"userId": "admin2"}},
            (CANNOT_TRANSFER_OWNERSHIP, "User is restricted from transfering the ownership based on roles!"),
        ),
        ({"actionBy": {"userId": 7}}, (INVALID_REQUEST_DATA, "given user id under actionBy is not present or blank")),
        ({"fromUser": {"userId": "ann", "roles": None}}, (DATA_TYPE_ERROR, "Data type of roles should be List.")),
        ({"toUser": 5}, (DATA_TYPE_ERROR, "Data type of toUser should be Map.")),
        ({"context": ["x"]}, (DATA_TYPE_ERROR, "Data type of context should be String.")),
        ({"objects": "do_1"}, (DATA_TYPE_ERROR, "Data type of objects should be List of Map.")),
        (
            {"toUser": {"userId": "ann", "roles": [{}]}},
            (INVALID_REQUEST_DATA, "fromUser and toUser must be different users."),
        ),
    ],
)
def test_errors(changes: dict[str, Any], expected: tuple[str, str]) -> None:
    assert error_of(request(**changes)) == expected


def test_non_object_bodies() -> None:
    assert error_of([request()]) == (DATA_TYPE_ERROR, "Data type of request body should be Map.")
    assert error_of({"request": "x"}) == (DATA_TYPE_ERROR, "Data type of request should be Map.")


def test_roles_are_the_names_scoped_to_the_organisation() -> None:
    roles = [
        role("A", "org-1"),
        role("B", "org-2"),
        role("C", "org-2", "org-1"),
        "ORG_ADMIN",  # a plain name has no scope: left out, as upstream
        {"role": "D"},
        {"role": 5, "scope": [{"organisationId": "org-1"}]},
        {"role": "E", "scope": "org-1"},
        {"role": "F", "scope": ["org-1", None]},
    ]
    assert scoped_role_names(roles, "org-1") == ("A", "C")


def test_org_admin_of_the_organisation_itself() -> None:
    admin = DIRECTORY.users["admin"]
    assert is_org_admin_of(admin, "org-1")
    assert not is_org_admin_of(admin, "org-2")
    assert not is_org_admin_of(DIRECTORY.users["ravi"], "org-1")


def test_events_one_per_object_or_one_for_everything() -> None:
    counter = itertools.count(1)
    objects = [{"identifier": "do_1", "objectType": "Question"}, {"identifier": "do_2"}]
    events = build_events(
        validate(request(objects=objects), DIRECTORY), "req-1", 1712750750956, lambda: str(next(counter))
    )
    assert [e["mid"] for e in events] == ["LP.1712750750956.1", "LP.1712750750956.2"]
    assert [e["edata"]["assetInformation"] for e in events] == objects
    (everything,) = build_events(validate(request(), DIRECTORY), "req-2", 1, lambda: "x")
    assert everything["edata"]["assetInformation"] == {}
    assert everything["context"]["cdata"] == {"id": "req-2", "type": "Request"}
    assert everything["object"] == {"id": "ann", "type": "user"}
    assert everything["actor"] == {"id": "ownership-transfer", "type": "System"}


def test_built_events_parse_as_ownership_transfers() -> None:
    objects = [{"identifier": "do_1", "objectType": "Question"}]
    for doc in (request(), request(objects=objects)):
        (event,) = build_events(validate(doc, DIRECTORY), "req", 5, lambda: "u")
        parsed = parse_event(event)
        assert isinstance(parsed, OwnershipTransfer)
        assert (parsed.from_user_id, parsed.to_user_id, parsed.organisation_id) == ("ann", "ravi", "org-1")
        assert parsed.request_id == "req"
        assert (parsed.asset.identifier if parsed.asset else None) == ("do_1" if "objects" in doc["request"] else None)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(["context", "organisationId", "actionBy", "fromUser", "toUser", "objects"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JSON | st.just({"userId": "ann", "roles": []})), JSON)
def test_any_input_is_valid_or_a_client_error(data: dict[str, Any], other: Any) -> None:
    for doc in ({"request": data}, other, {"request": {**request()["request"], **data}}):
        try:
            valid = validate(doc, DIRECTORY)
        except InvalidRequest as exc:
            assert exc.code in (INVALID_REQUEST_DATA, DATA_TYPE_ERROR, CANNOT_TRANSFER_OWNERSHIP)
            assert exc.message
        else:
            assert build_events(valid, "r", 1, lambda: "u")
