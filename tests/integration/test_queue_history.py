"""The request history and failed events of the embedded store (``adapters.sql_queue``), as the admin console
reads them: newest first, filters by user and outcome, a failure made for real by the database, and its redrive
through the queue worker."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import QueueWorker, SqlEventQueue, SqlRequestLog, request_summary
from handover.bootstrap import ApiParts
from tests.e2e.api_support import BODY, TRANSFER, make_client
from tests.e2e.console_support import ORG2, delete_meera, ravi_to_meera, zoe_to_kim
from tests.store_faults import asset_writes_refused


class Queue:
    def __init__(self, store_url: str) -> None:
        self.http, parts = make_client(store_url, {"HANDOVER_MAX_ATTEMPTS": "2"})
        self.parts: ApiParts = parts
        self.store = SqlStore(store_url)
        self.store.load(ORG2)
        assert isinstance(parts.requests, SqlRequestLog) and isinstance(parts.worker, QueueWorker)
        assert isinstance(parts.sink, SqlEventQueue)
        self.log, self.worker, self.queue = parts.requests, parts.worker, parts.sink

    def submit(self, request_id: str, doc: dict[str, Any]) -> str:
        response = self.http.post(TRANSFER, json=doc, headers={"X-Request-ID": request_id})
        assert response.status_code == 200, response.text
        return request_id


@pytest.fixture
def q(store_url: str) -> Queue:
    return Queue(store_url)


def ids(summaries: list[Any]) -> list[str]:
    return [s.request_id for s in summaries]


def test_history_is_newest_first_and_filters_by_user_and_outcome(q: Queue) -> None:
    q.submit("r1", BODY)  # u-admin: u-ann -> u-ravi, applied
    q.submit("r2", ravi_to_meera())  # u-admin: u-ravi -> u-meera, rejected USER_DELETED (deleted meanwhile)
    q.submit("r3", zoe_to_kim())  # u-admin2: u-zoe -> u-kim, applied
    delete_meera(q.store)
    assert [s.outcomes for s in q.log.history()] == [{"pending": 1}] * 3
    assert q.worker.drain() == 3

    assert ids(q.log.history()) == ["r3", "r2", "r1"]
    assert ids(q.log.history(limit=2)) == ["r3", "r2"]
    assert ids(q.log.history(limit=2, offset=2)) == ["r1"]
    assert ids(q.log.history(user="u-ravi")) == ["r2", "r1"]  # to-user of r1, from-user of r2
    assert ids(q.log.history(user="u-meera")) == ["r2"]
    assert ids(q.log.history(user="u-admin2")) == ["r3"]
    assert ids(q.log.history(user="u-nobody")) == []
    assert ids(q.log.history(outcome="applied")) == ["r3", "r1"]
    assert ids(q.log.history(outcome="rejected", user="u-ravi")) == ["r2"]
    assert ids(q.log.history(action_by="u-admin")) == ["r2", "r1"]

    r2 = q.log.summary("r2")
    assert r2 is not None
    assert (r2.action_by, r2.organisation_id, r2.from_user, r2.to_user) == ("u-admin", "org-1", "u-ravi", "u-meera")
    assert (r2.outcomes, r2.reasons, r2.events) == ({"rejected": 1}, ["USER_DELETED"], 1)
    assert q.log.summary("nope") is None
    counts = q.log.processed_counts()
    assert ("ownership-transfer", "rejected", "USER_DELETED", 1) in counts
    assert ("ownership-transfer", "applied", None, 2) in counts


def test_a_failed_event_is_listed_with_its_error_and_redriven_through_the_worker(q: Queue) -> None:
    with asset_writes_refused(q.store, "u-zoe"):
        q.submit("r-fail", zoe_to_kim())
        assert q.queue.oldest_pending_at() is not None
        q.worker.drain()  # two attempts, both refused by the database
        (failed,) = q.queue.failed()
        assert (failed.request_id, failed.action, failed.organisation_id) == ("r-fail", "ownership-transfer", "org-2")
        assert (failed.from_user, failed.to_user, failed.attempts) == ("u-zoe", "u-kim", 2)
        assert "refused by a test trigger" in failed.error
        assert q.queue.failed(request_id="other") == q.queue.failed(mid="other") == []
        assert q.queue.failed(mid=failed.mid) == [failed]
        (summary,) = q.log.history(outcome="failed")
        assert (summary.request_id, summary.reasons) == ("r-fail", ["PROCESSING_FAILED"])
    assert q.queue.oldest_pending_at() is None

    assert q.queue.redrive(failed.mid) is True
    assert q.queue.redrive(failed.mid) is False  # pending now, not failed
    assert q.queue.redrive("no-such-mid") is False
    assert q.queue.wakeup.is_set()
    assert q.worker.drain() == 1
    assert q.queue.failed() == []
    assert q.log.history(outcome="failed") == []
    (summary,) = q.log.history(outcome="applied")
    assert summary.outcomes == {"applied": 1}
    assets = {a["identifier"]: a for name, rows in q.store.dump_sections() if name == "assets" for a in rows}
    assert assets["do_z1"]["createdBy"] == "u-kim"


def test_forgetting_a_request_forgets_its_summary(q: Queue) -> None:
    q.log.record("r-gone", "u-admin", [{**BODY, "mid": "m-gone", "edata": {"organisationId": "org-1"}}])
    assert ids(q.log.history()) == ["r-gone"]
    q.log.forget("r-gone", ["m-gone"])
    assert q.log.history() == []
    with q.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(request_summary)).scalar_one() == 0
