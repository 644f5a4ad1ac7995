"""What an ownership transfer or a PII clean-up changes (SPEC 2.1 rules 7-10, 2.2, 2.3).

Pure functions over the records of ``model``: they decide, the stores write. Each update carries the
field-level changes (``FieldChange``) that the audit trail keeps and undo reverts.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from handover.domain.events import DeleteUser, OwnershipTransfer, Reason
from handover.domain.model import Asset, CourseBatch, User
from handover.domain.policy import DEFAULT_VERSION, IMAGE_ID_SUFFIX, IMAGE_SUFFIX, Policy

CREATED_BY = "createdBy"


# Built once per changed record: plain slotted dataclasses (see model.py); never mutated.
@dataclass(slots=True)
class FieldChange:
    """One field of one record: its value before (None when not kept, for privacy) and after."""

    field: str
    before: Any
    after: Any


@dataclass(slots=True)
class BatchUpdate:
    courseid: str
    batchid: str
    createdby: str | None  # new value, or None when createdby is not written
    mentors: tuple[str, ...] | None  # new value, or None when mentors is not written
    changes: tuple[FieldChange, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.courseid, self.batchid)


@dataclass(slots=True)
class AssetUpdate:
    identifier: str
    objectType: str
    values: Mapping[str, Any]  # top-level node properties to write, with their new values
    changes: tuple[FieldChange, ...]  # field paths whose value actually changes


# --- users -------------------------------------------------------------------------------------------


def display_name(user: User) -> str:
    """``firstName lastName`` stripped, else the user name (upstream skipped an empty last name)."""
    name = f"{user.firstName or ''} {user.lastName or ''}".strip()
    return name or (user.userName or "")


def personal_values(user: User | None, *names: str | None) -> tuple[str, ...]:
    """The values a transfer can have audited about a user that must go when the user is deleted: the display
    name written into PII fields and the login, as far as the directory still holds them, plus ``names`` (the
    event's ``userName``, the names the audit recorded for the user); blank ones left out."""
    values = {n for n in names if n}
    if user is not None:
        values |= {display_name(user), user.userName or ""}
    return tuple(sorted(v for v in values if v.strip()))


def check_transfer_users(event: OwnershipTransfer, from_user: User | None, to_user: User | None) -> Reason | None:
    """Rules 7-9: both users known, to-user not deleted, both in the event's root org."""
    if from_user is None or to_user is None:
        return Reason.UNKNOWN_USER
    if to_user.isDeleted:
        return Reason.USER_DELETED
    if from_user.rootOrgId != event.organisation_id or to_user.rootOrgId != event.organisation_id:
        return Reason.ORG_MISMATCH
    return None


def check_deleted_user(event: DeleteUser, user: User | None) -> Reason | None:
    """Rule 10: a user the directory knows must be marked deleted."""
    if user is not None and not user.isDeleted:
        return Reason.USER_NOT_DELETED
    return None


def may_receive_assets(user: User, policy: Policy) -> bool:
    return bool(policy.ownership_transfer_roles.intersection(user.roles))


# --- course batches ----------------------------------------------------------------------------------


def transfer_batch(batch: CourseBatch, from_id: str, to_id: str, policy: Policy) -> BatchUpdate | None:
    """The update of one batch for a transfer, or None when the batch is not the from-user's or not active."""
    if batch.status not in policy.course_batch_statuses:
        return None
    as_creator = batch.createdby == from_id
    as_mentor = from_id in batch.mentors
    if not (as_creator or as_mentor):
        return None
    changes: list[FieldChange] = []
    new_creator = None
    if as_creator:
        new_creator = to_id
        changes.append(FieldChange("createdby", batch.createdby, to_id))
    new_mentors = None
    if as_mentor:
        new_mentors = replace_mentor(batch.mentors, from_id, to_id)
        if new_mentors != batch.mentors:
            changes.append(FieldChange("mentors", list(batch.mentors), list(new_mentors)))
    return BatchUpdate(batch.courseid, batch.batchid, new_creator, new_mentors, tuple(changes))


def replace_mentor(mentors: Sequence[str], from_id: str, to_id: str) -> tuple[str, ...]:
    """Every ``from_id`` becomes ``to_id``; duplicates dropped keeping the first occurrence."""
    out: dict[str, None] = {}
    for mentor in mentors:
        out.setdefault(to_id if mentor == from_id else mentor, None)
    return tuple(out)


# --- assets ------------------------------------------------------------------------------------------


def base_type(object_type: str) -> str:
    if object_type.endswith(IMAGE_SUFFIX) and len(object_type) > len(IMAGE_SUFFIX):
        return object_type[: -len(IMAGE_SUFFIX)]
    return object_type


def schema_version(asset: Asset) -> str:
    return asset.schemaVersion or DEFAULT_VERSION


def asset_profile(asset: Asset, policy: Policy) -> tuple[bool, tuple[str, ...]]:
    """Whether the configuration covers this asset's type and version, and the PII target fields of the
    ``createdBy`` lookup key for them; memoized per (objectType, schemaVersion) in the policy."""
    key = (asset.objectType, asset.schemaVersion)
    found: tuple[bool, tuple[str, ...]] | None = policy.memo.get(key)
    if found is None:
        base, version = base_type(asset.objectType), schema_version(asset)
        versions = policy.target_object_types.get(base)
        found = (versions is not None and version in versions, tuple(policy.pii_for(base, version).get(CREATED_BY, ())))
        policy.memo[key] = found
    return found


def is_configured(asset: Asset, policy: Policy) -> bool:
    return asset_profile(asset, policy)[0]


def pii_targets(asset: Asset, policy: Policy) -> tuple[str, ...]:
    """The PII target fields of the ``createdBy`` lookup key for this asset's type and version."""
    return asset_profile(asset, policy)[1]


def transfer_values_are_uniform(asset: Asset, policy: Policy) -> bool:
    """Whether a transfer writes the same values on every asset of this one's type and version: true when the
    PII target it sets is a top-level property (a nested path keeps each record's other keys)."""
    targets = pii_targets(asset, policy)
    return not targets or "." not in targets[0]


def transfer_asset(asset: Asset, to_id: str, to_name: str, policy: Policy) -> AssetUpdate:
    """``createdBy`` becomes the to-user; the first PII target field gets the to-user's display name."""
    values: dict[str, Any] = {CREATED_BY: to_id}
    changes = [FieldChange(CREATED_BY, asset.createdBy, to_id)] if asset.createdBy != to_id else []
    targets = pii_targets(asset, policy)
    if targets:
        _set_field(asset, targets[0], to_name, values, changes, keep_before=True)
    return AssetUpdate(asset.identifier, asset.objectType, values, tuple(changes))


def clean_asset(asset: Asset, policy: Policy) -> AssetUpdate:
    """Every PII target field gets the replacement value. The audit keeps no value removed."""
    values: dict[str, Any] = {}
    changes: list[FieldChange] = []
    for target in pii_targets(asset, policy):
        _set_field(asset, target, policy.replacement_value, values, changes, keep_before=False)
    return AssetUpdate(asset.identifier, asset.objectType, values, tuple(changes))


def _set_field(
    asset: Asset,
    path: str,
    value: Any,
    values: dict[str, Any],
    changes: list[FieldChange],
    *,
    keep_before: bool,
) -> None:
    head, _, rest = path.partition(".")
    current = values[head] if head in values else asset.get(head)
    if not rest:
        new_top: Any = value
        before = current
    else:
        new_top = set_path(current, rest.split("."), value)
        before = get_path(current, rest.split("."))
    values[head] = new_top
    if before == value:
        return
    if keep_before and rest and not has_path(current, rest.split(".")):
        # The path did not exist: keep the whole property, so that undo puts back exactly what was there
        # (an absent key and a null leaf would otherwise look the same).
        changes.append(FieldChange(head, current, new_top))
    else:
        changes.append(FieldChange(path, before if keep_before else None, value))


def get_path(obj: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def has_path(obj: Any, keys: Sequence[str]) -> bool:
    """Whether every key of ``keys`` exists, each in an object."""
    for key in keys:
        if not isinstance(obj, Mapping) or key not in obj:
            return False
        obj = obj[key]
    return True


def set_path(obj: Any, keys: Sequence[str], value: Any) -> dict[str, Any]:
    """A copy of ``obj`` (an object, or nothing) with the leaf at ``keys`` set; intermediates created,
    a non-object intermediate replaced by an object, other keys kept."""
    root: dict[str, Any] = copy.deepcopy(dict(obj)) if isinstance(obj, Mapping) else {}
    node = root
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value
    return root


def image_id(identifier: str) -> str:
    return identifier + IMAGE_ID_SUFFIX


def single_asset_skip(
    asset: Asset | None, from_id: str, policy: Policy, *, owner_in_org: bool = True
) -> Reason | None:
    """Why a named asset cannot be transferred, or None when it can. ``owner_in_org``: whether the asset's
    creator belongs to the event's organisation; an asset of another organisation (or of a creator the directory
    does not know) is ``ASSET_NOT_FOUND``, exactly as an absent one, so that no one learns whether it exists,
    its type or its owner (issue 13 item 9)."""
    if asset is None or (asset.createdBy != from_id and not owner_in_org):
        return Reason.ASSET_NOT_FOUND
    if not is_configured(asset, policy):
        return Reason.ASSET_TYPE_NOT_CONFIGURED
    if asset.createdBy != from_id:
        return Reason.ASSET_NOT_OWNED
    return None


def owned_configured(assets: Iterable[Asset | None], owner: str, policy: Policy) -> list[Asset]:
    """The assets among these that the configuration covers and ``owner`` created."""
    return [a for a in assets if a is not None and a.createdBy == owner and is_configured(a, policy)]
