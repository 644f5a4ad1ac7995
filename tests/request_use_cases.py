"""The request use cases (``service.requests.TransferRequests``) run the same way on every store: the tests of
the SQL stores (``tests/integration/test_request_use_cases.py``) and of the Sunbird store
(``tests/sunbird/test_request_use_cases.py``) call ``exercise`` with the store's service and a way to process
what was published (the embedded queue's worker; on Sunbird, the engine over the events the sink was given, as the
Kafka worker would take them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from handover.domain.events import Reason
from handover.domain.transfer_request import CANNOT_TRANSFER_OWNERSHIP, SUBMITTED
from handover.service.ports import RequestSummary
from handover.service.requests import Conflict, Forbidden, Invalid, NotFound, TransferRequests
from tests.e2e.api_support import BODY, body
from tests.e2e.console_support import ravi_to_meera


class RecordingSink:
    """An ``EventSink`` that keeps what it is given, for a test to hand to the engine (a Kafka topic's part)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None:
        self.events.extend(dict(e) for e in events)

    def take(self) -> list[dict[str, Any]]:
        taken, self.events = self.events, []
        return taken


def ids(found: list[RequestSummary] | None) -> list[str]:
    assert found is not None, "the store keeps a request history"
    return [s.request_id for s in found]


def exercise(service: TransferRequests, process: Callable[[], int], delete_meera: Callable[[], None]) -> None:
    """Preview, submit (and its refusals), status and its changed-records pages, history with its filters and
    paging, undo (and its refusals), on the store behind ``service``. ``delete_meera`` marks the to-user of the
    second request deleted in the directory after it was accepted, so that processing rejects it."""
    preview = service.preview(BODY, "p-1")
    assert preview["changed"]["course_batches"] > 0 and preview["changed"]["assets"] > 0
    with pytest.raises(NotFound):
        service.status("p-1", None)  # a preview records and publishes nothing
    people(service, preview)

    assert service.submit(BODY, "r1") == {"status": SUBMITTED, "requestId": "r1", "events": 1}
    with pytest.raises(Conflict, match="r1 was used by an earlier request"):
        service.submit(BODY, "r1")
    with pytest.raises(Invalid) as bad:
        service.submit(body(fromUser={"userId": "u-ravi", "roles": []}), "r-bad")
    assert bad.value.code is not None and bad.value.code.startswith("UOS_UOWNTRANS")
    with pytest.raises(NotFound):
        service.status("r-bad", None)
    service.submit(ravi_to_meera(), "r2")
    delete_meera()

    (pending,) = service.status("r1", None)["events"]
    assert pending["outcome"] == "pending" and pending["changes"] == []
    assert [s.outcomes for s in service.history(user=None, outcome=None, action_by=None, limit=5, offset=0) or []] == [
        {"pending": 1}, {"pending": 1}]
    with pytest.raises(Conflict, match="not processed yet"):
        service.undo("r1", "u-admin")

    assert process() == 2
    status = service.status("r1", "u-admin")
    (event,) = status["events"]
    assert event["outcome"] == "applied" and event["undone"] is False
    assert event["changed"]["course_batches"] > 0 and len(event["changes"]) > 1
    with pytest.raises(Forbidden):
        service.status("r1", "u-ravi")
    with pytest.raises(NotFound):
        service.status("r-none", None)
    (rejected,) = service.status("r2", None)["events"]
    assert rejected["outcome"] == "rejected" and rejected["reason"] == Reason.USER_DELETED.value

    first = service.changes("r1", None, event["mid"], None, 1)
    assert len(first["changes"]) == 1 and first["nextCursor"]
    second = service.changes("r1", None, event["mid"], first["nextCursor"], 1)
    assert len(second["changes"]) == 1 and second["changes"] != first["changes"]
    with pytest.raises(NotFound):
        service.changes("r1", None, "LP.nope", None, 1)
    with pytest.raises(Invalid):
        service.changes("r1", None, event["mid"], "not a cursor", 1)

    def history(**filters: Any) -> list[str]:
        page = {"user": None, "outcome": None, "action_by": None, "limit": 25, "offset": 0, **filters}
        return ids(service.history(**page))

    assert history() == ["r2", "r1"]
    assert history(limit=1) == ["r2"]
    assert history(limit=1, offset=1) == ["r1"]
    assert history(offset=2) == []
    assert history(user="u-ann") == ["r1"]  # from-user of r1
    assert history(user="u-meera") == ["r2"]  # to-user of r2
    assert history(user="u-admin") == ["r2", "r1"]
    assert history(user="u-nobody") == []
    assert history(outcome="applied") == ["r1"]
    assert history(outcome="rejected") == ["r2"]
    assert history(outcome="rejected", offset=1) == []
    assert history(action_by="u-admin") == ["r2", "r1"]
    assert history(action_by="u-admin2") == []
    one = service.summary("r1")
    assert one is not None
    assert (one.action_by, one.organisation_id, one.from_user, one.to_user) == ("u-admin", "org-1", "u-ann", "u-ravi")
    assert one.outcomes == {"applied": 1} and one.reasons == []
    assert one.title == "u-ann → u-ravi: everything"
    two = service.summary("r2")
    assert two is not None and two.outcomes == {"rejected": 1} and two.reasons == [Reason.USER_DELETED.value]
    assert service.summary("r-none") is None

    with pytest.raises(Invalid) as refused:
        service.undo("r1", "u-ravi")  # not ORG_ADMIN of the from-user's organisation
    assert refused.value.code == CANNOT_TRANSFER_OWNERSHIP
    with pytest.raises(NotFound):
        service.undo("r-none", "u-admin")
    with pytest.raises(Invalid):
        service.undo("r1\x00", "u-admin")
    undone = service.undo("r1", "u-admin")
    assert undone["requestId"] == "r1" and undone["reverted"] > 0 and undone["conflicts"] == 0
    (after,) = service.status("r1", None)["events"]
    assert after["undone"] is True
    # undone shows as such in the history, with its own filter; a second undo reverts nothing and says so
    undone_summary = service.summary("r1")
    assert undone_summary is not None and undone_summary.outcomes == {"undone": 1}
    assert history(outcome="undone") == ["r1"] and history(outcome="applied") == []
    again = service.undo("r1", "u-admin")
    assert (again["reverted"], again["conflicts"], again["alreadyUndone"]) == (0, 0, True)
    assert again["message"] == "already undone, 0 reverted"


def people(service: TransferRequests, preview: dict[str, Any]) -> None:
    """Issue 14 on every store: what stays with the old owner, the form's problems all at once in its words, names
    beside ids from the user directory, and the user look-up within the organisation."""
    assert (preview["nothingChanges"], preview["allRejected"], preview["unknownAssets"]) == (False, False, [])
    assert preview["stays"] == {"course_batches": {"completed": 1}, "assets": {"Content": 1}}
    unknown = service.preview(body(objects=[{"identifier": "do_nope"}]), "p-2")
    assert (unknown["nothingChanges"], unknown["unknownAssets"], unknown["stays"]) == (True, ["do_nope"], None), unknown
    assert unknown["whyNothing"] == [Reason.ASSET_NOT_FOUND.value]

    def problems(**fields: Any) -> dict[str, str]:
        form = {"organisation_id": "org-1", "action_by": "u-admin", "from_user": "u-ann", "to_user": "u-ravi",
                "objects": [], "context": "User Deletion", **fields}
        return service.form_problems(**form)

    assert problems() == {}
    assert problems(organisation_id="", action_by="", from_user="", to_user="") == {
        "organisationId": "Enter the organisation ID, for example org-1.", "actionBy": "Enter the admin's user ID.",
        "fromUser": "Enter the from-user's user ID.", "toUser": "Enter the to-user's user ID."}
    assert problems(action_by="u-meera", from_user="u-nobody", to_user="u-zoe") == {
        "actionBy": "u-meera is not an admin of org-1.", "fromUser": "No user u-nobody in org-1.",
        "toUser": "No user u-zoe in org-1."}
    assert problems(from_user="u-ravi", to_user="u-ann") == {"toUser": "u-ann is deleted: choose a user who is not."}
    # an organisation's users are checked for its own people only: no probing of org-2's users from org-1
    assert problems(organisation_id="org-2", from_user="u-zoe", to_user="u-kim") == problems(
        organisation_id="org-2", from_user="u-nobody", to_user="u-nobody2") == {
        "actionBy": "No user u-admin in org-2."}

    assert service.names(["u-ann", "u-ravi", "u-nobody", ""]) == {"u-ann": "Ann Lee (u-ann, deleted)",
                                                                   "u-ravi": "Ravi Kumar (u-ravi)"}
    records = service.record_names([("course_batch", "do_course1/b-101"), ("asset", "do_q1"), ("asset", "do_nope")])
    assert records[("course_batch", "do_course1/b-101")] == "Algebra, spring", records
    assert records[("asset", "do_q1")] in ("Question", "Question “Name of do_q1”"), records  # Sunbird's has a name
    assert ("asset", "do_nope") not in records, records
    found, by_name = service.find_users("u-admin", "org-1", "u-ravi")
    assert [u.id for u in found] == ["u-ravi"] and by_name
    found, _ = service.find_users("u-admin", "org-1", "KUMAR")
    assert [u.id for u in found] == ["u-ravi"]
    some = service.find_users("u-admin", "org-1", "a")[0]
    assert [u.id for u in some] == ["u-admin", "u-meera", "u-ravi"]  # Ann Lee is deleted: not offered
    assert service.find_users("u-admin", "org-1", "u-zoe")[0] == []  # another organisation's user is not found
    with pytest.raises(Invalid):
        service.find_users("u-admin", "", "ravi")
    with pytest.raises(Forbidden):
        service.find_users("u-admin", "org-2", "zoe")  # an admin looks up the users of their organisation only
