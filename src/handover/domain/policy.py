"""The settings the rules depend on, as one immutable value (built by ``handover.config``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# lookup key -> target fields, e.g. {"createdBy": ("creator",)}
PiiFields = Mapping[str, tuple[str, ...]]

DEFAULT_PII_FIELDS: PiiFields = {"createdBy": ("creator",)}
DEFAULT_TARGET_OBJECT_TYPES: Mapping[str, tuple[str, ...]] = {
    "Question": ("1.0", "1.1"),
    "QuestionSet": ("1.0", "1.1"),
}
DEFAULT_VERSION = "1.0"
DEFAULT_REPLACEMENT = "Deleted User"  # user_pii_replacement_value
IMAGE_SUFFIX = "Image"
IMAGE_ID_SUFFIX = ".img"


@dataclass(frozen=True, slots=True)
class Policy:
    course_batch_statuses: frozenset[int] = frozenset({0, 1})
    target_object_types: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_TARGET_OBJECT_TYPES)
    )
    # (base objectType, schemaVersion) -> PII fields; a missing entry falls back to DEFAULT_PII_FIELDS
    # for the built-in types and to none for others.
    pii_fields: Mapping[tuple[str, str], PiiFields] = field(default_factory=dict)
    replacement_value: str = DEFAULT_REPLACEMENT
    ownership_transfer_roles: frozenset[str] = frozenset({"CONTENT_CREATOR", "BOOK_CREATOR"})
    notify_admins: bool = True
    email_subject: str = "User Account Deletion Notification"
    email_regards: str = "Team"
    # derived answers per asset type and version (rules.asset_profile); not part of the settings
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def object_type_names(self) -> tuple[str, ...]:
        """Every node objectType the configuration covers: each type and its Image type, sorted."""
        names = {n for base in self.target_object_types for n in (base, base + IMAGE_SUFFIX)}
        return tuple(sorted(names))

    def pii_for(self, base_type: str, version: str) -> PiiFields:
        found = self.pii_fields.get((base_type, version))
        if found is not None:
            return found
        if base_type in DEFAULT_TARGET_OBJECT_TYPES:
            return DEFAULT_PII_FIELDS
        return {}
