"""Reading the audit trail (SPEC 10): pages of one event or one request, as JSON for an auditor or the API."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from handover.service.ports import AuditPage, AuditRecord, UnitOfWork, UnitOfWorkFactory

EXPORT_COLUMNS = (
    "at", "action", "action_by", "mid", "request_id", "store", "record_key", "field", "before", "after",
)  # when, why (the event's action: ownership-transfer, delete-user, undo), who (the request's admin), what
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
    """An ``export`` row as CSV cells: a text as it is, a null as an empty cell, a list or an object (a mentor
    list, a nested PII value) as JSON text."""
    return [_cell(row.get(c)) for c in EXPORT_COLUMNS]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def known(uow_factory: UnitOfWorkFactory, *, mid: str | None = None, request_id: str | None = None) -> bool:
    """Whether the ledger has event ``mid`` (any outcome), or any event of request ``request_id``: an export of
    something unknown is a usage error (the CLI's exit 2), not an empty trail."""
    with uow_factory() as uow:
        if mid is not None:
            return uow.ledger.get(mid) is not None
        return bool(uow.ledger.by_request(request_id or ""))


def export(
    uow_factory: UnitOfWorkFactory,
    *,
    mid: str | None = None,
    request_id: str | None = None,
    page_size: int = 1000,
    with_undo: bool = False,
    action_by: Callable[[str], str | None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every audit row of an event or a request (a request's undo rows included; an event's too with
    ``with_undo``: those of event ``undo:<mid>`` follow), oldest first, one short unit of work per page so that a
    long export never holds the store. Each row is ``record_json`` plus ``action`` (the ledger's action of its
    event: ``ownership-transfer``, ``delete-user``, ``undo``) and ``action_by`` (``action_by(request_id)``: the
    admin who sent the request, None without a request or a lookup)."""
    mids: list[str | None] = [mid, undo_mid(mid)] if mid is not None and with_undo else [mid]
    actions: dict[str, str | None] = {}
    admins: dict[str, str | None] = {}
    for one in mids:
        cursor: str | None = None
        while True:
            with uow_factory() as uow:
                page = uow.audit.page(mid=one, request_id=request_id, cursor=cursor, limit=page_size)
                for r in page.records:
                    if r.mid not in actions:
                        entry = uow.ledger.get(r.mid)
                        actions[r.mid] = entry.action if entry is not None else None
            for r in page.records:
                row = record_json(r)
                row["action"] = actions.get(r.mid)
                if r.request_id is not None and action_by is not None and r.request_id not in admins:
                    admins[r.request_id] = action_by(r.request_id)
                row["action_by"] = admins.get(r.request_id) if r.request_id is not None else None
                yield row
            if page.next_cursor is None:
                break
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
