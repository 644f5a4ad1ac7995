"""In-memory stand-ins for the three database gateways of the Sunbird store (same methods as
``CassandraGateway``, ``CourseBatchIndex`` and ``AssetGraph``), used to test the store's orchestration: the
order of writes, drift repair, the notification claim, convergence after a crash, previews.

They are NOT evidence that the adapters work against Cassandra, Elasticsearch or Neo4j: the queries they stand
in for are checked as text in ``tests/unit/test_sunbird_queries.py`` and against real servers only in
``tests/sunbird/`` (real test servers). Every write is appended to a shared journal; ``fail`` injects a store failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from handover.adapters.cassandra import NotificationRow
from handover.adapters.elasticsearch import BatchHit, batch_document, partial_doc
from handover.adapters.neo4j import asset_from_props, node_props, to_graph_props
from handover.adapters.sunbird_errors import SunbirdStoreError
from handover.domain.model import Asset, CourseBatch
from handover.domain.notification import Notification
from handover.domain.rules import CREATED_BY, AssetUpdate, BatchUpdate
from handover.service.ports import STORE_ASSET, AuditRecord, LedgerEntry


@dataclass
class Journal:
    entries: list[tuple[str, Any]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # operation -> how many times to fail

    def fail(self, operation: str, times: int = 1) -> None:
        self.failures[operation] = times

    def write(self, operation: str, detail: Any) -> None:
        left = self.failures.get(operation, 0)
        if left:
            self.failures[operation] = left - 1
            raise SunbirdStoreError(operation.split(".")[0], f"{operation}: injected failure")
        self.entries.append((operation, detail))

    def operations(self) -> list[str]:
        return [op for op, _ in self.entries]


class CassandraStandIn:
    def __init__(self, journal: Journal) -> None:
        self.j = journal
        self.batches: dict[tuple[str, str], CourseBatch] = {}
        self.ledger: dict[str, LedgerEntry] = {}
        self.notifications: dict[str, dict[str, Any]] = {}
        self.audit: dict[tuple[str, str, str, str], AuditRecord] = {}

    def init_schema(self) -> None:
        return None

    def close(self) -> None:
        return None

    def upsert_batches(self, batches: Sequence[CourseBatch]) -> None:
        for b in batches:
            self.batches[b.key] = b

    def scan_batches(self) -> Iterator[CourseBatch]:
        return iter(list(self.batches.values()))

    def read_batches(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], CourseBatch]:
        return {k: self.batches[k] for k in keys if k in self.batches}

    def write_batches(self, updates: Sequence[BatchUpdate]) -> int:
        self.j.write("cassandra.course_batch", [u.key for u in updates])
        for u in updates:
            row = self.batches[u.key]
            if u.createdby is not None:
                row = replace(row, createdby=u.createdby)
            if u.mentors is not None:
                row = replace(row, mentors=tuple(u.mentors))
            self.batches[u.key] = row
        return 1

    def ledger_get(self, mid: str) -> LedgerEntry | None:
        return self.ledger.get(mid)

    def ledger_get_many(self, mids: Sequence[str]) -> dict[str, LedgerEntry | None]:
        return {mid: self.ledger.get(mid) for mid in mids}

    def ledger_put(self, entry: LedgerEntry) -> None:
        self.j.write("cassandra.ledger", entry.mid)
        self.ledger[entry.mid] = entry

    def ledger_put_many(self, entries: Sequence[LedgerEntry]) -> None:
        for entry in entries:
            self.ledger_put(entry)

    def ledger_by_request(self, request_id: str) -> list[LedgerEntry]:
        return sorted((e for e in self.ledger.values() if e.request_id == request_id), key=lambda e: e.mid)

    def notification_get(self, mid: str) -> NotificationRow | None:
        row = self.notifications.get(mid)
        return None if row is None else NotificationRow(mid, row["claim_id"], row["claimed_at"], row["sent_at"])

    def notification_claim(self, note: Notification, claim: uuid.UUID, now: datetime) -> NotificationRow | None:
        if note.mid in self.notifications:
            return self.notification_get(note.mid)
        self.j.write("cassandra.notification.claim", note.mid)
        self.notifications[note.mid] = {
            "recipientUserIds": list(note.recipient_user_ids),
            "assets": dict(note.assets),
            "claim_id": claim,
            "claimed_at": now,
            "sent_at": None,
        }
        return None

    def notification_claim_many(
        self, claims: Sequence[tuple[Notification, uuid.UUID]], now: datetime
    ) -> list[NotificationRow | None]:
        return [self.notification_claim(note, claim, now) for note, claim in claims]

    def notification_reclaim(self, mid: str, old: uuid.UUID | None, claim: uuid.UUID, now: datetime) -> bool:
        row = self.notifications[mid]
        if row["claim_id"] != old or row["sent_at"] is not None:
            return False
        self.j.write("cassandra.notification.claim", mid)
        row.update(claim_id=claim, claimed_at=now)
        return True

    def notification_release(self, mid: str, claim: uuid.UUID) -> None:
        row = self.notifications[mid]
        if row["claim_id"] == claim:
            row["claimed_at"] = datetime.min.replace(tzinfo=row["claimed_at"].tzinfo)

    def notification_sent(self, mid: str, now: datetime) -> None:
        self.j.write("cassandra.notification.sent", mid)
        self.notifications[mid]["sent_at"] = now

    def notification_sent_many(self, mids: Sequence[str], now: datetime) -> None:
        for mid in mids:
            self.notification_sent(mid, now)

    def scan_notifications(self) -> Iterator[dict[str, Any]]:
        for mid, row in self.notifications.items():
            if row["sent_at"] is not None:
                yield {"mid": mid, "recipientUserIds": row["recipientUserIds"], "assets": row["assets"]}

    def audit_put(self, records: Sequence[AuditRecord]) -> None:
        self.j.write("cassandra.audit", len(records))
        for r in records:
            self.audit[(r.mid, r.store, r.record_key, r.change.field)] = r

    def audit_rows(self, mid: str, after: tuple[str, str, str] | None, limit: int) -> list[AuditRecord]:
        keys = sorted(k for k in self.audit if k[0] == mid and (after is None or k[1:] > after))
        return [self.audit[k] for k in keys[:limit]]

    def audit_about_user(self, user_id: str) -> list[tuple[str, str, str, str]]:
        return sorted(
            (r.mid, r.store, r.record_key, side)
            for r in self.audit.values()
            if r.store == STORE_ASSET and r.change.field == CREATED_BY
            for side, user in (("before", r.change.before), ("after", r.change.after))
            if user == user_id
        )

    def audit_record_rows(self, mid: str, store: str, record_key: str) -> list[AuditRecord]:
        return [self.audit[k] for k in sorted(self.audit) if k[:3] == (mid, store, record_key)]

    def audit_read_ahead(
        self, mids: Sequence[str], limit: int, users: Sequence[str]
    ) -> tuple[dict[str, list[AuditRecord]], dict[str, list[tuple[str, str, str, str]]]]:
        return {m: self.audit_rows(m, None, limit) for m in mids}, {u: self.audit_about_user(u) for u in users}

    def audit_records_rows(self, records: Sequence[tuple[str, str, str]]) -> list[list[AuditRecord]]:
        return [self.audit_record_rows(*record) for record in records]


class IndexStandIn:
    """The ``course-batch`` index: ``term`` on the lower-cased value, ``terms`` on status, search_after."""

    def __init__(self, journal: Journal) -> None:
        self.j = journal
        self.docs: dict[str, dict[str, Any]] = {}
        self.writes = 0  # as CourseBatchIndex.writes (a search here sees every write at once: no refresh)

    def close(self) -> None:
        return None

    def index_batches(self, batches: Sequence[CourseBatch], refresh: bool = True) -> None:
        for b in batches:
            self.docs[b.batchid] = batch_document(b)

    def _matches(self, doc: Mapping[str, Any], value: str, statuses: Sequence[int]) -> bool:
        mentors = [m.lower() for m in doc.get("mentors") or []]
        return doc.get("status") in statuses and (str(doc.get("createdBy") or "").lower() == value or value in mentors)

    def search_pages(
        self, user_id: str, statuses: Sequence[int], size: int, refresh: bool = True
    ) -> Iterator[list[BatchHit]]:
        value, after = user_id.lower(), ("", "")
        while True:
            found = sorted(
                (
                    ((d["batchId"].lower(), d["courseId"].lower()), d)
                    for d in self.docs.values()
                    if self._matches(d, value, statuses)
                ),
                key=lambda pair: pair[0],
            )
            page = [(k, d) for k, d in found if k > after][:size]
            if not page:
                return
            yield [
                BatchHit(d["batchId"], d["courseId"], d.get("createdBy"), tuple(d.get("mentors") or ()), k)
                for k, d in page
            ]
            if len(page) < size:
                return
            after = page[-1][0]

    def first_pages(
        self, user_ids: Sequence[str], statuses: Sequence[int], size: int, refresh: bool = True
    ) -> dict[str, list[BatchHit]]:
        pages = {u: next(iter(self.search_pages(u, statuses, size + 1)), []) for u in user_ids}
        return {u: hits for u, hits in pages.items() if len(hits) < size}

    def update_fields(self, docs: Sequence[tuple[str, Mapping[str, Any]]], refresh: bool = False) -> None:
        self.j.write("elasticsearch.update", [batch_id for batch_id, _ in docs])
        self.writes += 1
        for batch_id, fields in docs:
            if batch_id in self.docs:
                self.docs[batch_id].update(fields)

    def write(self, updates: Sequence[BatchUpdate], refresh: bool = False) -> None:
        self.update_fields([(u.batchid, partial_doc(u)) for u in updates], refresh)

    def get_document(self, batch_id: str) -> dict[str, Any] | None:
        return self.docs.get(batch_id)


class GraphStandIn:
    """``:domain`` data nodes with their properties as Neo4j holds them (originData a JSON string)."""

    def __init__(self, journal: Journal) -> None:
        self.j = journal
        self.nodes: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        return None

    def upsert(self, assets: Sequence[Asset]) -> None:
        for a in assets:
            self.nodes[a.identifier] = node_props(a)

    def get(self, identifier: str) -> Asset | None:
        props = self.nodes.get(identifier)
        return asset_from_props(props) if props else None

    def get_many(self, identifiers: Sequence[str]) -> dict[str, Asset]:
        return {i: asset_from_props(self.nodes[i]) for i in identifiers if i in self.nodes}

    def pages_created_by(self, user_id: str, object_types: Sequence[str], page_size: int) -> Iterator[list[Asset]]:
        after = ""
        while True:
            ids = sorted(
                i
                for i, p in self.nodes.items()
                if p["IL_FUNC_OBJECT_TYPE"] in object_types and p.get("createdBy") == user_id and i > after
            )[:page_size]
            if not ids:
                return
            yield [asset_from_props(self.nodes[i]) for i in ids]
            after = ids[-1]

    def created_by_any(self, users: Sequence[str], object_types: Sequence[str], limit: int) -> dict[str, list[Asset]]:
        found = {u: [a for page in self.pages_created_by(u, object_types, limit + 1) for a in page] for u in users}
        return {} if sum(len(v) for v in found.values()) > limit else found

    def write(self, updates: Sequence[AssetUpdate]) -> int:
        self.j.write("neo4j.write", [u.identifier for u in updates])
        for u in updates:
            node = self.nodes.get(u.identifier)
            if node is None:
                continue
            for key, value in to_graph_props(u.values).items():
                if value is None:
                    node.pop(key, None)
                else:
                    node[key] = value
        return len(updates)

    def all_assets(self, page_size: int = 1000) -> Iterator[Asset]:
        return (asset_from_props(self.nodes[i]) for i in sorted(self.nodes))
