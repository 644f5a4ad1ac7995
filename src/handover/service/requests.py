"""API requests: the use cases behind the HTTP API and the console (SPEC 5, 10, 11), over the ports.

``TransferRequests`` submits, previews, shows, undoes and lists requests and their failed events; the entry
points only parse input, call it and map its ``ServiceError`` subclasses to their answers. ``event_status`` is the
one place that turns an event's ledger row (or its absence) into the status entry the API, the console and the CLI
show; every request log (SQL store, Sunbird keyspace) answers through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from handover.domain.events import OWNERSHIP_TRANSFER, Reason
from handover.domain.model import User
from handover.domain.text import id_problem, text_problem
from handover.domain.transfer_request import (
    ACTION_BY,
    CANNOT_TRANSFER_OWNERSHIP,
    FROM_USER,
    RESTRICTED,
    SUBMITTED,
    TO_USER,
    InvalidRequest,
    TransferRequest,
    build_events,
    is_org_admin_of,
    validate,
)
from handover.ids import uuid4
from handover.service.audit_trail import event_changes
from handover.service.engine import Engine
from handover.service.ports import (
    STORE_ASSET,
    STORE_COURSE_BATCH,
    Backlog,
    DuplicateRequest,
    EventSink,
    FailedEvent,
    FailedEvents,
    PublishError,
    RequestHistory,
    RequestLog,
    RequestSummary,
    UnitOfWork,
    UnitOfWorkFactory,
)
from handover.service.undo import NotUndoable, Undoer, UndoScope, UnknownEvent, undo_scope

log = logging.getLogger(__name__)

PENDING = "pending"  # not processed yet
FAILED = "failed"  # processing gave up after max_attempts (embedded queue)
UNDONE = "undone"  # applied, then undone (the history's count and filter; the status entry's ``undone``)


def event_status(
    mid: str,
    asset_information: Mapping[str, Any] | None,
    outcome: str | None = None,
    reason: str | None = None,
    skipped: Iterable[str] = (),
    changed_batches: int = 0,
    changed_assets: int = 0,
    *,
    failed: bool = False,
    undone: bool = False,
) -> dict[str, Any]:
    """``{"mid", "assetInformation", "outcome", "reason", "skipped", "changed", "undone"}``. ``outcome`` and the
    rest are the ledger row's when the event was processed (``outcome`` None: not processed); then ``failed`` when
    processing gave up, else ``pending``. ``undone``: the ledger has the undo of this event (``undo:<mid>``)."""
    if outcome is None:
        outcome = FAILED if failed else PENDING
        reason = Reason.PROCESSING_FAILED.value if failed else None
        skipped, changed_batches, changed_assets = (), 0, 0
    return {
        "mid": mid,
        "assetInformation": dict(asset_information or {}),
        "outcome": outcome,
        "reason": reason,
        "skipped": sorted(skipped),
        "changed": {"course_batches": changed_batches, "assets": changed_assets},
        "undone": undone and outcome == "applied",
    }


def parties_of(event: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(organisationId, from-user id, to-user id) of an ownership-transfer event (None where absent), for the
    request history."""
    edata = event.get("edata")
    edata = edata if isinstance(edata, Mapping) else {}

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    def user_id(key: str) -> str | None:
        profile = edata.get(key)
        return text(profile.get("userId")) if isinstance(profile, Mapping) else None

    from_user = user_id("fromUserProfile") or text(edata.get("userId"))
    return text(edata.get("organisationId")), from_user, user_id("toUserProfile")


def summary_of(
    request_id: str,
    created_at: datetime,
    action_by: str | None,
    parties: tuple[str | None, str | None, str | None],
    events: Iterable[Mapping[str, Any]],
) -> RequestSummary:
    """A request's history entry from the status entries of its events (``event_status``): outcome counts (an
    applied event that was undone counts as ``undone``), the rejection and failure reasons, and how many events
    name an asset (0: the request was about everything of the from-user)."""
    outcomes: dict[str, int] = {}
    reasons: set[str] = set()
    assets = 0
    for event in events:
        outcome = UNDONE if event.get("undone") else str(event.get("outcome"))
        info = event.get("assetInformation")
        assets += 1 if isinstance(info, Mapping) and info.get("identifier") else 0
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        reason = event.get("reason")
        if outcome in (FAILED, "rejected") and isinstance(reason, str) and reason:
            reasons.add(reason)
    return RequestSummary(request_id, created_at, action_by, *parties, outcomes, sorted(reasons), assets)


# --- errors: what a use case refuses, for the entry points to map (HTTP status, CLI exit code) -----------


class ServiceError(Exception):
    """A use case refused or could not answer. ``message`` is for the user; ``code`` the Sunbird error code when
    the refusal has one of its own (``domain.transfer_request``), else None (the entry point picks its own)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code


class Invalid(ServiceError):
    """Bad input: HTTP 400, CLI exit 2."""


class Forbidden(ServiceError):
    """The caller may not see or do this: HTTP 403."""


class NotFound(ServiceError):
    """No such request or event: HTTP 404."""


class Conflict(ServiceError):
    """Not now: a request id used before, events not processed yet: HTTP 409."""


class NotSupported(ServiceError):
    """The store cannot do this (e.g. a preview where the store has none): HTTP 501."""


class Unavailable(ServiceError):
    """The store, the user directory or the event sink failed: HTTP 503, CLI exit 1."""


def _store_down(exc: Exception) -> Unavailable:
    log.error("store unavailable: %s", exc, exc_info=exc)
    return Unavailable(f"The store is unavailable ({type(exc).__name__}).")


# --- the use cases ------------------------------------------------------------------------------------

DEFAULT_RECORDS = 20  # changed records shown per event (preview, status)
BATCH_STATUSES = {0: "upcoming", 1: "ongoing", 2: "completed"}  # Sunbird's course batch statuses
FOUND_USERS = 10  # users a look-up shows
FORM_FIELDS = ("organisationId", "actionBy", "fromUser", "toUser", "objects", "context")  # the transfer form's


class UnitOfWorkDirectory:
    """``transfer_request.Directory`` over a unit of work's user directory. ``expected``: the user ids the
    validation will look up (a request's actionBy, fromUser, toUser): read together with one ``get_many`` at the
    first look-up instead of one ``get`` each (issue 15: two queries fewer per submitted request)."""

    def __init__(self, users: Any, expected: Sequence[str] = ()) -> None:
        self._users = users
        self._expected = list(dict.fromkeys(expected))
        self._known: dict[str, User | None] | None = None

    def user(self, user_id: str) -> User | None:
        if self._known is None and len(self._expected) > 1:
            found = self._users.get_many(self._expected)
            self._known = {i: found.get(i) for i in self._expected}
        if self._known is not None and user_id in self._known:
            return self._known[user_id]
        one: User | None = self._users.get(user_id)
        return one

    def organisation_exists(self, organisation_id: str) -> bool:
        check: Callable[[str], bool] | None = getattr(self._users, "organisation_exists", None)
        if check is None:  # a directory that cannot tell: let the request through, as before the check existed
            return True
        return bool(check(organisation_id))


def claimed_user_ids(doc: Any) -> list[str]:
    """The user ids a transfer request body names (actionBy, fromUser, toUser), as validation reads them
    (stripped), only those a store can be asked for (``id_problem``)."""
    data = doc.get("request") if isinstance(doc, dict) else None
    ids: list[str] = []
    for key in (ACTION_BY, FROM_USER, TO_USER):
        node = data.get(key) if isinstance(data, dict) else None
        raw = node.get("userId") if isinstance(node, dict) else None
        user_id = raw.strip() if isinstance(raw, str) else ""
        if user_id and id_problem(user_id) is None:
            ids.append(user_id)
    return ids


class EngineFactory(Protocol):
    def __call__(self, *, sample_limit: int = 0, uow_factory: object | None = None) -> Engine: ...


PreviewOpener = Callable[[], AbstractContextManager[UnitOfWorkFactory]]


@dataclass
class TransferRequests:
    """The use cases of API requests (SPEC 5, 10, 11) over the ports a store gives: submit (validate, record,
    publish, forget what could not be published), preview, status with the changed records of each event, undo,
    history, failed events and their redrive. The HTTP API, the console and the CLI call these and map
    ``ServiceError`` to their answers. Ports that a store does not have are None (``NotSupported``, or an empty
    answer where the console says why)."""

    store: UnitOfWorkFactory
    sink: EventSink
    requests: RequestLog | None
    engine: EngineFactory
    undoer: Callable[[], Undoer]
    preview_store: PreviewOpener | None = None
    history_log: RequestHistory | None = None
    failed_store: FailedEvents | None = None
    backlog: Backlog | None = None
    reader: Callable[[], UnitOfWork] | None = None  # units of work for reads only (no write lock); else ``store``
    max_objects: int | None = None  # objects a request may name (api.max_objects); None: no cap
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    new_id: Callable[[], str] = field(default=uuid4)

    def read(self) -> UnitOfWork:
        """A unit of work for reads: ``reader`` when the store has one (SQLite: no write lock), else ``store``."""
        return self.reader() if self.reader is not None else self.store()

    # submit

    def validated(self, doc: Any) -> TransferRequest:
        """The transfer's validation (``Invalid`` with the upstream code and message; ``Unavailable``)."""
        try:
            with self.read() as uow:
                directory = UnitOfWorkDirectory(uow.users, claimed_user_ids(doc))
                return validate(doc, directory, max_objects=self.max_objects)
        except InvalidRequest as exc:
            raise Invalid(exc.message, exc.code) from None
        except Exception as exc:
            log.exception("user directory unavailable")
            raise Unavailable(f"The user directory is unavailable ({type(exc).__name__}).") from None

    def submit(self, doc: Any, request_id: str) -> dict[str, Any]:
        """Validate the Lern request body ``doc``, record it under ``request_id`` and publish one event per object:
        ``{"status", "requestId", "events"}``. ``Invalid``, ``Conflict`` (request id used before),
        ``Unavailable``."""
        valid = self.validated(doc)
        try:
            events = build_events(valid, request_id, self.clock_ms(), self.new_id)
        except InvalidRequest as exc:
            raise Invalid(exc.message, exc.code) from None
        try:
            self.publish(request_id, valid.action_by.userId, events)
        except DuplicateRequest:
            raise Conflict(f"Request id {request_id} was used by an earlier request: send a new "
                           "X-Request-ID (or none).") from None
        return {"status": SUBMITTED, "requestId": request_id, "events": len(events)}

    def publish(self, request_id: str, action_by: str, events: list[dict[str, Any]]) -> None:
        """Record the request and publish its events: in one transaction where the sink is the store's own queue
        (a failure leaves nothing pending); else record, publish, and forget the record when publishing fails.
        ``DuplicateRequest`` for a request id already used; ``Unavailable`` when the store or sink fails."""
        requests = self.requests
        together = getattr(self.sink, "publish_request", None)
        mids = [str(e["mid"]) for e in events]
        recorded = False
        try:
            if requests is not None and together is not None:
                together(request_id, action_by, events)  # checks the request id in its own transaction
                return
            if requests is not None and requests.status(request_id) is not None:
                raise DuplicateRequest(request_id)
            if requests is not None:
                requests.record(request_id, action_by, events)
                recorded = True
            self.sink.publish(events)
        except DuplicateRequest:
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, PublishError) else type(exc).__name__
            log.error("request %s: events not published: %s", request_id, exc, exc_info=True)
            if requests is not None and recorded:
                try:
                    requests.forget(request_id, mids)
                except Exception:
                    log.exception("request %s: could not forget the unpublished events", request_id)
            raise Unavailable(
                f"Ownership transfer could not be submitted: events not published ({reason})."
            ) from None

    # preview

    def preview(self, doc: Any, request_id: str, limit: int = DEFAULT_RECORDS) -> dict[str, Any]:
        """Run the engine on the events the transfer would publish, inside the store's rolled-back preview:
        ``{"events": [{assetInformation, outcome, reason, skipped, changed, records}], "changed", "nothingChanges",
        "allRejected", "whyNothing", "unknownAssets", "stays"}``: whether nothing at all would change, whether
        every event would be rejected, the reasons of the events that would change nothing, the asset ids no
        asset has, and (a transfer of everything; else None) what stays with the from-user (``stays_with``)."""
        valid = self.validated(doc)
        try:
            events = build_events(valid, request_id, self.clock_ms(), self.new_id)
        except InvalidRequest as exc:
            raise Invalid(exc.message, exc.code) from None
        if self.preview_store is None:
            raise NotSupported("This store cannot preview a transfer.")
        try:
            with self.preview_store() as factory:
                outcomes = self.engine(sample_limit=limit, uow_factory=factory).process_batch(events)
                # in the preview's units: a store that counts (SQL) then counts each index range once for both
                stays = None if valid.objects else self._stays_with(valid.from_user.userId, factory)
        except Exception as exc:
            raise _store_down(exc) from None
        per_event = []
        for event, outcome in zip(events, outcomes, strict=True):
            report = outcome.report(with_mid=False)
            per_event.append({"assetInformation": event["edata"]["assetInformation"], **report,
                              "records": outcome.samples})
        changed = {
            "course_batches": sum(o.changed_batches for o in outcomes),
            "assets": sum(o.changed_assets for o in outcomes),
        }
        idle = [e for e in per_event if e["outcome"] == "rejected" or not any(e["changed"].values())]
        why = {str(e["reason"]) for e in idle if e.get("reason")} | {str(r) for e in idle for r in e["skipped"]}
        not_found = Reason.ASSET_NOT_FOUND.value
        return {
            "events": per_event,
            "changed": changed,
            "nothingChanges": not any(changed.values()),
            "allRejected": all(e["outcome"] == "rejected" for e in per_event),
            "whyNothing": sorted(why),  # the rejection and skip reasons of the events that would change nothing
            "unknownAssets": [str(e["assetInformation"].get("identifier")) for e in per_event
                              if e.get("reason") == not_found or not_found in e["skipped"]],
            "stays": stays,
        }

    def stays_with(self, user_id: str) -> dict[str, Any]:
        """What a transfer of everything leaves with ``user_id``: ``{"course_batches": {status: count}, "assets":
        {objectType: count} or None}``: the batches the user created or mentors whose status is not transferred
        (``course_batch_statuses``; 2 is completed), and the user's assets whose type is not transferred (None
        where the store cannot count assets by type). Counted by the store where it can (``UnitOfWork.counts``),
        else read a page at a time; ``Unavailable``."""
        try:
            return self._stays_with(user_id, self.read)
        except Exception as exc:
            raise _store_down(exc) from None

    def _stays_with(self, user_id: str, unit: Callable[[], UnitOfWork]) -> dict[str, Any]:
        """``stays_with`` in a unit of work of ``unit`` (a read, or one of a preview's); the store's errors as
        they come."""
        engine = self.engine()
        policy, page_size = engine.policy, engine.settings.page_size
        kept = frozenset(BATCH_STATUSES) - policy.course_batch_statuses
        batches: dict[str, int] = {}
        with unit() as uow:
            counts = uow.counts
            for status in sorted(kept):
                count = (counts.batches_of_user(user_id, frozenset({status})) if counts is not None
                         else sum(len(page) for page in uow.batches.pages_of_user(user_id, frozenset({status}),
                                                                                  page_size)))
                if count:
                    batches[BATCH_STATUSES[status]] = count
            by_type: Callable[[str], Mapping[str, int]] | None = (
                counts.asset_types if counts is not None else getattr(uow.assets, "types_created_by", None))
            types = policy.object_type_names()
            assets = None if by_type is None else {
                t: n for t, n in sorted(by_type(user_id).items()) if t not in types and n}
        return {"course_batches": batches, "assets": assets}

    # status and changed records

    def status(self, request_id: str, user: str | None, limit: int = DEFAULT_RECORDS) -> dict[str, Any]:
        """``{"requestId", "events"}``: each event's status (``event_status``) with the first page of its changed
        records (``with_changes``). ``user``: the token's user (None: no check), who must be the request's
        actionBy. ``NotSupported``, ``Unavailable``, ``NotFound``, ``Forbidden``."""
        requests = self.requests
        if requests is None:
            raise NotSupported("Request status is not kept by this store.")
        try:
            found = requests.status(request_id)
        except Exception as exc:
            log.exception("request log unavailable")
            raise Unavailable(f"The store is unavailable ({type(exc).__name__}).") from None
        if found is None:
            raise NotFound(f"Requested {request_id} resource not found")
        if user is not None and found.action_by != user:
            raise Forbidden("The token's user is not the actionBy user of this request.")
        return {"requestId": found.request_id, "events": self.with_changes(found.events, limit)}

    def with_changes(self, events: list[dict[str, Any]], limit: int = DEFAULT_RECORDS) -> list[dict[str, Any]]:
        """Each event of a status answer with the first page of its changed records and whether it was undone
        (``changes``, ``nextCursor`` for ``changes``, ``undone``, ``undoneAt``); ``Unavailable``."""
        try:
            with self.read() as uow:
                return [{**e, **event_changes(uow, str(e["mid"]), limit=limit)} for e in events]
        except Exception as exc:
            raise _store_down(exc) from None

    def changes(self, request_id: str, user: str | None, mid: str, cursor: str | None, limit: int) -> dict[str, Any]:
        """A further page of the changed records of event ``mid`` of the request: ``{"requestId", "mid",
        "changes", "nextCursor", ...}``. Errors as ``status``; ``NotFound`` for an event not of the request,
        ``Invalid`` for a bad cursor."""
        status = self.status(request_id, user)
        if mid not in {e["mid"] for e in status["events"]}:
            raise NotFound(f"Request {request_id} has no event {mid!r}.")
        try:
            with self.read() as uow:
                page = event_changes(uow, mid, cursor=cursor, limit=limit)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        except Exception as exc:
            raise _store_down(exc) from None
        return {"requestId": request_id, "mid": mid, **page}

    # undo

    def undo(self, request_id: str, caller: str) -> dict[str, Any]:
        """Undo every processed ownership transfer of the request: ``{"requestId", "reverted", "conflicts",
        "events"}``. ``caller`` must be ``ORG_ADMIN`` of the from-user's root organisation (else ``Invalid`` with
        upstream's ``CANNOT_TRANSFER_OWNERSHIP``); ``Conflict`` while events are pending; ``NotFound``."""
        for name, value in (("The request id", request_id), ("actionBy.userId", caller)):
            problem = text_problem(value)
            if problem is not None:
                raise Invalid(f"{name} contains {problem}.")
        pending = self._pending_events(request_id)
        try:
            with self.read() as uow:
                transfers = [e for e in uow.ledger.by_request(request_id) if e.action == OWNERSHIP_TRANSFER]
                from_user = uow.users.get(transfers[0].subject_user_id or "") if transfers else None
                admin = uow.users.get(caller)
        except Exception as exc:
            raise _store_down(exc) from None
        not_yet = Conflict(f"{pending} event(s) of request {request_id} not processed yet: undo later.")
        if not transfers:
            raise not_yet if pending else NotFound(f"Requested {request_id} resource not found")
        if admin is None or from_user is None or not is_org_admin_of(admin, from_user.rootOrgId):
            raise Invalid(RESTRICTED, CANNOT_TRANSFER_OWNERSHIP)
        if pending:
            raise not_yet
        try:
            result = self.undoer().undo_request(request_id)
        except UnknownEvent as exc:
            raise NotFound(str(exc)) from None
        except NotUndoable as exc:
            raise Invalid(str(exc)) from None
        except Exception as exc:
            raise _store_down(exc) from None
        return {"requestId": request_id, **result.to_json()}

    def _pending_events(self, request_id: str) -> int:
        """How many events of the request the request log lists as not yet processed (0 without a log)."""
        if self.requests is None:
            return 0
        try:
            found = self.requests.status(request_id)
        except Exception as exc:
            raise _store_down(exc) from None
        return 0 if found is None else sum(1 for e in found.events if e.get("outcome") == PENDING)

    # history

    def history(
        self, *, user: str | None, outcome: str | None, action_by: str | None, limit: int, offset: int
    ) -> list[RequestSummary] | None:
        """A page of the request history (``RequestHistory.history``); None when the store keeps none."""
        if self.history_log is None:
            return None
        return self.history_log.history(user=user, outcome=outcome, action_by=action_by, limit=limit, offset=offset)

    def undo_scope(self, request_id: str) -> UndoScope:
        """What an undo of the request would revert: the course batches and assets its events not undone yet
        changed, from the ledger (``service.undo.undo_scope``)."""
        with self.read() as uow:
            return undo_scope(uow, request_id=request_id)

    def summary(self, request_id: str) -> RequestSummary | None:
        """Who and when of one request (None when not kept)."""
        return self.history_log.summary(request_id) if self.history_log is not None else None

    def processed_counts(self) -> list[tuple[str | None, str, str | None, int]]:
        return self.history_log.processed_counts() if self.history_log is not None else []

    # failed events

    def admin_filter(self, caller: str | None) -> Callable[[str | None], bool]:
        """With a caller: only events of the organisation the caller is ``ORG_ADMIN`` of (as undo)."""
        if caller is None:
            return lambda org: True
        with self.read() as uow:
            admin = uow.users.get(caller)
        return lambda org: admin is not None and org is not None and is_org_admin_of(admin, org)

    def failed_events(self, caller: str | None, *, request_id: str | None = None,
                      limit: int = 200) -> list[FailedEvent] | None:
        """The failed events the caller may see (of one request, or all), most recent first; None when the store
        keeps none (with Kafka: the failed topic, ``handover redrive``)."""
        if self.failed_store is None:
            return None
        if request_id is not None:
            return self.failed_store.failed(request_id=request_id)
        allowed = self.admin_filter(caller)
        return [f for f in self.failed_store.failed(limit=limit) if allowed(f.organisation_id)]

    def redrive(self, caller: str | None, mid: str) -> bool:
        """Queue failed event ``mid`` again: True when done, False when no failed event has this mid.
        ``NotSupported`` where failed events are on the Kafka failed topic; ``Invalid``; ``Forbidden`` when the
        caller is not ``ORG_ADMIN`` of the event's organisation."""
        if self.failed_store is None:
            raise NotSupported("Failed events are on the Kafka failed topic here: use `handover redrive`.")
        allowed = self.admin_filter(caller)
        problem = text_problem(mid)
        if problem is not None:
            raise Invalid(f"The mid contains {problem}.")
        found = next(iter(self.failed_store.failed(mid=mid, limit=1)), None)
        if found is not None and not allowed(found.organisation_id):
            raise Forbidden(RESTRICTED)
        return found is not None and self.failed_store.redrive(mid)

    # the console's form

    def roles_of(self, user_id: str) -> list[dict[str, Any]]:
        """The user's roles as the Lern request body gives them (``[{"role", "scope": [{"organisationId"}]}]``),
        from the user directory; [] when unknown or the directory fails (validation then says why)."""
        if not user_id:
            return []
        try:
            with self.read() as uow:
                user = uow.users.get(user_id)
        except Exception:
            return []
        if user is None:
            return []
        return [{"role": r, "scope": [{"organisationId": user.rootOrgId}]} for r in user.roles]

    def form_problems(
        self, *, organisation_id: str, action_by: str, from_user: str, to_user: str, objects: list[str],
        context: str,
    ) -> dict[str, str]:
        """Every problem of the transfer form at once, keyed by field (``organisationId``, ``actionBy``,
        ``fromUser``, ``toUser``, ``objects``, ``context``), in the form's words ("No user u-nobody in org-1",
        "u-meera is not an admin of org-1"); {} when the form is fine. Users are looked up in the user directory
        within the organisation, so that another organisation's users answer as unknown ones (no probing).
        ``Unavailable`` when the directory fails."""
        problems: dict[str, str] = {}
        org = organisation_id.strip()
        try:
            with self.read() as uow:
                directory = UnitOfWorkDirectory(uow.users)
                if not org:
                    problems["organisationId"] = "Enter the organisation ID, for example org-1."
                elif (bad := id_problem(org)) is not None:
                    problems["organisationId"] = f"The organisation ID {bad}."
                elif not directory.organisation_exists(org):
                    problems["organisationId"] = f"No organisation {org}."
                known = org if "organisationId" not in problems else None
                people: dict[str, User] = {}
                for key, value, who in (("actionBy", action_by, "the admin's"), ("fromUser", from_user,
                                        "the from-user's"), ("toUser", to_user, "the to-user's")):
                    user_id = value.strip()
                    if not user_id:
                        problems[key] = f"Enter {who} user ID."
                        continue
                    if (bad := id_problem(user_id)) is not None:
                        problems[key] = f"The user ID {bad}."
                        continue
                    caller = people.get("actionBy")
                    if key != "actionBy" and (caller is None or known is None or caller.rootOrgId != known):
                        continue  # an organisation's users are looked up for its own people only (no probing)
                    user = directory.user(user_id)
                    if user is None or (known is not None and user.rootOrgId != known):
                        problems[key] = f"No user {user_id} in {known}." if known else f"No user {user_id}."
                        continue
                    people[key] = user
        except Exception as exc:
            raise _store_down(exc) from None
        admin, source, target = people.get("actionBy"), people.get("fromUser"), people.get("toUser")
        if admin is not None and known is not None and not is_org_admin_of(admin, known):
            problems["actionBy"] = f"{admin.id} is not an admin of {known}."
        if source is not None and not source.roles:
            problems["fromUser"] = f"{source.id} has no roles in {source.rootOrgId}."
        if target is not None:
            if source is not None and target.id == source.id:
                problems["toUser"] = "Choose another user than the from-user."
            elif target.isDeleted:
                problems["toUser"] = f"{target.id} is deleted: choose a user who is not."
            elif not target.roles:
                problems["toUser"] = f"{target.id} has no roles in {target.rootOrgId}."
        if self.max_objects is not None and len(objects) > self.max_objects:
            problems["objects"] = (f"{len(objects)} assets named: at most {self.max_objects} per transfer; split "
                                   "them into several transfers.")
        else:
            for identifier in objects:
                if (bad := id_problem(identifier)) is not None:
                    problems["objects"] = f"The asset ID {identifier[:40]!r} {bad}."
                    break
        if (bad := text_problem(context)) is not None:
            problems["context"] = f"The context contains {bad}."
        return {key: problems[key] for key in FORM_FIELDS if key in problems}  # in the form's order

    # names beside ids

    def names(self, user_ids: Iterable[str], organisation_id: str | None = None) -> dict[str, str]:
        """``{"u-ann": "Ann Lee (u-ann)"}`` for each id the user directory knows (others left out; {} when the
        directory fails: the pages then show ids). ``organisation_id``: only users of that root organisation (a
        form's ids are named only within its organisation: no probing)."""
        wanted = list(dict.fromkeys(i.strip() for i in user_ids if i and i.strip()))
        if not wanted:
            return {}
        try:
            with self.read() as uow:
                found = uow.users.get_many(wanted)  # one look-up for the page, not one per id
        except Exception:
            log.warning("user directory unavailable: ids shown without names", exc_info=True)
            return {}
        return {user_id: person(user) for user_id, user in found.items()
                if organisation_id in (None, user.rootOrgId)}

    def record_names(self, records: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """``{(store, key): "Algebra, spring"}`` for course batches and assets that exist and have a name, and
        ``"Question"`` (the type) for assets without one; {} when the store fails (the pages show keys)."""
        wanted = list(dict.fromkeys(records))
        batch_keys = [(c, b) for store, key in wanted if store == STORE_COURSE_BATCH
                      for c, _, b in [key.partition("/")]]
        asset_ids = [key for store, key in wanted if store == STORE_ASSET]
        out: dict[tuple[str, str], str] = {}
        try:
            with self.read() as uow:
                batches = uow.batches.get_many(batch_keys) if batch_keys else {}
                assets = uow.assets.get_many(asset_ids) if asset_ids else {}
        except Exception:
            log.warning("store unavailable: records shown without names", exc_info=True)
            return {}
        for (courseid, batchid), batch in batches.items():
            if batch.name:
                out[(STORE_COURSE_BATCH, f"{courseid}/{batchid}")] = batch.name
        for identifier, asset in assets.items():
            name = asset.get("name")
            label = f"{asset.objectType} “{name}”" if isinstance(name, str) and name else asset.objectType
            out[(STORE_ASSET, identifier)] = label
        return out

    def home_organisation(self, admin: str) -> str:
        """The root organisation of which ``admin`` is ``ORG_ADMIN`` ("" when not one, or the directory fails), to
        start the transfer form with."""
        try:
            with self.read() as uow:
                user = uow.users.get(admin) if admin else None
        except Exception:
            log.warning("user directory unavailable: the form starts without an organisation", exc_info=True)
            return ""
        return user.rootOrgId if user is not None and admin_of(user, user.rootOrgId) else ""

    def find_users(
        self, admin: str, organisation_id: str, text: str, limit: int = FOUND_USERS
    ) -> tuple[list[User], bool]:
        """The users of ``organisation_id`` whose id is ``text`` or whose names contain it (case-insensitive), at
        most ``limit``, and whether names were searched (False: this directory looks users up by id only).
        Deleted users are left out. ``admin`` (the signed-in user, or the form's admin) must be ``ORG_ADMIN`` of
        the organisation: ``Forbidden`` otherwise, so that nobody looks into another organisation. ``Invalid``
        without an organisation or text; ``Unavailable``."""
        org, wanted = organisation_id.strip(), text.strip()
        if not org or not wanted:
            raise Invalid("Enter the organisation ID and an ID or a name to look for.")
        for value in (org, wanted, admin.strip()):
            if (bad := id_problem(value)) is not None:
                raise Invalid(f"{value[:40]!r} {bad}.")
        if not admin.strip():
            raise Invalid(f"Enter the admin's user ID first: look-ups are for the admins of {org}.")
        try:
            with self.read() as uow:
                if not admin_of(uow.users.get(admin.strip()), org):
                    raise Forbidden(f"Look-ups are for the admins of {org}: {admin.strip()} is not one of them.")
                exact = uow.users.get(wanted)
                found = [exact] if exact is not None and exact.rootOrgId == org else []
                search: Callable[[str, str, int], list[User]] | None = getattr(uow.users, "find", None)
                if search is not None:
                    found += [u for u in search(org, wanted, limit + 1) if u.id != wanted]
        except ServiceError:
            raise
        except Exception as exc:
            raise _store_down(exc) from None
        return [u for u in found if not u.isDeleted][:limit], search is not None


def admin_of(user: User | None, organisation_id: str | None) -> bool:
    """``user`` is known and ``ORG_ADMIN`` of ``organisation_id`` (False when either is missing)."""
    return user is not None and organisation_id is not None and is_org_admin_of(user, organisation_id)


def person(user: User) -> str:
    """``Ann Lee (u-ann)``; the user name, or the id alone, when the directory has no first or last name; a user
    marked deleted says so: ``Ann Lee (u-ann, deleted)``, ``u-ann (deleted)``."""
    name = " ".join(p for p in (user.firstName.strip(), user.lastName.strip()) if p) or user.userName.strip()
    deleted = ", deleted" if user.isDeleted else ""
    if name and name != user.id:
        return f"{name} ({user.id}{deleted})"
    return f"{user.id} ({deleted[2:]})" if deleted else user.id
