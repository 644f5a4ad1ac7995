"""The pure rules of SPEC 2.2 / 2.3 and the admin email."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from handover.domain import rules
from handover.domain.events import OwnershipTransfer, Reason
from handover.domain.model import Asset, CourseBatch, User
from handover.domain.notification import AffectedAssets, build_notification
from handover.domain.policy import Policy

POLICY = Policy()


def test_display_name() -> None:
    assert rules.display_name(User("u", "login", "Ann", "Lee")) == "Ann Lee"
    assert rules.display_name(User("u", "login", "Meera", "")) == "Meera"
    assert rules.display_name(User("u", "login", "", " ")) == "login"


def test_directory_rules() -> None:
    ev = OwnershipTransfer("m", "o1", "a", "b", None, None, {})
    a, b = User("a", rootOrgId="o1", isDeleted=True), User("b", rootOrgId="o1")
    assert rules.check_transfer_users(ev, a, b) is None  # a deleted from-user is fine
    assert rules.check_transfer_users(ev, None, b) is Reason.UNKNOWN_USER
    assert rules.check_transfer_users(ev, a, User("b", rootOrgId="o1", isDeleted=True)) is Reason.USER_DELETED
    assert rules.check_transfer_users(ev, a, User("b", rootOrgId="o2")) is Reason.ORG_MISMATCH
    assert rules.check_transfer_users(ev, User("a", rootOrgId="o2"), b) is Reason.ORG_MISMATCH


def test_batch_transfer() -> None:
    b = CourseBatch("c", "b", status=1, createdby="a", mentors=("a", "x", "b", "a"))
    u = rules.transfer_batch(b, "a", "b", POLICY)
    assert u is not None and u.createdby == "b" and u.mentors == ("b", "x")
    assert [c.field for c in u.changes] == ["createdby", "mentors"]
    assert rules.transfer_batch(CourseBatch("c", "b", status=2, createdby="a"), "a", "b", POLICY) is None
    assert (
        rules.transfer_batch(CourseBatch("c", "b", status=0, createdby="z", mentors=("y",)), "a", "b", POLICY) is None
    )
    only_mentor = rules.transfer_batch(CourseBatch("c", "b", status=0, createdby="z", mentors=("a",)), "a", "b", POLICY)
    assert only_mentor is not None and only_mentor.createdby is None and only_mentor.mentors == ("b",)


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=8))
def test_replace_mentor_keeps_order_and_drops_duplicates(mentors: list[str]) -> None:
    out = rules.replace_mentor(mentors, "a", "b")
    assert len(out) == len(set(out))
    assert "a" not in out
    expected = list(dict.fromkeys("b" if m == "a" else m for m in mentors))
    assert list(out) == expected


def test_asset_matching() -> None:
    assert rules.is_configured(Asset("x", "QuestionImage", "1.1"), POLICY)
    assert rules.is_configured(Asset("x", "QuestionSet", None), POLICY)  # missing version means 1.0
    assert not rules.is_configured(Asset("x", "Question", "2.0"), POLICY)
    assert not rules.is_configured(Asset("x", "Content", "1.0"), POLICY)
    assert not rules.is_configured(Asset("x", "Image", "1.0"), POLICY)


def test_transfer_asset_sets_owner_and_first_pii_field_only() -> None:
    policy = Policy(pii_fields={("Question", "1.1"): {"createdBy": ("creator", "author")}})
    a = Asset("x", "Question", "1.1", createdBy="a", creator="Ann", extra={"author": "Ann"})
    u = rules.transfer_asset(a, "b", "Bo", policy)
    assert dict(u.values) == {"createdBy": "b", "creator": "Bo"}
    assert [(c.field, c.before, c.after) for c in u.changes] == [("createdBy", "a", "b"), ("creator", "Ann", "Bo")]


def test_clean_asset_nested_path_keeps_other_keys_and_keeps_no_personal_value() -> None:
    policy = Policy(pii_fields={("Question", "1.0"): {"createdBy": ("creator", "originData.creator.name")}})
    a = Asset(
        "x", "Question", None, createdBy="a", creator="Ann", originData={"creator": {"name": "Ann", "id": 7}, "k": 1}
    )
    u = rules.clean_asset(a, policy)
    assert u.values["creator"] == "Deleted User"
    assert u.values["originData"] == {"creator": {"name": "Deleted User", "id": 7}, "k": 1}
    assert a.originData == {"creator": {"name": "Ann", "id": 7}, "k": 1}  # input untouched
    assert all(c.before is None for c in u.changes)
    assert "Ann" not in json.dumps([c.after for c in u.changes])
    created = rules.clean_asset(Asset("y", "Question", None, createdBy="a", originData=None), policy)
    assert created.values["originData"] == {"creator": {"name": "Deleted User"}}
    replaced = rules.clean_asset(Asset("z", "Question", None, createdBy="a", originData={"creator": "str"}), policy)
    assert replaced.values["originData"] == {"creator": {"name": "Deleted User"}}


def test_single_asset_skip_reasons() -> None:
    assert rules.single_asset_skip(None, "a", POLICY) is Reason.ASSET_NOT_FOUND
    assert (
        rules.single_asset_skip(Asset("x", "Content", createdBy="a"), "a", POLICY) is Reason.ASSET_TYPE_NOT_CONFIGURED
    )
    assert rules.single_asset_skip(Asset("x", "Question", createdBy="z"), "a", POLICY) is Reason.ASSET_NOT_OWNED
    assert rules.single_asset_skip(Asset("x", "Question", createdBy="a"), "a", POLICY) is None


def test_notification_collapses_images_and_escapes() -> None:
    seen = AffectedAssets()
    seen.add(Asset("do_1.img", "QuestionImage", status="Draft", visibility="Default"))
    seen.add(Asset("do_1", "Question", status="Live", visibility="Default"))
    seen.add(Asset("do_2.img", "QuestionImage", status="Draft", visibility="Default"))
    seen.add(Asset("do_3", "Question", status="Live", visibility="Parent"))
    seen.add(Asset("do_<b>", "Question", status="Live", visibility="Default"))
    note = build_notification("m", "u", "<script>", ("a1",), seen, POLICY)
    assert note is not None
    assert dict(note.assets) == {"do_1": "Live", "do_2": "Draft", "do_<b>": "Live"}
    assert "<script>" not in note.body and "&lt;script&gt;" in note.body and "do_&lt;b&gt;" in note.body
    body = note.request_body()["request"]
    assert body["recipientUserIds"] == ["a1"] and body["type"] == "email"
    assert body["subject"] == "User Account Deletion Notification" and body["regards"] == "Team"
    assert build_notification("m", "u", None, (), seen, POLICY) is None
    assert build_notification("m", "u", None, ("a1",), AffectedAssets(), POLICY) is None
    assert build_notification("m", "u", None, ("a1",), seen, Policy(notify_admins=False)) is None
