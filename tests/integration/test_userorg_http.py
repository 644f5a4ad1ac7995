"""The userorg adapter over real HTTP, against a local server that answers as userorg does: found, deleted,
not found, 500, slow; and the notification POST."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.adapters.userorg import UserOrgClient, UserOrgEndpoints
from handover.domain.model import User
from handover.domain.notification import Notification
from tests.integration.userorg_server import FakeUserOrg, serve

RAVI = User("u-ravi", "ravi_k", "Ravi", "Kumar", "org-1", ("CONTENT_CREATOR", "BOOK_CREATOR"), False)
ANN = User("u-ann", "ann_lee", "Ann", "Lee", "org-1", ("CONTENT_CREATOR",), True)
TIMEOUT = 0.3


@pytest.fixture
def fake() -> FakeUserOrg:
    userorg = FakeUserOrg(slow_seconds=1.0)
    userorg.add(RAVI, ANN, User("u-flaky", "f", "F", "", "org-1", (), False))
    userorg.behaviours.update({"u-boom": "error", "u-slow": "slow", "u-flaky": "flaky", "u-garbage": "garbage"})
    return userorg


@pytest.fixture
def client(fake: FakeUserOrg) -> Iterator[UserOrgClient]:
    with serve(fake) as base:
        c = UserOrgClient(UserOrgEndpoints(base), timeout=TIMEOUT, attempts=3, max_wait=0.05)
        yield c
        c.close()


def test_found_user_has_roles_of_its_root_org(client: UserOrgClient, fake: FakeUserOrg) -> None:
    assert client.get_user("u-ravi") == RAVI
    assert [(m, p) for m, p, _ in fake.requests] == [("GET", "/userorg/private/user/v1/read/u-ravi")]


def test_deleted_user_is_read_through_the_search(client: UserOrgClient, fake: FakeUserOrg) -> None:
    user = client.get_user("u-ann")
    assert user == ANN  # names, root org and roles kept; isDeleted true
    assert [(m, p) for m, p, _ in fake.requests] == [
        ("GET", "/userorg/private/user/v1/read/u-ann"),
        ("POST", "/userorg/private/user/v1/search"),
    ]
    assert fake.requests[1][2]["request"]["filters"] == {"id": "u-ann"}


def test_deleted_user_missing_from_the_search_is_a_store_error(client: UserOrgClient, fake: FakeUserOrg) -> None:
    fake.search_misses.add("u-ann")
    with pytest.raises(SunbirdStoreError, match="userorg: searching deleted user 'u-ann'"):
        client.get_user("u-ann")


def test_unknown_user_is_none(client: UserOrgClient, fake: FakeUserOrg) -> None:
    assert client.get_user("u-nobody") is None
    assert fake.count("GET", "u-nobody") == 1


def test_hostile_id_stays_one_path_segment(client: UserOrgClient, fake: FakeUserOrg) -> None:
    assert client.get_user("../../v2/notification?x=1") is None
    assert fake.requests[-1][1] == "/userorg/private/user/v1/read/..%2F..%2Fv2%2Fnotification%3Fx%3D1"
    assert fake.notifications == []


def test_server_error_is_retried_then_named(client: UserOrgClient, fake: FakeUserOrg) -> None:
    with pytest.raises(SunbirdStoreError, match=r"userorg: reading user 'u-boom': _Status: HTTP 500") as info:
        client.get_user("u-boom")
    assert info.value.store == "userorg"
    assert fake.count("GET", "u-boom") == 3


def test_one_server_error_heals_with_a_retry(client: UserOrgClient, fake: FakeUserOrg) -> None:
    user = client.get_user("u-flaky")
    assert user is not None and user.id == "u-flaky"
    assert fake.count("GET", "u-flaky") == 2


def test_slow_answer_times_out(client: UserOrgClient, fake: FakeUserOrg) -> None:
    started = time.monotonic()
    with pytest.raises(SunbirdStoreError, match="userorg: reading user 'u-slow': ReadTimeout"):
        client.get_user("u-slow")
    elapsed = time.monotonic() - started
    assert fake.count("GET", "u-slow") == 3
    assert elapsed < 3 * TIMEOUT + 1.0  # three timed-out attempts and short backoffs, not three slow answers


def test_answer_that_is_not_json_is_a_store_error(client: UserOrgClient) -> None:
    with pytest.raises(SunbirdStoreError, match="not JSON"):
        client.get_user("u-garbage")


def test_nothing_listening_is_a_store_error() -> None:
    c = UserOrgClient(UserOrgEndpoints("http://127.0.0.1:9"), timeout=TIMEOUT, attempts=2, max_wait=0.01)
    with pytest.raises(SunbirdStoreError, match="userorg: reading user 'u-1': ConnectError"):
        c.get_user("u-1")
    c.close()


NOTE = Notification(
    "LP.1",
    ("u-admin", "u-admin2"),
    {"do_q1": "Live"},
    "User Account Deletion Notification",
    "<p>The account of user <b>ann &lt;script&gt;</b> has been deleted.</p>",
    "Team",
)


def test_notification_is_posted_once_with_the_serialized_body(client: UserOrgClient, fake: FakeUserOrg) -> None:
    client.send_notification(NOTE)
    assert fake.notifications == [NOTE.request_body()]
    method, path, body = fake.requests[0]
    assert (method, path) == ("POST", "/userorg/v2/notification")
    assert json.dumps(body) == json.dumps(NOTE.request_body())


def test_failed_notification_is_not_retried(client: UserOrgClient, fake: FakeUserOrg) -> None:
    fake.notification_status = 500  # the email may have gone: sending again could send it twice
    with pytest.raises(SunbirdStoreError, match=r"userorg: sending the notification of LP\.1: _Status: HTTP 500"):
        client.send_notification(NOTE)
    assert len(fake.notifications) == 1


def test_unavailable_notification_service_is_retried(client: UserOrgClient, fake: FakeUserOrg) -> None:
    fake.notification_status = 503
    with pytest.raises(SunbirdStoreError, match="HTTP 503"):
        client.send_notification(NOTE)
    assert len(fake.notifications) == 3


def test_organisation_read_tells_known_from_unknown(client: UserOrgClient, fake: FakeUserOrg) -> None:
    fake.organisations.add("org-9")
    assert client.organisation_exists("org-1") is True  # a root organisation of a user
    assert client.organisation_exists("org-9") is True
    assert client.organisation_exists("org-nope") is False  # userorg's 404
    method, path, body = fake.requests[-1]
    assert (method, path, body) == ("POST", "/userorg/v1/org/read", {"request": {"organisationId": "org-nope"}})


def test_organisation_read_failure_is_a_store_error_not_a_guess(client: UserOrgClient, fake: FakeUserOrg) -> None:
    fake.org_read_status = 500
    with pytest.raises(SunbirdStoreError, match=r"reading organisation 'org-1'.*HTTP 500"):
        client.organisation_exists("org-1")
    assert fake.count("POST", "/v1/org/read") == 3  # retried
    nothing = UserOrgClient(UserOrgEndpoints("http://127.0.0.1:9"), timeout=TIMEOUT, attempts=1)
    with pytest.raises(SunbirdStoreError, match="reading organisation"):
        nothing.organisation_exists("org-1")


def test_api_read_success_count_counts_reads_answered_200(client: UserOrgClient, fake: FakeUserOrg) -> None:
    """Lern's ``api-read-success-count``: one per user read answered 200 (``Event.validateUser``)."""
    from prometheus_client import REGISTRY

    def count() -> float:
        return REGISTRY.get_sample_value("api_read_success_count_total") or 0.0

    before = count()
    client.get_user("u-ravi")  # 200
    client.get_user("u-flaky")  # a 500, then a 200: one read answered 200
    client.get_user("u-ann")  # 400 (deleted): read through the search, not counted
    client.get_user("u-nobody")  # 404
    assert count() - before == 2
