"""The failed-topic record format and the topic/key routing of events (no broker needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from handover.adapters.kafka import UNKNOWN_TIME, FailedRecord, Record, Topics, route
from handover.adapters.kafka_redrive import record_of_line
from handover.domain.events import routing
from tests.conftest import EXAMPLES

TOPICS = Topics("env.user.ownership.transfer", "env.delete.user", "env.handover.failed")


def test_routing_keys_transfers_by_from_user_and_deletions_by_user() -> None:
    transfer = json.loads((EXAMPLES / "ownership-transfer.json").read_text())
    delete = json.loads((EXAMPLES / "delete-user.json").read_text())
    assert routing(transfer) == ("ownership-transfer", transfer["edata"]["fromUserProfile"]["userId"])
    assert routing(delete) == ("delete-user", delete["edata"]["userId"])
    assert routing({"edata": {"action": "ownership-transfer", "fromUserProfile": {"userId": "  "}}}) == (
        "ownership-transfer",
        None,
    )
    assert routing({"edata": {"action": "merge", "userId": "u1"}}) == ("merge", None)
    assert routing([1, 2]) == (None, None)
    assert routing("text") == (None, None)


def test_route_sends_events_to_their_topic_and_anything_else_to_the_transfer_topic() -> None:
    delete = (EXAMPLES / "delete-user.json").read_bytes()
    user = json.loads(delete)["edata"]["userId"].encode()
    assert route(delete, TOPICS) == Record(TOPICS.delete_user, user, delete)
    transfer = (EXAMPLES / "ownership-transfer.json").read_text()
    assert route(transfer, TOPICS).topic == TOPICS.transfer
    for junk in (b"not json", b"[1]", b'{"edata": {"action": "merge"}}', b"\xff"):
        assert route(junk, TOPICS) == Record(TOPICS.transfer, None, junk)


@pytest.mark.parametrize("event", [b'{"mid": "LP.1", "edata": {}}', b"not json", b"\xff\xfe\x00binary"])
def test_failed_record_round_trips_the_event_byte_for_byte(event: bytes) -> None:
    at = datetime(2024, 4, 10, 12, 5, 50, tzinfo=UTC)
    record = FailedRecord(event, "MALFORMED_EVENT", "why", "LP.1", 3, at, "t", 2, 41)
    doc = json.loads(record.to_json())
    assert doc["reason"] == "MALFORMED_EVENT" and doc["attempts"] == 3 and doc["failedAt"] == at.isoformat()
    assert (doc["topic"], doc["partition"], doc["offset"]) == ("t", 2, 41)
    assert FailedRecord.from_json(record.to_json()) == record


def test_a_failed_record_needs_a_reason_and_an_event() -> None:
    for text in ('{"event": "x"}', '{"reason": "R"}', "[]", '{"reason": "R", "eventBase64": "***"}'):
        with pytest.raises(ValueError):
            FailedRecord.from_json(text)
    lenient = FailedRecord.from_json('{"event": "x", "reason": "R", "attempts": true, "failedAt": "yesterday"}')
    assert (lenient.attempts, lenient.failed_at, lenient.mid) == (1, UNKNOWN_TIME, None)


def test_a_redrive_file_line_is_a_failed_record_or_a_plain_event() -> None:
    record = FailedRecord(b'{"mid": "LP.1"}', "PROCESSING_FAILED", attempts=5)
    assert record_of_line(record.to_json()).event == b'{"mid": "LP.1"}'
    assert record_of_line(record.to_json()).attempts == 5
    plain = (EXAMPLES / "delete-user.json").read_bytes().strip()
    assert record_of_line(plain).event == plain
    assert record_of_line(b"not json").event == b"not json"
