"""``SqlEventQueue.publish_request``'s group commit (issue 15): requests published by several threads while a
transaction is being written are written together; each is answered on its own (a taken request id is its own
``DuplicateRequest``, a request whose transaction fails fails alone), and what was answered as written is there.

The grouping is forced, not timed: the first writer is held inside its transaction until the other threads wait
behind it, so they form one group."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from handover.adapters import sql_queue
from handover.adapters.sql import SqlStore
from handover.adapters.sql_queue import SqlEventQueue, event_queue, request_log
from handover.service.ports import DuplicateRequest, PublishError


def event(mid: str, request_id: str) -> dict[str, Any]:
    return {"eid": "BE_JOB_REQUEST", "mid": mid, "ets": 0,
            "edata": {"action": "ownership-transfer", "organisationId": "org-1", "requestId": request_id,
                      "fromUserProfile": {"userId": "u-a"}, "toUserProfile": {"userId": "u-b"},
                      "assetInformation": {"identifier": f"do_{mid}"}}}


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqlEventQueue]:
    store = SqlStore(f"sqlite:///{tmp_path / 'group.db'}")
    store.init_schema()
    yield SqlEventQueue(store)


def publish_together(queue: SqlEventQueue, first: tuple[str, list[dict[str, Any]]],
                     others: list[tuple[str, list[dict[str, Any]]]],
                     monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, BaseException | None], list[int]]:
    """``first`` published, held in its group's write until ``others`` (each in its own thread) all wait behind
    it; then everything goes on. (by the mid of its first event, each request's error or None, the size of each
    group written)."""
    release = threading.Event()
    groups: list[int] = []
    write_group = SqlEventQueue._write_group

    def held(self: SqlEventQueue, group: Any) -> None:
        groups.append(len(group))
        if len(groups) == 1:
            assert release.wait(30)
        write_group(self, group)

    monkeypatch.setattr(SqlEventQueue, "_write_group", held)
    errors: dict[str, BaseException | None] = {}

    def publish(request_id: str, events: list[dict[str, Any]]) -> None:
        try:
            queue.publish_request(request_id, "u-admin", events)
        except Exception as exc:
            errors[events[0]["mid"]] = exc
        else:
            errors[events[0]["mid"]] = None

    threads = [threading.Thread(target=publish, args=first)]
    threads[0].start()
    while not groups:
        time.sleep(0.005)
    threads += [threading.Thread(target=publish, args=other) for other in others]
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 30
    while len(queue._waiting) < len(others) and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for thread in threads:
        thread.join(30)
    return errors, groups


def rows(queue: SqlEventQueue) -> tuple[set[str], set[str]]:
    """(the request ids of request_log, the mids of event_queue)."""
    with queue._engine.connect() as conn:
        requests = {r for (r,) in conn.execute(sa.select(request_log.c.request_id))}
        mids = {m for (m,) in conn.execute(sa.select(event_queue.c.mid))}
    return requests, mids


def test_a_group_is_one_write_and_a_taken_request_id_fails_alone(queue: SqlEventQueue,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    queue.publish_request("r-old", "u-admin", [event("m-old", "r-old")])
    others = [(f"r-{i}", [event(f"m-{i}", f"r-{i}")]) for i in range(5)]
    others.insert(2, ("r-old", [event("m-again", "r-old")]))  # taken before
    others.append(("r-1", [event("m-1b", "r-1")]))  # taken within the group
    errors, groups = publish_together(queue, ("r-first", [event("m-first", "r-first")]), others, monkeypatch)
    assert groups == [1, len(others)]  # the first alone, then every other one in one group
    assert isinstance(errors.pop("m-again"), DuplicateRequest)
    assert isinstance(errors.pop("m-1b"), DuplicateRequest)
    assert errors == {"m-first": None} | {f"m-{i}": None for i in range(5)}
    requests, mids = rows(queue)
    assert requests == {"r-old", "r-first"} | {f"r-{i}" for i in range(5)}
    assert mids == {"m-old", "m-first"} | {f"m-{i}" for i in range(5)}  # neither m-again nor m-1b


def test_a_request_whose_rows_fail_fails_alone(queue: SqlEventQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    queue.publish_request("r-old", "u-admin", [event("m-taken", "r-old")])
    others = [("r-0", [event("m-0", "r-0")]), ("r-bad", [event("m-taken", "r-bad")]),
              ("r-1", [event("m-1", "r-1")])]  # r-bad's event has a mid already queued: its insert fails
    errors, groups = publish_together(queue, ("r-first", [event("m-first", "r-first")]), others, monkeypatch)
    assert groups == [1, 3]
    assert isinstance(errors.pop("m-taken"), PublishError)
    assert errors == {"m-first": None, "m-0": None, "m-1": None}
    requests, mids = rows(queue)
    assert requests == {"r-old", "r-first", "r-0", "r-1"}
    assert mids == {"m-taken", "m-first", "m-0", "m-1"}


def test_one_alone_is_written_as_before(queue: SqlEventQueue) -> None:
    queue.publish_request("r-1", "u-admin", [event("m-1", "r-1"), event("m-2", "r-1")])
    with pytest.raises(DuplicateRequest):
        queue.publish_request("r-1", "u-admin", [event("m-3", "r-1")])
    assert rows(queue) == ({"r-1"}, {"m-1", "m-2"})
    assert not queue._writing and not queue._waiting
    assert sql_queue.GROUP_REQUESTS > 1
