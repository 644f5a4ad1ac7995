"""The admin email after a user's deletion (SPEC 2.3): who gets it, which assets it lists, its body."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handover.domain.model import Asset
from handover.domain.policy import IMAGE_ID_SUFFIX, Policy

DEFAULT_VISIBILITY = "Default"


@dataclass(frozen=True, slots=True)
class Notification:
    mid: str
    recipient_user_ids: tuple[str, ...]
    assets: Mapping[str, str | None]  # identifier (image suffix stripped) -> status
    subject: str
    body: str
    regards: str

    def to_json(self) -> dict[str, Any]:
        """The dump/outbox form of SPEC 4."""
        return {
            "mid": self.mid,
            "recipientUserIds": list(self.recipient_user_ids),
            "assets": dict(self.assets),
        }

    def request_body(self) -> dict[str, Any]:
        """The body of userorg's ``POST /v2/notification`` (serialize it with a JSON encoder)."""
        return {
            "request": {
                "type": "email",
                "subject": self.subject,
                "body": self.body,
                "regards": self.regards,
                "recipientUserIds": list(self.recipient_user_ids),
            }
        }


class AffectedAssets:
    """Collects the cleaned assets an email lists: visibility Default, a node and its image once,
    with the base node's status when the base node is among them, else the image node's."""

    def __init__(self) -> None:
        self._status: dict[str, str | None] = {}
        self._from_base: set[str] = set()

    def add(self, asset: Asset) -> None:
        if asset.visibility != DEFAULT_VISIBILITY:
            return
        ident = asset.identifier
        if ident.endswith(IMAGE_ID_SUFFIX):
            base = ident[: -len(IMAGE_ID_SUFFIX)]
            if base not in self._from_base:
                self._status[base] = asset.status
        else:
            self._status[ident] = asset.status
            self._from_base.add(ident)

    def __len__(self) -> int:
        return len(self._status)

    def sorted(self) -> dict[str, str | None]:
        return dict(sorted(self._status.items()))


def build_notification(
    mid: str, user_id: str, user_name: str | None, admins: tuple[str, ...], assets: AffectedAssets, policy: Policy
) -> Notification | None:
    """The email for a delete-user event, or None when nothing is to be sent."""
    if not policy.notify_admins or not admins or len(assets) == 0:
        return None
    listed = assets.sorted()
    return Notification(
        mid=mid,
        recipient_user_ids=admins,
        assets=listed,
        subject=policy.email_subject,
        body=render_body(user_id, user_name, listed),
        regards=policy.email_regards,
    )


def render_body(user_id: str, user_name: str | None, assets: Mapping[str, str | None]) -> str:
    """The HTML body; every piece of user data is escaped."""
    who = html.escape(user_name or user_id)
    rows = "".join(
        f"<tr><td>{html.escape(ident)}</td><td>{html.escape(status or '')}</td></tr>"
        for ident, status in assets.items()
    )
    return (
        "<p>Dear Admin,</p>"
        f"<p>The account of user <b>{who}</b> ({html.escape(user_id)}) has been deleted. "
        "Their personal details were removed from the assets below. "
        "Please transfer the ownership of these assets to another user.</p>"
        f"<table><tr><th>Asset</th><th>Status</th></tr>{rows}</table>"
    )
