"""The Sunbird store's orchestration (``handover.adapters.sunbird``): the real engine, the real userorg adapter
over HTTP (a local server answering as userorg does) and in-memory stand-ins for the three database gateways
(see ``sunbird_standins``). What is checked here: the shared examples give the expected report and records,
the order of writes, convergence after a crash at each step, one email per mid, previews write nothing.
Nothing here claims the queries work on real servers: that is ``tests/sunbird/`` on the test servers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handover.adapters.sunbird import SunbirdOutbox, SunbirdStore
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.config import load_settings
from handover.domain.model import CourseBatch, asset_from_json, user_from_json
from handover.domain.notification import Notification
from handover.service.engine import Engine, EngineSettings
from tests.conftest import EXAMPLES
from tests.integration.sunbird_standins import CassandraStandIn, GraphStandIn, IndexStandIn, Journal
from tests.integration.userorg_server import FakeUserOrg, serve
from tests.streams import group_events, group_fixture

FIXTURE = json.loads((EXAMPLES / "fixture.json").read_text())
EXPECTED_DUMP = json.loads((EXAMPLES / "expected_dump.json").read_text())
EVENTS = (EXAMPLES / "events.jsonl").read_bytes().splitlines()
EXPECTED_REPORT = [json.loads(line) for line in (EXAMPLES / "expected_report.jsonl").read_text().splitlines()]


@dataclass
class Rig:
    store: SunbirdStore
    journal: Journal
    cassandra: CassandraStandIn
    index: IndexStandIn
    graph: GraphStandIn
    userorg: FakeUserOrg

    def engine(self, page_size: int = 2, factory: Any = None) -> Engine:
        return Engine(factory or self.store, self.store_policy, EngineSettings(page_size=page_size))

    store_policy = load_settings(None, environ={}).policy()

    def dump(self) -> dict[str, Any]:
        return {name: list(records) for name, records in self.store.dump_sections()}


@contextmanager
def new_rig() -> Iterator[Rig]:
    userorg = FakeUserOrg()
    userorg.add(*(user_from_json(u) for u in FIXTURE["users"]))
    with serve(userorg) as base:
        env = {"HANDOVER_USERORG_SERVICE_BASE_URL": base, "HANDOVER_HTTP_TIMEOUT_SECONDS": "2"}
        store = SunbirdStore(load_settings(None, environ=env))
        journal = Journal()
        store.cassandra = CassandraStandIn(journal)  # type: ignore[assignment]
        store.index = IndexStandIn(journal)  # type: ignore[assignment]
        store.graph = GraphStandIn(journal)  # type: ignore[assignment]
        store.load(FIXTURE)
        yield Rig(store, journal, store.cassandra, store.index, store.graph, userorg)  # type: ignore[arg-type]
        store.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    with new_rig() as made:
        yield made


def report(engine: Engine, lines: list[bytes]) -> list[dict[str, object]]:
    return [engine.process(line).report(n, with_mid=False) for n, line in enumerate(lines, start=1)]


def expected_records() -> dict[str, Any]:
    return {**EXPECTED_DUMP, "users": []}  # users stay in userorg


def assert_index_matches_rows(rig: Rig) -> None:
    for key, row in rig.cassandra.batches.items():
        doc = rig.index.docs[row.batchid]
        assert (doc["createdBy"], doc["mentors"]) == (row.createdby, list(row.mentors)), key


def test_examples_give_the_expected_report_records_and_email(rig: Rig) -> None:
    assert report(rig.engine(), EVENTS) == EXPECTED_REPORT
    assert rig.dump() == expected_records()
    assert_index_matches_rows(rig)
    assert len(rig.userorg.notifications) == 1
    body = rig.userorg.notifications[0]["request"]
    assert body["recipientUserIds"] == ["u-admin"] and body["subject"] == "User Account Deletion Notification"
    assert "do_q1" in body["body"] and "do_q2" not in body["body"]
    # the deleted from-user (u-ann) was read through the search, and the transfer was applied
    assert rig.userorg.count("POST", "/private/user/v1/search") >= 1


def test_replaying_everything_again_changes_nothing(rig: Rig) -> None:
    engine = rig.engine()
    report(engine, EVENTS)
    writes = len(rig.journal.entries)
    again = report(engine, EVENTS)
    assert [r["outcome"] for r in again] == ["duplicate"] * 5 + ["rejected"]  # the line without a mid
    assert rig.journal.entries[writes:] == [] and len(rig.userorg.notifications) == 1


def test_write_order_audit_then_records_then_email_then_ledger(rig: Rig) -> None:
    engine = rig.engine(page_size=1000)
    engine.process(EVENTS[0])  # delete-user
    assert rig.journal.operations() == [
        "cassandra.audit",
        "neo4j.write",
        "cassandra.notification.claim",
        "cassandra.notification.sent",
        "cassandra.ledger",
    ]
    rig.journal.entries.clear()
    engine.process(EVENTS[1])  # transfer everything
    assert rig.journal.operations() == [
        "cassandra.audit",  # the audit rows of the batches and of the assets, held together, first
        "cassandra.course_batch",  # the source of truth first
        "elasticsearch.update",  # then exactly the written fields of the documents
        "neo4j.write",
        "cassandra.ledger",
    ]
    assert rig.journal.entries[2] == ("elasticsearch.update", ["b-101", "b-102"])


@pytest.mark.parametrize(
    "operation",
    ["elasticsearch.update", "cassandra.course_batch", "neo4j.write", "cassandra.audit", "cassandra.ledger"],
)
def test_a_crash_at_any_write_converges_when_the_event_is_delivered_again(rig: Rig, operation: str) -> None:
    engine = rig.engine()
    engine.process(EVENTS[0])
    rig.journal.fail(operation)
    with pytest.raises(SunbirdStoreError, match="injected failure"):
        engine.process(EVENTS[1])
    assert rig.cassandra.ledger_get("LP.1712750750956.0001") is None
    outcome = engine.process(EVENTS[1])  # redelivered
    assert outcome.outcome == "applied"
    for line in EVENTS[2:]:
        engine.process(line)
    assert rig.dump() == expected_records()
    assert_index_matches_rows(rig)
    audited = {(k[1], k[2], k[3]) for k in rig.cassandra.audit if k[0] == "LP.1712750750956.0001"}
    assert ("course_batch", "do_course1/b-101", "createdby") in audited  # no change without its audit row


def test_a_document_left_behind_is_resynced_from_its_row(rig: Rig) -> None:
    rig.index.docs["b-101"]["createdBy"] = "u-ann"  # Cassandra already says u-ravi: an earlier crash
    rig.cassandra.batches[("do_course1", "b-101")] = CourseBatch(
        "do_course1", "b-101", "Algebra, spring", 1, "u-ravi", ("u-ravi", "u-meera")
    )
    rig.engine().process(EVENTS[1])
    assert rig.index.docs["b-101"]["createdBy"] == "u-ravi"
    assert_index_matches_rows(rig)


def test_email_goes_once_when_the_ledger_write_fails(rig: Rig) -> None:
    engine = rig.engine()
    rig.journal.fail("cassandra.ledger")
    with pytest.raises(SunbirdStoreError):
        engine.process(EVENTS[0])
    assert len(rig.userorg.notifications) == 1
    assert engine.process(EVENTS[0]).outcome == "applied"
    assert len(rig.userorg.notifications) == 1
    assert rig.dump()["notifications"] == EXPECTED_DUMP["notifications"]


def test_failed_email_is_released_and_sent_by_the_next_attempt(rig: Rig) -> None:
    engine = rig.engine()
    rig.userorg.notification_status = 500
    with pytest.raises(SunbirdStoreError, match="userorg: sending the notification"):
        engine.process(EVENTS[0])
    assert rig.dump()["notifications"] == []  # claimed, not sent
    rig.userorg.notification_status = 200
    assert engine.process(EVENTS[0]).outcome == "applied"
    assert len(rig.userorg.notifications) == 2  # the failed POST and the one that went through
    assert rig.dump()["notifications"] == EXPECTED_DUMP["notifications"]


def test_a_live_claim_blocks_and_a_stale_one_is_taken_over(rig: Rig) -> None:
    note = Notification("LP.x", ("u-admin",), {"do_q1": "Live"}, "S", "<p>b</p>", "Team")
    now = datetime(2024, 4, 10, 12, 0, tzinfo=UTC)
    rig.store.clock = lambda: now
    rig.cassandra.notification_claim(note, uuid.uuid4(), now)  # another worker, still sending
    with rig.store() as uow:
        outbox = SunbirdOutbox(uow)
        with pytest.raises(SunbirdStoreError, match="being sent by another worker"):
            outbox.send_once(note)
        rig.store.clock = lambda: now + timedelta(minutes=11)  # that worker died: its lease ran out
        assert outbox.send_once(note) is True
        assert outbox.send_once(note) is False
    assert len(rig.userorg.notifications) == 1


def test_preview_reports_the_same_and_writes_nothing(rig: Rig) -> None:
    with rig.store.preview() as factory:
        assert report(rig.engine(factory=factory), EVENTS) == EXPECTED_REPORT
    assert rig.journal.entries == []
    assert rig.userorg.notifications == []
    assert rig.dump()["course_batches"] == FIXTURE["course_batches"]


def test_undo_of_the_transfer_puts_back_the_records(rig: Rig) -> None:
    undo = pytest.importorskip("handover.service.undo")
    engine = rig.engine()
    engine.process(EVENTS[0])
    before = rig.dump()
    engine.process(EVENTS[1])
    result = undo.Undoer(rig.store, page_size=3).undo_event("LP.1712750750956.0001")
    assert result.conflicts == 0 and result.reverted > 0
    assert rig.dump() == before
    assert_index_matches_rows(rig)


def single_asset_transfers(rig: Rig, groups: Sequence[str]) -> list[bytes]:
    """For each group of ``tests.streams``: its users in userorg, its nodes in the graph, and its transfer of one
    asset (a<g> -> b<g>)."""
    events = []
    for g in groups:
        fixture = group_fixture(g)
        rig.userorg.add(*(user_from_json(u) for u in fixture["users"]))
        rig.graph.upsert([asset_from_json(a) for a in fixture["assets"]])
        events.append(json.dumps(group_events(g)[0]).encode())
    return events


def test_a_micro_batch_writes_the_changes_of_independent_events_together(rig: Rig) -> None:
    events = single_asset_transfers(rig, ["000001", "000002", "000003"])
    outcomes = rig.engine().process_batch(events)
    assert [o.changed_assets for o in outcomes] == [2, 2, 2]  # each asset and its Image node
    assert rig.journal.operations() == ["cassandra.audit", "neo4j.write"] + ["cassandra.ledger"] * 3
    assert rig.journal.entries[1] == ("neo4j.write", ["q000001", "q000001.img", "q000002", "q000002.img",
                                                      "q000003", "q000003.img"])


def test_a_read_that_a_held_write_changes_comes_after_it(rig: Rig) -> None:
    [there] = single_asset_transfers(rig, ["000001"])
    back = json.loads(there)  # the same asset back, b -> a, in the same micro-batch: it must see the first write
    back["mid"] += ".back"
    edata = back["edata"]
    edata["fromUserProfile"]["userId"], edata["toUserProfile"]["userId"] = "b000001", "a000001"
    outcomes = rig.engine().process_batch([there, json.dumps(back).encode()])
    assert [(o.outcome, o.changed_assets) for o in outcomes] == [("applied", 2), ("applied", 2)]
    assert rig.journal.operations() == ["cassandra.audit", "neo4j.write"] * 2 + ["cassandra.ledger"] * 2
    assert rig.graph.nodes["q000001"]["createdBy"] == "a000001"


def group_stream(rig: Rig, g: str) -> list[bytes]:
    """Group ``g`` of ``tests.streams`` (its users, batches and nodes set up): a single-asset transfer, a transfer
    of everything, a clean-up and a redelivery."""
    fixture = group_fixture(g)
    rig.userorg.add(*(user_from_json(u) for u in fixture["users"]))
    rig.store.load({"course_batches": fixture["course_batches"], "assets": fixture["assets"]})
    return [json.dumps(e).encode() for e in group_events(g)]


def chained(rig: Rig, g: str) -> list[bytes]:
    """Group ``g``'s transfer of everything a -> b, then everything b -> a, then its clean-up: the second pages
    nodes the first gave b (not among those read ahead)."""
    events = group_stream(rig, g)
    back = json.loads(events[1])
    back["mid"] += ".back"
    back["edata"]["fromUserProfile"]["userId"], back["edata"]["toUserProfile"]["userId"] = f"b{g}", f"a{g}"
    return [events[1], json.dumps(back).encode(), events[2]]


def audit_rows(rig: Rig) -> dict[tuple[str, str, str, str], tuple[Any, ...]]:
    return {k: (r.request_id, r.change.before, r.change.after) for k, r in rig.cassandra.audit.items()}


@pytest.mark.parametrize("page_size", [2, 1000])  # 2: a user's batches fill the first page (searched again)
@pytest.mark.parametrize("stream", [group_stream, chained])
def test_a_micro_batch_gives_what_its_events_give_one_at_a_time(
    stream: Callable[[Rig, str], list[bytes]], page_size: int
) -> None:
    with new_rig() as one_by_one, new_rig() as batched:
        events = stream(one_by_one, "000001")
        assert stream(batched, "000001") == events
        expected = [one_by_one.engine(page_size).process(e).report(with_mid=True) for e in events]
        got = [o.report(with_mid=True) for o in batched.engine(page_size).process_batch(events)]
        assert got == expected
        assert batched.dump() == one_by_one.dump()
        assert audit_rows(batched) == audit_rows(one_by_one)
        assert_index_matches_rows(batched)
        assert len(batched.userorg.notifications) == len(one_by_one.userorg.notifications) == 1


def test_a_micro_batch_of_a_group_writes_each_kind_once(rig: Rig) -> None:
    events = group_stream(rig, "000001")
    outcomes = rig.engine().process_batch(events)
    assert [o.outcome for o in outcomes] == ["applied", "applied", "applied", "duplicate"]
    operations = rig.journal.operations()
    for kind in ("cassandra.audit", "cassandra.course_batch", "elasticsearch.update", "neo4j.write"):
        assert operations.count(kind) == 1, operations
    assert operations.index("cassandra.audit") < operations.index("cassandra.course_batch")


def test_a_fixture_read_as_a_stream_loads_as_the_decoded_one() -> None:
    """``handover load`` hands the store a ``JsonObjectStream``: the same records written, the same counts; a bad
    record anywhere writes nothing (the records are all read before the first write)."""
    import io

    from handover.service.json_stream import load_fixture

    changed = {"assets": [{**a, "creator": "someone else"} for a in FIXTURE["assets"]], "notifications": [],
               "course_batches": [{**b, "name": "renamed"} for b in FIXTURE["course_batches"]],
               "users": FIXTURE["users"]}  # the keys in another order than the fixture's
    with new_rig() as decoded, new_rig() as streamed:
        counts = load_fixture(streamed.store.load, io.BytesIO(json.dumps(changed).encode()))
        assert counts == decoded.store.load(changed)
        assert streamed.dump() == decoded.dump()
        assert {a["creator"] for a in streamed.dump()["assets"]} == {"someone else"}
        writes = len(streamed.journal.entries)
        bad = {"course_batches": FIXTURE["course_batches"], "assets": [*FIXTURE["assets"], {"x": 1}]}
        with pytest.raises(ValueError, match="asset needs string 'identifier'"):
            load_fixture(streamed.store.load, io.BytesIO(json.dumps(bad).encode()))
        assert len(streamed.journal.entries) == writes
