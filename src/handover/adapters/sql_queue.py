"""The embedded store's event queue, the API's request log, and the in-process worker that drains the queue.

``handover serve`` without Kafka puts the events an API request produces into ``event_queue`` (durably, in one
transaction) and a worker thread in the same process takes them in order, a micro-batch at a time, and processes
them with ``service.batch_delivery.deliver_batch`` (the one retry path, as the Kafka worker). ``request_log`` keeps
which events each request produced, so that the status endpoint lists them as ``pending`` until the ledger has them;
``request_summary`` keeps who each request was about, for the admin console's history. The tables live on the SQL
store's ``metadata``: ``handover init`` creates them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, partial
from typing import Any

import sqlalchemy as sa

from handover import metrics
from handover.adapters.sql import SqlStore
from handover.adapters.sql_rows import insert_rows, run_prepared
from handover.adapters.sql_schema import StoreError, ledger, metadata
from handover.domain.events import Reason
from handover.service.audit_trail import UNDO_PREFIX
from handover.service.batch_delivery import deliver_batch
from handover.service.delivery import deliver
from handover.service.engine import Engine
from handover.service.ports import DuplicateRequest, FailedEvent, PublishError, RequestStatus, RequestSummary
from handover.service.requests import UNDONE, event_status, parties_of

log = logging.getLogger(__name__)

PENDING, PROCESSING, DONE, FAILED = "pending", "processing", "done", "failed"

event_queue = sa.Table(
    "event_queue",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("mid", sa.String(512), nullable=False, unique=True),
    sa.Column("request_id", sa.String(255)),
    sa.Column("organisation_id", sa.String(255)),  # the event's organisation: claim_next's turns
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_event_queue_status", "status", "id"),
    sa.Index("ix_event_queue_turns", "status", "organisation_id", "request_id", "id"),  # claim_next's turns
)

request_log = sa.Table(
    "request_log",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("mid", sa.String(512), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("action_by", sa.String(255)),
    sa.Column("asset_information", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

request_summary = sa.Table(
    "request_summary",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("organisation_id", sa.String(255)),
    sa.Column("from_user", sa.String(255)),
    sa.Column("to_user", sa.String(255)),
    sa.Index("ix_request_summary_from_user", "from_user"),
    sa.Index("ix_request_summary_to_user", "to_user"),
)

QUEUE_TABLES = ("event_queue", "request_log", "request_summary")


def _now() -> datetime:
    return datetime.now(UTC)


def _request_id(event: Mapping[str, Any]) -> str | None:
    context = event.get("context")
    cdata = context.get("cdata") if isinstance(context, Mapping) else None
    rid = cdata.get("id") if isinstance(cdata, Mapping) else None
    return rid if isinstance(rid, str) else None


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    id: int
    mid: str
    payload: str


@dataclass(frozen=True)
class Settled:
    """What became of an event in hand: done, or failed after ``attempts`` with ``error``."""

    event_id: int
    failed: bool
    attempts: int
    error: str | None = None


GROUP_REQUESTS = 64  # requests publish_request writes together in one transaction, at most


class _Submission:
    """A request waiting in ``publish_request`` to be written with its group; ``done`` once it was (its
    ``error`` then set if it was not), or once it is to write the next group itself (``lead``)."""

    __slots__ = ("action_by", "done", "error", "events", "lead", "queued", "request_id")

    def __init__(self, request_id: str, action_by: str, events: Sequence[Mapping[str, Any]],
                 queued: list[dict[str, Any]]) -> None:
        self.request_id, self.action_by, self.events, self.queued = request_id, action_by, events, queued
        self.done = threading.Event()
        self.error: Exception | None = PublishError("events not queued: the writer of the group stopped")
        self.lead = False


def _store_fault(exc: Exception | None) -> bool:
    """Whether a failed delivery's last error came from the store itself (SQLite's "database or disk is full",
    a lost connection, ...) rather than from the event's data (``DataError``, ``IntegrityError``)."""
    return isinstance(exc, sa.exc.OperationalError | StoreError)


class SqlEventQueue:
    """An ``EventSink`` into the store's ``event_queue`` table, and the queue the in-process worker drains."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._engine = store.engine
        self._reader = store.reader
        self._last_org: str | None = None  # the organisation claim_next served last ("": none)
        self._last_request: dict[str, str] = {}  # per organisation, the request claim_next served last there
        self.wakeup = threading.Event()  # set on publish so that the worker does not wait for its next poll
        self._group_lock = threading.Lock()  # publish_request's group commit: who waits, whether one writes
        self._waiting: list[_Submission] = []
        self._writing = False

    def publish(self, events: Sequence[Mapping[str, Any]]) -> None:
        rows = _queue_rows(events)
        if not rows:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(event_queue.insert(), rows)
        except sa.exc.SQLAlchemyError as exc:
            raise PublishError(f"events not queued: {type(exc).__name__}: {getattr(exc, 'orig', exc)}") from exc
        self.wakeup.set()

    def publish_request(self, request_id: str, action_by: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Record the request (``request_log``, ``request_summary``) and queue its events in one transaction:
        either the request is pending with all its events queued, or nothing of it exists.
        ``DuplicateRequest`` when ``request_id`` is taken; ``PublishError`` when the store fails.

        Group commit (issue 15): requests published by other threads while a transaction is being written wait
        together and are then written in one transaction, by the first of them (the others wait for it); each
        call returns only once its rows are committed. A request whose id is taken is a ``DuplicateRequest``
        without failing the others of its group; if the group's transaction fails for any other reason, each of
        its requests is written again in a transaction of its own (so that one bad request fails only itself)."""
        mine = _Submission(request_id, action_by, events, _queue_rows(events))
        with self._group_lock:
            self._waiting.append(mine)
            lead = not self._writing
            self._writing = True
        if not lead:
            mine.done.wait()  # written by the leader of its group, or woken to lead the next group
        if mine.lead or lead:
            with self._group_lock:
                group, self._waiting = self._waiting[:GROUP_REQUESTS], self._waiting[GROUP_REQUESTS:]
            try:
                self._write_group(group)
            finally:
                with self._group_lock:
                    if self._waiting:  # arrived meanwhile: the first of them writes the next group
                        self._waiting[0].lead = True
                        self._waiting[0].done.set()
                    else:
                        self._writing = False
                for other in group:
                    if other is not mine:
                        other.done.set()
            self.wakeup.set()
        if mine.error is not None:
            raise mine.error

    def _write_group(self, group: Sequence[_Submission]) -> None:
        """Write ``group`` in one transaction (one alone: ``_publish_one``); each one's error in its ``error``."""
        if len(group) > 1:
            try:
                with self._engine.begin() as conn:
                    # a taken request id is its DuplicateRequest, checked before anything is written: the others go on
                    errors = _insert_requests(conn, [(one.request_id, one.action_by, one.events) for one in group])
                    insert_rows(conn, event_queue,
                                [row for one, error in zip(group, errors, strict=True) if error is None
                                 for row in one.queued])
                for one, error in zip(group, errors, strict=True):  # committed
                    one.error = error
                return
            except Exception as exc:
                log.info("a group of %d requests failed (%s: %s); each is written on its own", len(group),
                         type(exc).__name__, exc)
        for one in group:
            try:
                self._publish_one(one.request_id, one.action_by, one.events, one.queued)
            except Exception as exc:
                one.error = exc
            else:
                one.error = None

    def _publish_one(self, request_id: str, action_by: str, events: Sequence[Mapping[str, Any]],
                     queued: list[dict[str, Any]]) -> None:
        """One request in a transaction of its own (``publish_request``'s errors)."""

        def write() -> None:
            with self._engine.begin() as conn:
                _insert_request(conn, request_id, action_by, events)
                insert_rows(conn, event_queue, queued)

        try:
            try:
                write()
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                write()  # a pooled connection was broken (opened during a fault) and the pool dropped: once more
        except DuplicateRequest:
            raise
        except sa.exc.SQLAlchemyError as exc:
            if isinstance(exc, sa.exc.IntegrityError) and _request_exists(self._reader, request_id):
                raise DuplicateRequest(request_id) from None
            raise PublishError(f"events not queued: {type(exc).__name__}: {getattr(exc, 'orig', exc)}") from exc

    def claim_next(self) -> QueuedEvent | None:
        """The next pending event, marked ``processing`` (None when the queue is empty): ``claim_batch(1)``."""
        batch = self.claim_batch(1)
        return batch[0] if batch else None

    def claim_batch(self, limit: int) -> list[QueuedEvent]:
        """Up to ``limit`` pending events, marked ``processing``, in one transaction, in the order that many
        ``claim_next`` calls would serve them (empty when the queue is empty). Organisations take
        turns, and the requests of each organisation take turns (issue 13 item 7): the oldest pending event of
        the next request, after the one served last in that organisation, of the next organisation after the one
        served last (by id, round the circle; events without an organisation or a request first). A one-asset
        request of one organisation thus waits for one event of each other organisation with pending events, however
        many requests those have. Each lookup is one range of ``ix_event_queue_turns``."""
        claimed: list[QueuedEvent] = []
        with self._engine.begin() as conn:
            while len(claimed) < limit:
                row = self._next_pending(conn)
                if row is None:
                    break
                taken = conn.execute(
                    event_queue.update()
                    .where(event_queue.c.id == row.id, event_queue.c.status == PENDING)
                    .values(status=PROCESSING, updated_at=_now())
                )
                if taken.rowcount == 1:
                    org = row.organisation_id or ""
                    self._last_org = org
                    self._last_request[org] = row.request_id or ""
                    claimed.append(QueuedEvent(row.id, row.mid, row.payload))
        return claimed

    def _next_pending(self, conn: sa.Connection) -> Any:
        """The pending event claim_next serves next (None: the queue is empty). Every lookup is one index range:
        "round the circle" looks for NULLs first, then for the lowest value, since ``NULLS FIRST`` makes
        PostgreSQL sort every pending row."""
        q = event_queue

        def first(name: str, query: Callable[[], Any], key: Any, after: str | None, params: dict[str, Any],
                  *order: Any) -> Any:
            """The first row of ``query`` whose ``key`` is after ``after``, else round the circle: one whose
            ``key`` is NULL, else the lowest. Each statement compiled once (``run_prepared``: built for every
            claimed event, they were most of the worker's time in a profile, issue 15)."""
            if after is not None:
                row = run_prepared(conn, ("event_queue.next", name, "after"),
                                   lambda: query().where(key > sa.bindparam("after")).order_by(key, *order).limit(1),
                                   {**params, "after": after}).first()
                if row is not None:
                    return row
            row = run_prepared(conn, ("event_queue.next", name, "null"),
                               lambda: query().where(key.is_(None)).order_by(*order).limit(1), params).first()
            if row is None:
                row = run_prepared(conn, ("event_queue.next", name, "lowest"),
                                   lambda: query().where(key.is_not(None)).order_by(key, *order).limit(1),
                                   params).first()
            return row

        org = first("org", lambda: sa.select(q.c.organisation_id).where(q.c.status == PENDING),
                    q.c.organisation_id, self._last_org, {})
        if org is None:
            return None
        org_id = org.organisation_id
        columns = (q.c.id, q.c.mid, q.c.payload, q.c.request_id, q.c.organisation_id)
        if org_id is None:
            name, params = "in-no-org", {}
            in_org: Any = q.c.organisation_id.is_(None)
        else:
            name, params = "in-org", {"org": org_id}
            in_org = q.c.organisation_id == sa.bindparam("org")
        return first(name, lambda: sa.select(*columns).where(q.c.status == PENDING, in_org), q.c.request_id,
                     self._last_request.get(org_id or ""), params, q.c.id)

    def finish(self, event_id: int, *, failed: bool, attempts: int, error: str | None = None) -> None:
        self.settle([Settled(event_id, failed, attempts, error)], [])

    def settle(self, finished: Sequence[Settled], released: Sequence[int]) -> None:
        """In one transaction: mark the ``finished`` events done or failed, and put the ``released`` ones (in
        hand, not processed: the store failed, not the event) back to ``pending``."""
        q = event_queue
        with self._engine.begin() as conn:
            if finished:
                conn.execute(
                    q.update().where(q.c.id == sa.bindparam("event_id")).values(
                        status=sa.bindparam("new_status"), attempts=sa.bindparam("new_attempts"),
                        error=sa.bindparam("new_error"), updated_at=_now()),
                    [{"event_id": f.event_id, "new_status": FAILED if f.failed else DONE,
                      "new_attempts": f.attempts, "new_error": f.error} for f in finished],
                )
            if released:
                conn.execute(q.update().where(q.c.id.in_(released), q.c.status == PROCESSING)
                             .values(status=PENDING, updated_at=_now()))
        if released:
            self.wakeup.set()

    def release(self, event_id: int) -> None:
        """Put an event this worker has in hand back to ``pending`` (the store failed, not the event)."""
        self.settle([], [event_id])

    def writable(self) -> bool:
        """Whether the store can write now (``SqlStore.probe``)."""
        try:
            self._store.probe()
        except Exception:
            return False
        return True

    def renew(self, event_ids: Sequence[int]) -> None:
        """Renew the lease on the events this worker has in hand (their ``updated_at``), so that
        ``release_stale`` leaves them alone while the worker lives."""
        with self._engine.begin() as conn:
            conn.execute(
                event_queue.update()
                .where(event_queue.c.id.in_(event_ids), event_queue.c.status == PROCESSING)
                .values(updated_at=_now())
            )

    def release_stale(self, lease: timedelta | None = None) -> int:
        """Put events left ``processing`` by a process that stopped back to ``pending`` (the ledger makes a
        second processing harmless): those whose lease (``updated_at``, renewed by a live worker) is older than
        ``lease``, or every one when ``lease`` is None. Returns how many."""
        q = event_queue
        stmt = q.update().where(q.c.status == PROCESSING)
        if lease is not None:
            stmt = stmt.where(q.c.updated_at < _now() - lease)
        with self._engine.begin() as conn:
            result = conn.execute(stmt.values(status=PENDING, updated_at=_now()))
        released = int(result.rowcount or 0)
        if released:
            self.wakeup.set()
        return released

    def counts(self) -> dict[str, int]:
        with self._reader.connect() as conn:
            rows = conn.execute(sa.select(event_queue.c.status, sa.func.count()).group_by(event_queue.c.status)).all()
        return {str(status): int(n) for status, n in rows}

    def oldest_pending_at(self) -> datetime | None:
        """When the oldest event still waiting (pending or in hand) was queued: the queue's lag in time."""
        q = event_queue
        with self._reader.connect() as conn:
            value = conn.execute(sa.select(sa.func.min(q.c.created_at)).where(q.c.status.in_([PENDING, PROCESSING])))
            return _aware(value.scalar())

    def failed(self, *, request_id: str | None = None, mid: str | None = None, limit: int = 100) -> list[FailedEvent]:
        """Events processing gave up on (of one request, or the one ``mid``), the most recent failure first."""
        q = event_queue
        stmt = sa.select(q).where(q.c.status == FAILED).order_by(q.c.updated_at.desc(), q.c.id.desc()).limit(limit)
        if request_id is not None:
            stmt = stmt.where(q.c.request_id == request_id)
        if mid is not None:
            stmt = stmt.where(q.c.mid == mid)
        with self._reader.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for row in rows:
            try:
                event = json.loads(row.payload)
            except ValueError:
                event = {}
            event = event if isinstance(event, Mapping) else {}
            edata = event.get("edata")
            action = edata.get("action") if isinstance(edata, Mapping) else None
            org, from_user, to_user = parties_of(event)
            failed_at = _aware(row.updated_at) or _now()
            out.append(
                FailedEvent(
                    row.mid, row.request_id, action if isinstance(action, str) else None, org, from_user, to_user,
                    int(row.attempts or 0), row.error or "", failed_at,
                )
            )
        return out

    def redrive(self, mid: str) -> bool:
        """Queue a failed event again (the worker processes it with ``deliver``, as the first time); False when
        no failed event has this ``mid``."""
        q = event_queue
        with self._engine.begin() as conn:
            done = conn.execute(
                q.update()
                .where(q.c.mid == mid, q.c.status == FAILED)
                .values(status=PENDING, error=None, updated_at=_now())
            )
        if done.rowcount != 1:
            return False
        self.wakeup.set()
        return True


def _queue_rows(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    now = _now()
    rows = []
    for event in events:
        mid = event.get("mid")
        if not isinstance(mid, str) or not mid:
            raise PublishError("an event without a mid cannot be queued")
        payload = json.dumps(event, ensure_ascii=False, allow_nan=False)
        rows.append(
            {
                "mid": mid,
                "request_id": _request_id(event),
                "organisation_id": parties_of(event)[0],
                "payload": payload,
                "status": PENDING,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def _insert_request(
    conn: sa.Connection, request_id: str, action_by: str, events: Sequence[Mapping[str, Any]]
) -> None:
    """The request's ``request_log`` rows and its ``request_summary`` row; ``DuplicateRequest`` when a request
    with this id exists (checked first, so that PostgreSQL's transaction is not aborted by the conflict)."""
    if not events:
        return
    taken = run_prepared(
        conn,
        "request_log.taken",
        lambda: sa.select(request_log.c.request_id).where(request_log.c.request_id == sa.bindparam("r")).limit(1),
        {"r": request_id},
    ).first()
    if taken is not None:
        raise DuplicateRequest(request_id)
    rows, summary = _request_rows(request_id, action_by, events)
    insert_rows(conn, request_log, rows)
    insert_rows(conn, request_summary, [summary])


def _insert_requests(
    conn: sa.Connection, requests: Sequence[tuple[str, str, Sequence[Mapping[str, Any]]]]
) -> list[DuplicateRequest | None]:
    """``_insert_request`` of each of ``requests`` (request id, action by, events), in one statement per table
    (issue 15: three per request before): each one's ``DuplicateRequest`` when its id was taken, by an earlier
    request or by one before it in ``requests``, else None (and then its rows written)."""
    ids = list(dict.fromkeys(request_id for request_id, _, events in requests if events))
    taken: set[str] = set()
    if ids:  # one statement per number of ids, compiled once (run_prepared)
        taken = {r for (r,) in run_prepared(
            conn, ("request_log.taken_of", len(ids)),
            lambda: sa.select(request_log.c.request_id).distinct()
            .where(request_log.c.request_id.in_([sa.bindparam(f"r{i}") for i in range(len(ids))])),
            {f"r{i}": request_id for i, request_id in enumerate(ids)},
        )}
    errors: list[DuplicateRequest | None] = []
    rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    for request_id, action_by, events in requests:
        if not events:
            errors.append(None)
        elif request_id in taken:
            errors.append(DuplicateRequest(request_id))
        else:
            taken.add(request_id)
            errors.append(None)
            log_rows, summary = _request_rows(request_id, action_by, events)
            rows += log_rows
            summaries.append(summary)
    insert_rows(conn, request_log, rows)
    insert_rows(conn, request_summary, summaries)
    return errors


def _request_rows(
    request_id: str, action_by: str, events: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A request's ``request_log`` rows and its ``request_summary`` row (``events``: at least one)."""
    now = _now()
    rows = []
    for position, event in enumerate(events):
        edata = event.get("edata")
        asset = edata.get("assetInformation") if isinstance(edata, Mapping) else None
        rows.append(
            {
                "request_id": request_id,
                "mid": event["mid"],
                "position": position,
                "action_by": action_by,
                "asset_information": dict(asset) if isinstance(asset, Mapping) else {},
                "created_at": now,
            }
        )
    org, from_user, to_user = parties_of(events[0])
    return rows, {"request_id": request_id, "organisation_id": org, "from_user": from_user, "to_user": to_user}


def _request_exists(engine: sa.Engine, request_id: str) -> bool:
    with engine.connect() as conn:
        q = sa.select(request_log.c.request_id).where(request_log.c.request_id == request_id).limit(1)
        return conn.execute(q).first() is not None


@cache
def _status_statement() -> sa.Select[Any]:
    """``SqlRequestLog.status``'s query, its request id the bind parameter ``request_id``: built once (built for
    each call, the alias of the ledger regenerated its columns: 14 % of the server's time answering statuses of
    unknown requests, issue 15)."""
    rl, lg, q, undo = request_log, ledger, event_queue, ledger.alias("undo")
    return (
        sa.select(
            rl.c.mid,
            rl.c.action_by,
            rl.c.asset_information,
            lg.c.outcome,
            lg.c.reason,
            lg.c.skipped,
            lg.c.changed_batches,
            lg.c.changed_assets,
            q.c.status.label("queue_status"),
            undo.c.mid.label("undo_mid"),
        )
        .select_from(_with_outcomes(rl, lg, q, undo))
        .where(rl.c.request_id == sa.bindparam("request_id"))
        .order_by(rl.c.position, rl.c.mid)
    )


class SqlRequestLog:
    """``RequestLog`` on the SQL store: the status is one query joining the log, the ledger and the queue."""

    def __init__(self, store: SqlStore) -> None:
        self._engine = store.engine
        self._reader = store.reader

    def record(self, request_id: str, action_by: str, events: Sequence[Mapping[str, Any]]) -> None:
        try:
            with self._engine.begin() as conn:
                _insert_request(conn, request_id, action_by, events)
        except sa.exc.IntegrityError:
            if _request_exists(self._reader, request_id):
                raise DuplicateRequest(request_id) from None
            raise

    def forget(self, request_id: str, mids: Sequence[str]) -> None:
        if not mids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                request_log.delete().where(request_log.c.request_id == request_id, request_log.c.mid.in_(list(mids)))
            )
            left = sa.exists().where(request_log.c.request_id == request_id)
            conn.execute(request_summary.delete().where(request_summary.c.request_id == request_id, ~left))

    def status(self, request_id: str) -> RequestStatus | None:
        with self._reader.connect() as conn:
            rows = conn.execute(_status_statement(), {"request_id": request_id}).all()
        if not rows:
            return None
        return RequestStatus(request_id, rows[0].action_by, [_event_status(r) for r in rows])


    def history(
        self,
        *,
        user: str | None = None,
        outcome: str | None = None,
        action_by: str | None = None,
        limit: int = 25,
        offset: int = 0,
    ) -> list[RequestSummary]:
        """Requests newest first. ``user``: the request's admin, from-user or to-user; ``outcome``: at least one
        event ended so (applied, rejected, duplicate, failed, pending); ``action_by``: only that admin's."""
        rl, rs = request_log, request_summary
        stmt = (
            sa.select(rl.c.request_id, sa.func.min(rl.c.created_at).label("created_at"))
            .group_by(rl.c.request_id)
            .order_by(sa.desc("created_at"), rl.c.request_id.desc())
            .limit(limit)
            .offset(offset)
        )
        if user:
            about = sa.select(rs.c.request_id).where(sa.or_(rs.c.from_user == user, rs.c.to_user == user))
            stmt = stmt.where(sa.or_(rl.c.action_by == user, rl.c.request_id.in_(about)))
        if action_by is not None:
            stmt = stmt.where(rl.c.action_by == action_by)
        if outcome:
            inner, lg, q, undo = rl.alias("e"), ledger.alias("l"), event_queue.alias("q"), ledger.alias("u")
            ended = (
                sa.select(inner.c.request_id)
                .select_from(_with_outcomes(inner, lg, q, undo))
                .where(_outcome_of(lg, q, undo) == outcome)
            )
            stmt = stmt.where(rl.c.request_id.in_(ended))
        with self._reader.connect() as conn:
            page = conn.execute(stmt).all()
            return self._summaries(conn, [(r.request_id, _aware(r.created_at) or _now()) for r in page])

    def summary(self, request_id: str) -> RequestSummary | None:
        with self._reader.connect() as conn:
            first = conn.execute(
                sa.select(sa.func.min(request_log.c.created_at)).where(request_log.c.request_id == request_id)
            ).scalar()
            if first is None:
                return None
            (found,) = self._summaries(conn, [(request_id, _aware(first) or _now())])
            return found

    def _summaries(self, conn: sa.Connection, heads: Sequence[tuple[str, datetime]]) -> list[RequestSummary]:
        if not heads:
            return []
        rl, rs, lg, q, undo = request_log, request_summary, ledger, event_queue, ledger.alias("undo")
        ids = [rid for rid, _ in heads]
        events = conn.execute(
            sa.select(rl.c.request_id, rl.c.action_by, _outcome_of(lg, q, undo).label("outcome"), lg.c.reason,
                      rl.c.asset_information)
            .select_from(_with_outcomes(rl, lg, q, undo))
            .where(rl.c.request_id.in_(ids))
        ).all()
        users = {r.request_id: r for r in conn.execute(sa.select(rs).where(rs.c.request_id.in_(ids)))}
        outcomes: dict[str, dict[str, int]] = {rid: {} for rid in ids}
        reasons: dict[str, set[str]] = {rid: set() for rid in ids}
        action_by: dict[str, str | None] = {}
        assets: dict[str, int] = dict.fromkeys(ids, 0)
        for row in events:
            counts = outcomes[row.request_id]
            info = row.asset_information
            assets[row.request_id] += 1 if isinstance(info, dict) and info.get("identifier") else 0
            counts[row.outcome] = counts.get(row.outcome, 0) + 1
            action_by[row.request_id] = row.action_by
            if row.outcome == FAILED:
                reasons[row.request_id].add(Reason.PROCESSING_FAILED.value)
            elif row.reason and row.outcome == "rejected":
                reasons[row.request_id].add(row.reason)
        out = []
        for rid, created_at in heads:
            who = users.get(rid)
            out.append(
                RequestSummary(
                    rid, created_at, action_by.get(rid),
                    who.organisation_id if who else None, who.from_user if who else None, who.to_user if who else None,
                    outcomes[rid], sorted(reasons[rid]), assets[rid],
                )
            )
        return out

    def processed_counts(self) -> list[tuple[str | None, str, str | None, int]]:
        """(action, outcome, reason, count) over every processed event (the ledger; undos have action
        ``undo``), for the console's counters."""
        lg = ledger
        with self._reader.connect() as conn:
            rows = conn.execute(
                sa.select(lg.c.action, lg.c.outcome, lg.c.reason, sa.func.count())
                .group_by(lg.c.action, lg.c.outcome, lg.c.reason)
                .order_by(lg.c.action, lg.c.outcome, lg.c.reason)
            ).all()
        return [(a, str(o), r, int(n)) for a, o, r, n in rows]


def _with_outcomes(rl: Any, lg: Any, q: Any, undo: Any) -> Any:
    """The request log joined with each event's ledger row, queue row and undo ledger row (``undo:<mid>``)."""
    return (
        rl.outerjoin(lg, lg.c.mid == rl.c.mid)
        .outerjoin(q, q.c.mid == rl.c.mid)
        .outerjoin(undo, undo.c.mid == sa.literal(UNDO_PREFIX, sa.String) + rl.c.mid)
    )


def _outcome_of(lg: Any, q: Any, undo: Any) -> Any:
    """An event's outcome in SQL for the history, as ``summary_of`` counts it: ``undone`` when the ledger has its
    undo, else the ledger's, else ``failed`` when processing gave up, else ``pending``."""
    return sa.case(
        (undo.c.mid.is_not(None), UNDONE),
        (lg.c.outcome.is_not(None), lg.c.outcome),
        (q.c.status == FAILED, FAILED),
        else_=PENDING,
    )


def _aware(value: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _event_status(row: Any) -> dict[str, Any]:
    return event_status(
        row.mid,
        row.asset_information,
        row.outcome,
        row.reason,
        row.skipped or (),
        row.changed_batches or 0,
        row.changed_assets or 0,
        failed=row.queue_status == FAILED,
        undone=row.undo_mid is not None,
    )


MAX_BACKOFF_SECONDS = 4.0  # the worker tries the store again at least this often while it fails


class StoreUnavailable(RuntimeError):
    """The store cannot write: the event in hand went back to ``pending``."""


DEFAULT_LEASE_SECONDS = 60  # queue.processing.lease.seconds


class ProcessingLease:
    """The lease a running worker holds on the events in hand, and the release of other workers' lapsed leases.

    A thread renews the events in hand (``hold``) every third of ``seconds`` and puts back to ``pending`` every
    event whose lease is older than ``seconds``: one a process that crashed (or was killed) left ``processing``
    is processed by a running worker within ``seconds`` plus a third, without waiting for a restart."""

    def __init__(self, queue: SqlEventQueue, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("the lease must be positive seconds")
        self._queue = queue
        self._lease = timedelta(seconds=seconds)
        self._tick = seconds / 3
        self._held: tuple[int, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, *event_ids: int) -> None:
        """The events this worker has in hand now (none: ``hold()``)."""
        self._held = event_ids

    def tick(self) -> int:
        """Renew the events in hand, release lapsed leases; how many were released."""
        held = self._held
        if held:
            self._queue.renew(held)
        released = self._queue.release_stale(self._lease)
        if released:
            log.warning("queue: %d event(s) left processing by a stopped worker went back to pending", released)
        return released

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="handover-queue-lease", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the store is down: the worker's loop reports it; try again next tick
                log.debug("queue lease: %s", exc)
            self._stop.wait(self._tick)


BATCH_EVENTS = 10  # events the in-process worker claims, processes and finishes together (README: 10 against 50)


class QueueWorker:
    """Takes queued events in order, up to ``batch_events`` at a time (claimed in one transaction, processed in
    one unit of work by ``deliver_batch``: one at a time with retries if the batch fails, finished in one
    transaction), and marks each done, or failed once ``max_attempts`` are used up. Never lets an error end the
    thread. While it runs, it holds a lease of ``lease_seconds`` on the events in hand and releases lapsed ones
    (``ProcessingLease``)."""

    def __init__(
        self,
        queue: SqlEventQueue,
        engine: Engine,
        max_attempts: int,
        poll_seconds: float = 1.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        batch_events: int = BATCH_EVENTS,
        linger_seconds: float = 0.0,
    ) -> None:
        """``linger_seconds``: after a batch of fewer than ``batch_events``, wait this long before the next claim
        (so that events arriving one by one are taken in fuller batches: ``handover queue-worker``, whose
        process is not woken by the publishes); 0: claim again at once."""
        if batch_events < 1:
            raise ValueError("a batch is at least one event")
        self.queue = queue
        self._engine = engine
        self._max_attempts = max_attempts
        self._poll = poll_seconds
        self._batch = batch_events
        self._linger = linger_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsettled: Callable[[], None] | None = None
        self.lease = ProcessingLease(queue, lease_seconds)

    def run_once(self, limit: int | None = None) -> int:
        """Process the next pending events, at most ``limit`` (default ``batch_events``); how many (0: none was
        pending). While the store cannot write, the events whose processing failed go back to ``pending`` (no
        attempt is used up) and ``StoreUnavailable`` is raised: the loop waits and tries again, so what was
        accepted is processed once the store heals."""
        self._settle()
        items = self.queue.claim_batch(limit or self._batch)
        if not items:
            return 0
        self.lease.hold(*(item.id for item in items))
        try:
            self._process(items)
        finally:
            self.lease.hold()
        return len(items)

    def _process(self, items: Sequence[QueuedEvent]) -> None:
        started = time.perf_counter()
        deliveries = deliver_batch(self._engine, [item.payload for item in items], self._max_attempts)
        seconds = (time.perf_counter() - started) / len(items)  # per event, for the latency histogram
        finished: list[Settled] = []
        for item, delivery in zip(items, deliveries, strict=True):
            if delivery.outcome is None and _store_fault(delivery.exception) and self.queue.writable():
                # the store failed each try and has healed since (a full disk freed): one more round of tries
                delivery = deliver(self._engine, item.payload, self._max_attempts)
            if delivery.outcome is None and not self.queue.writable():
                log.warning("queued event %s not processed: the store cannot write (%s); retried once it can",
                            item.mid, delivery.error)
                self._unsettled = partial(self.queue.settle, finished, [i.id for i in items[len(finished):]])
                try:
                    self._settle()
                except Exception as exc:  # kept: settled first thing once the store heals
                    raise StoreUnavailable(delivery.error or "the store cannot write") from exc
                raise StoreUnavailable(delivery.error or "the store cannot write")
            if delivery.outcome is None:
                metrics.observe_failure(item.payload)
                log.error("queued event %s failed after %d attempts: %s", item.mid, delivery.attempts, delivery.error)
                finished.append(Settled(item.id, True, delivery.attempts, delivery.error))
            elif delivery.outcome.mid is None:  # rejected without a mid a ledger row can carry: a failed record
                outcome = delivery.outcome
                metrics.observe(outcome, seconds)
                log.error("queued event %s rejected without a ledger row: %s %s", item.mid, outcome.reason,
                          outcome.detail)
                finished.append(Settled(item.id, True, delivery.attempts, f"{outcome.reason}: {outcome.detail}"))
            else:
                metrics.observe(delivery.outcome, seconds)
                finished.append(Settled(item.id, False, delivery.attempts))
        self._unsettled = partial(self.queue.settle, finished, [])
        self._settle()

    def _settle(self) -> None:
        """Write what became of the events in hand (done, failed, back to pending); kept and tried again first
        thing next time when the store fails, so that no event stays ``processing``."""
        if self._unsettled is not None:
            self._unsettled()
            self._unsettled = None

    def drain(self) -> int:
        """Process every pending event (tests, one-off runs); returns how many."""
        count = 0
        while done := self.run_once():
            count += done
        return count

    def start(self) -> None:
        """Run the worker and its lease in threads; events whose lease lapsed go back to ``pending`` first."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="handover-queue-worker", daemon=True)
        self._thread.start()
        self.lease.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the event in hand, then stop."""
        self._stop.set()
        self.queue.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.lease.stop()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        backoff = self._poll
        while not self._stop.is_set():
            try:
                self.queue.wakeup.clear()
                while not self._stop.is_set() and (done := self.run_once()):
                    if done < self._batch and self._linger > 0:
                        self._stop.wait(self._linger)
                backoff = self._poll
            except Exception:  # the store is down: keep trying, slower
                log.exception("queue worker: cannot reach the queue; retrying in %.1f s", backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                self._stop.wait(backoff)
                continue
            self.queue.wakeup.wait(self._poll)
