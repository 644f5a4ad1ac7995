"""Reading the audit trail (SPEC 10): pages of one event or one request, as JSON for an auditor or the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from handover.service.ports import AuditPage, AuditRecord, UnitOfWork, UnitOfWorkFactory

EXPORT_COLUMNS = ("mid", "request_id", "store", "record_key", "field", "before", "after", "at")
UNDO_ACTION = "undo"
UNDO_PREFIX = "undo:"

PageReader = Callable[[str | None], AuditPage]


def undo_mid(mid: str) -> str:
    """The ledger / audit mid of the undo of event ``mid``."""
    return UNDO_PREFIX + mid


def iter_pages(read: PageReader) -> Iterator[Sequence[AuditRecord]]:
    """Every page of an audit query, ``read(cursor)`` being one ``AuditLog.page`` call."""
    cursor: str | None = None
    while True:
        page = read(cursor)
        yield page.records
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def record_json(record: AuditRecord) -> dict[str, Any]:
    """One audit row with the columns of SPEC 10 (``before`` null when not kept)."""
    return {
        "mid": record.mid,
        "request_id": record.request_id,
        "store": record.store,
        "record_key": record.record_key,
        "field": record.change.field,
        "before": record.change.before,
        "after": record.change.after,
        "at": record.at.isoformat(),
    }


def csv_cells(row: dict[str, Any]) -> list[str]:
    """A ``record_json`` row as CSV cells: values as JSON text (so that a list, a null and "" differ)."""
    return [_cell(c, row[c]) for c in EXPORT_COLUMNS]


def _cell(column: str, value: Any) -> str:
    if column in ("before", "after"):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def export(
    uow_factory: UnitOfWorkFactory, *, mid: str | None = None, request_id: str | None = None, page_size: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every audit row of an event or a request (its undo rows included), oldest first, one short unit of work
    per page so that a long export never holds the store."""
    cursor: str | None = None
    while True:
        with uow_factory() as uow:
            page = uow.audit.page(mid=mid, request_id=request_id, cursor=cursor, limit=page_size)
        yield from (record_json(r) for r in page.records)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def event_changes(uow: UnitOfWork, mid: str, *, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:
    """One page of the changed records of an event, and its undo state (for the status endpoint).

    ``ValueError`` on a bad cursor."""
    page = uow.audit.page(mid=mid, cursor=cursor, limit=limit)
    undo = uow.ledger.get(undo_mid(mid))
    return {
        "changes": [
            {"store": r.store, "key": r.record_key, "field": r.change.field,
             "before": r.change.before, "after": r.change.after}
            for r in page.records
        ],
        "nextCursor": page.next_cursor,
        "undone": undo is not None,
        "undoneAt": undo.processed_at.isoformat() if undo is not None else None,
    }
