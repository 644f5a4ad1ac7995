"""The deleted-owner report (SPEC 12): the users marked deleted who still own course batches or assets, live.

Upstream Lern has it as a Spark data product, ``DeletedUsersAssetsReportJob`` (Sunbird-Lern/data-products, pull
request 102, "LR-676", ``lern-data-products/src/main/scala/org/sunbird/userorg/job/report/``): it reads the users
with ``status = 2`` (deleted) from the ``user`` table, finds their content (search API, ``createdBy`` in those
users, status Live / Draft / Review / Unlisted) and their course batches (``createdBy``, objectType
``"Course Batch"``, status ``0`` "Upcoming Batch", ``1`` "Ongoing Batch", ``2`` "Batch ended"), and writes one CSV
per ``organisationId`` (the user's ``rootorgid``) with the columns userId, username, organisationId, roles (joined
with ", "), assetIdentifier, assetName, assetStatus, objectType, once a day.

Here the same rows come from the stores as they are now, and what counts as still owned is what a transfer of
that user would move (SPEC 2.2): course batches with a status in ``course_batch_statuses`` that the user created or
mentors, and assets of the configured types and versions whose ``createdBy`` is the user (image nodes included).
One more column, ``ownedAs``, says how (``createdBy``, or ``mentors`` for a batch the user only mentors). A batch's
``assetIdentifier`` is ``courseid/batchid``, as the audit names it.

Everything is streamed: deleted users a page at a time (port ``DeletedUserSearch``), each user's batches and
assets through the repositories' keyset pages, so memory does not grow with the number of users or records.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from handover.domain.model import Asset, CourseBatch, User
from handover.domain.policy import Policy
from handover.domain.rules import display_name, is_configured
from handover.domain.text import text_problem
from handover.domain.transfer_request import is_org_admin_of
from handover.service.ports import UnitOfWork
from handover.service.requests import Forbidden, Invalid, NotFound, NotSupported, ServiceError, Unavailable

COLUMNS = (
    "userId",
    "username",
    "organisationId",
    "roles",
    "assetIdentifier",
    "assetName",
    "assetStatus",
    "objectType",
    "ownedAs",
)
COURSE_BATCH = "Course Batch"  # the objectType Lern's report gives course batches
BATCH_STATUS = {0: "Upcoming Batch", 1: "Ongoing Batch", 2: "Batch ended"}  # as Lern's report labels them
CREATED_BY = "createdBy"
MENTORS = "mentors"
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One record a deleted user still owns: a course batch or an asset (``COLUMNS``)."""

    userId: str
    username: str
    organisationId: str
    roles: tuple[str, ...]
    assetIdentifier: str
    assetName: str
    assetStatus: str
    objectType: str
    ownedAs: str

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (``roles`` a list)."""
        return {name: list(self.roles) if name == "roles" else getattr(self, name) for name in COLUMNS}

    def csv_values(self) -> list[str]:
        """The row in ``COLUMNS`` order as Lern's CSV has it (``roles`` joined with ", ")."""
        return [", ".join(self.roles) if name == "roles" else str(getattr(self, name)) for name in COLUMNS]

    @property
    def is_batch(self) -> bool:
        return self.objectType == COURSE_BATCH


def batch_row(user: User, batch: CourseBatch) -> ReportRow:
    return ReportRow(
        user.id, user.userName, user.rootOrgId, user.roles, f"{batch.courseid}/{batch.batchid}", batch.name,
        BATCH_STATUS.get(batch.status, str(batch.status)), COURSE_BATCH,
        CREATED_BY if batch.createdby == user.id else MENTORS,
    )


def asset_row(user: User, asset: Asset) -> ReportRow:
    name = asset.get("name")
    return ReportRow(
        user.id, user.userName, user.rootOrgId, user.roles, asset.identifier, name if isinstance(name, str) else "",
        asset.status or "", asset.objectType, CREATED_BY,
    )


@dataclass(frozen=True, slots=True)
class ReportPage:
    """Up to ``limit`` rows and the cursor of the next page (None: this was the last page)."""

    organisation_id: str | None
    rows: list[ReportRow]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "organisationId": self.organisation_id,
            "columns": list(COLUMNS),
            "count": len(self.rows),
            "rows": [r.to_json() for r in self.rows],
            "nextCursor": self.next_cursor,
        }


@dataclass(slots=True)
class DeletedOwner:
    """A deleted user who still owns something: how many batches and assets, and the first ``first`` rows."""

    user: User
    course_batches: int = 0
    assets: int = 0
    first: list[ReportRow] = field(default_factory=list)

    @property
    def name(self) -> str:
        return display_name(self.user)


@dataclass(frozen=True, slots=True)
class OwnersPage:
    """Deleted owners in user-id order; ``next_after``: the user id to continue after (None: no more)."""

    owners: list[DeletedOwner]
    next_after: str | None


def encode_cursor(user_id: str, done: int) -> str:
    """An opaque cursor: continue at user ``user_id`` after its first ``done`` rows."""
    raw = json.dumps({"u": user_id, "n": done}, separators=(",", ":")).encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """(user id, rows of that user already given); ``Invalid`` for anything ``encode_cursor`` did not make."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        doc = None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("u"), str)
        or not isinstance(doc.get("n"), int)
        or isinstance(doc.get("n"), bool)
        or doc["n"] < 0
        or text_problem(doc["u"]) is not None
    ):
        raise Invalid("The cursor is not one this report gave: start again without it.")
    return doc["u"], doc["n"]


class DeletedOwnersReport:
    """The use cases of the report over a read-only unit of work (``read``), the transfer policy (which batch
    statuses and asset types a transfer moves) and the store's page size. Errors: ``Invalid`` (bad cursor, limit,
    organisation id), ``Forbidden`` (the caller is not ``ORG_ADMIN`` of the organisation), ``NotFound`` (no such
    organisation), ``NotSupported`` (the store cannot list deleted users), ``Unavailable`` (the store failed)."""

    def __init__(self, read: Callable[[], UnitOfWork], policy: Policy, page_size: int = 1000) -> None:
        self._read = read
        self._policy = policy
        self._page_size = max(1, page_size)

    # who may see which organisation

    def organisation_for(self, caller: str | None, organisation_id: str | None) -> str:
        """The organisation a caller's report is about: with a caller (the token's user), ``organisation_id`` or
        else the caller's root organisation, of which the caller must be ``ORG_ADMIN`` (``Forbidden``); without
        one (authentication off), ``organisation_id``, which must be given (``Invalid``) and known (``NotFound``)."""
        wanted = (organisation_id or "").strip() or None
        if wanted is not None and text_problem(wanted) is not None:
            raise Invalid(f"organisationId contains {text_problem(wanted)}.")
        try:
            with self._read() as uow:
                if caller is None:
                    if wanted is None:
                        raise Invalid("organisationId is required (authentication is off, so no admin names it).")
                    check = getattr(uow.users, "organisation_exists", None)
                    if check is not None and not check(wanted):
                        raise NotFound(f"No organisation {wanted} in the user directory.")
                    return wanted
                admin = uow.users.get(caller)
        except ServiceError:
            raise
        except Exception as exc:
            raise Unavailable(f"The user directory is unavailable ({type(exc).__name__}).") from exc
        org = wanted or (admin.rootOrgId if admin is not None else "")
        if admin is None or not is_org_admin_of(admin, org):
            raise Forbidden(f"{caller} is not an admin of {org or 'any organisation'}.")
        return org

    # the rows

    def rows(self, organisation_id: str | None) -> Iterator[ReportRow]:
        """Every row of the organisation (None: of every organisation), users in id order, each user's batches
        then assets. ``NotSupported``; a store failure while streaming comes out as ``Unavailable``."""
        with self._reading() as uow:
            for user in self._deleted(uow, organisation_id, ""):
                yield from self._rows_of(uow, user)

    def page(self, organisation_id: str | None, cursor: str | None, limit: int) -> ReportPage:
        """Up to ``limit`` (1 to ``MAX_LIMIT``) rows from ``cursor`` (from the previous page; None: the start).
        A cursor names a user and how many of its rows were given: the next page reads that user's rows again up
        to there (memory stays flat, time grows with that user's rows)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be an integer from 1 to {MAX_LIMIT}.")
        start, skip = decode_cursor(cursor) if cursor else ("", 0)
        rows: list[ReportRow] = []
        with self._reading() as uow:
            for user in self._users_from(uow, organisation_id, start):
                done = skip if user.id == start else 0
                for i, row in enumerate(self._rows_of(uow, user)):
                    if i < done:
                        continue
                    if len(rows) == limit:
                        return ReportPage(organisation_id, rows, encode_cursor(user.id, i))
                    rows.append(row)
        return ReportPage(organisation_id, rows, None)

    def owners(self, organisation_id: str | None, after: str, limit: int, first: int = 3) -> OwnersPage:
        """Up to ``limit`` deleted users with an id after ``after`` who still own something, each with its counts
        and first ``first`` rows (counting reads every row of the user, keeping none beyond ``first``)."""
        if text_problem(after) is not None:
            raise Invalid(f"The user id to continue after contains {text_problem(after)}.")
        found: list[DeletedOwner] = []
        with self._reading() as uow:
            for user in self._deleted(uow, organisation_id, after):
                if len(found) == limit:
                    return OwnersPage(found, found[-1].user.id)
                owner = DeletedOwner(user)
                for row in self._rows_of(uow, user):
                    if row.is_batch:
                        owner.course_batches += 1
                    else:
                        owner.assets += 1
                    if len(owner.first) < first:
                        owner.first.append(row)
                if owner.course_batches or owner.assets:
                    found.append(owner)
        return OwnersPage(found, None)

    # streaming over the ports

    def _reading(self) -> Any:
        return _Reading(self._read)

    def _deleted(self, uow: UnitOfWork, organisation_id: str | None, after: str) -> Iterator[User]:
        search: Callable[[str | None, str, int], Sequence[User]] | None = getattr(uow.users, "deleted_users", None)
        if search is None:  # the port ``DeletedUserSearch`` is optional
            raise NotSupported("This store cannot list deleted users.")
        while True:
            users = search(organisation_id, after, self._page_size)
            yield from users
            if len(users) < self._page_size:
                return
            after = users[-1].id

    def _users_from(self, uow: UnitOfWork, organisation_id: str | None, start: str) -> Iterator[User]:
        """The deleted users from ``start`` on (``start`` itself when it is still a deleted user of the
        organisation)."""
        if start:
            user = uow.users.get(start)
            if user is not None and user.isDeleted and organisation_id in (None, user.rootOrgId):
                yield user
        yield from self._deleted(uow, organisation_id, start)

    def _rows_of(self, uow: UnitOfWork, user: User) -> Iterator[ReportRow]:
        policy, size = self._policy, self._page_size
        for batches in uow.batches.pages_of_user(user.id, policy.course_batch_statuses, size):
            for batch in batches:
                yield batch_row(user, batch)
        for assets in uow.assets.pages_created_by(user.id, policy.object_type_names(), size):
            for asset in assets:
                if is_configured(asset, policy):
                    yield asset_row(user, asset)


class _Reading:
    """A read unit of work whose store failures come out as ``Unavailable`` (a ``ServiceError`` passes), the
    store's exception as its ``__cause__`` (the CLI shows it; the API does not)."""

    def __init__(self, read: Callable[[], UnitOfWork]) -> None:
        self._read = read
        self._uow: UnitOfWork | None = None

    def __enter__(self) -> UnitOfWork:
        try:
            self._uow = self._read().__enter__()
        except Exception as exc:
            raise Unavailable(f"The store is unavailable ({type(exc).__name__}).") from exc
        return self._uow

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self._uow is not None
        self._uow.__exit__(exc_type, exc, tb)
        if exc is not None and not isinstance(exc, ServiceError | GeneratorExit) and isinstance(exc, Exception):
            raise Unavailable(f"The store is unavailable ({type(exc).__name__}).") from exc
