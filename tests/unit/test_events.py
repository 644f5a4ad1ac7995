"""Event parsing and static validation (SPEC 2.1 rules 1-6); the parser never raises."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handover.domain.events import (
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    DeleteUser,
    OwnershipTransfer,
    Reason,
    Rejection,
    parse_event,
)
from tests.conftest import EXAMPLES


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / name).read_text()))


def transfer() -> dict[str, Any]:
    return example("ownership-transfer.json")


def delete() -> dict[str, Any]:
    return example("delete-user.json")


def reason(data: Any) -> Reason:
    result = parse_event(data)
    assert isinstance(result, Rejection), result
    return result.reason


def test_examples_parse() -> None:
    t = parse_event(json.dumps(transfer()))
    assert isinstance(t, OwnershipTransfer)
    assert (t.mid, t.organisation_id, t.from_user_id, t.to_user_id) == (
        "LP.1712750750956.0001",
        "org-1",
        "u-ann",
        "u-ravi",
    )
    assert t.asset is None and t.request_id == "req-0001"
    single = parse_event(example("ownership-transfer-single-asset.json"))
    assert isinstance(single, OwnershipTransfer) and single.asset is not None
    assert single.asset.identifier == "do_q3" and single.asset.objectType == "Question"
    d = parse_event(json.dumps(delete()).encode())
    assert isinstance(d, DeleteUser)
    assert d.user_id == "u-ann" and d.admin_ids == ("u-admin",)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe",
        "[]",
        "42",
        "null",
        '"x"',
        json.dumps({"eid": "OTHER", "edata": {}}),
        json.dumps({"eid": "BE_JOB_REQUEST"}),
        json.dumps({"eid": "BE_JOB_REQUEST", "edata": []}),
    ],
)
def test_malformed(data: Any) -> None:
    assert reason(data) is Reason.MALFORMED_EVENT


def test_too_deep_and_too_large_are_malformed() -> None:
    deep = transfer()
    deep["edata"]["extra"] = json.loads("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))
    assert reason(json.dumps(deep)) is Reason.MALFORMED_EVENT
    big = transfer()
    big["edata"]["pad"] = "x" * (MAX_EVENT_BYTES + 1)
    assert reason(json.dumps(big)) is Reason.MALFORMED_EVENT
    # brackets inside strings do not count as nesting
    ok = transfer()
    ok["edata"]["note"] = "[" * (MAX_DEPTH * 3)
    assert isinstance(parse_event(json.dumps(ok)), OwnershipTransfer)


def mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("mid", _DELETE, Reason.MISSING_FIELD),
        ("mid", "  ", Reason.MISSING_FIELD),
        ("mid", 12, Reason.MISSING_FIELD),
        ("edata.action", "something-else", Reason.UNSUPPORTED_ACTION),
        ("edata.action", None, Reason.UNSUPPORTED_ACTION),
        ("object.type", "Content", Reason.INVALID_OBJECT_TYPE),
        ("object", _DELETE, Reason.INVALID_OBJECT_TYPE),
        ("edata.organisationId", "", Reason.MISSING_FIELD),
        ("edata.fromUserProfile.userId", None, Reason.MISSING_FIELD),
        ("edata.toUserProfile", "u-x", Reason.MISSING_FIELD),
        ("edata.toUserProfile.userId", "u-ann", Reason.SAME_USER),
    ],
)
def test_transfer_rules_in_order(path: str, value: Any, expected: Reason) -> None:
    assert reason(mutate(transfer(), path, value)) is expected


def test_object_type_ignores_case_and_first_failing_rule_wins() -> None:
    assert isinstance(parse_event(mutate(transfer(), "object.type", "USER")), OwnershipTransfer)
    both = mutate(mutate(transfer(), "object.type", "x"), "edata.organisationId", "")
    assert reason(both) is Reason.INVALID_OBJECT_TYPE
    no_mid_bad_action = mutate(mutate(transfer(), "mid", ""), "edata.action", "x")
    assert reason(no_mid_bad_action) is Reason.MISSING_FIELD


def test_delete_user_rules() -> None:
    assert reason(mutate(delete(), "edata.userId", " ")) is Reason.MISSING_FIELD
    d = parse_event(
        mutate(
            delete(),
            "edata.suggested_users",
            [
                {"role": "org_admin", "users": ["a1", "a2", "a1", 5, ""]},
                {"role": "ORG_ADMIN", "users": ["a3"]},
                {"role": "CONTENT_CREATOR", "users": ["c1"]},
                "junk",
                {"role": 3},
            ],
        )
    )
    assert isinstance(d, DeleteUser) and d.admin_ids == ("a1", "a2", "a3")


def test_rejection_keeps_mid_once_rule_two_passed() -> None:
    result = parse_event(mutate(transfer(), "edata.action", "nope"))
    assert isinstance(result, Rejection) and result.mid == "LP.1712750750956.0001"


@pytest.mark.parametrize(
    "asset_information",
    [
        {"identifier": "  ", "objectType": "Question"},  # blank
        {"objectType": "Question", "name": "Q1", "primaryCategory": "Multiple Choice Question"},  # as userorg sends
        {"identifier": None, "objectType": "Question"},
        {"identifier": 42},
        ["do_1"],
        "do_1",
        0,
    ],
)
def test_asset_information_without_identifier_is_rejected_never_everything(asset_information: Any) -> None:
    result = parse_event(mutate(transfer(), "edata.assetInformation", asset_information))
    assert isinstance(result, Rejection) and result.reason is Reason.MISSING_FIELD
    assert "assetInformation" in result.detail and result.mid == "LP.1712750750956.0001"


@pytest.mark.parametrize("asset_information", [{}, None])
def test_empty_or_absent_asset_information_means_everything(asset_information: Any) -> None:
    t = parse_event(mutate(transfer(), "edata.assetInformation", asset_information))
    assert isinstance(t, OwnershipTransfer) and t.asset is None
    doc = transfer()
    del doc["edata"]["assetInformation"]
    t = parse_event(doc)
    assert isinstance(t, OwnershipTransfer) and t.asset is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(parse_event(data), OwnershipTransfer | DeleteUser | Rejection)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    assert isinstance(parse_event(value), OwnershipTransfer | DeleteUser | Rejection)
    assert isinstance(parse_event(json.dumps(value)), OwnershipTransfer | DeleteUser | Rejection)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["transfer", "delete"]),
    st.lists(
        st.sampled_from(
            [
                "mid",
                "eid",
                "edata",
                "object",
                "edata.action",
                "edata.userId",
                "edata.organisationId",
                "edata.fromUserProfile",
                "edata.toUserProfile",
                "edata.assetInformation",
                "edata.suggested_users",
                "object.type",
                "context",
            ]
        ),
        min_size=1,
        max_size=4,
    ),
    json_values,
)
def test_example_with_any_field_replaced_never_raises(kind: str, paths: list[str], value: Any) -> None:
    doc = transfer() if kind == "transfer" else delete()
    for path in paths:
        try:
            doc = mutate(doc, path, value)
        except (KeyError, TypeError):
            continue
    assert isinstance(parse_event(doc), OwnershipTransfer | DeleteUser | Rejection)
    assert isinstance(
        parse_event(json.dumps(doc, ensure_ascii=False).encode()), OwnershipTransfer | DeleteUser | Rejection
    )
