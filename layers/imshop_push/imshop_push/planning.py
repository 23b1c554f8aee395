"""Merge a batch's requests into the fewest IMSHOP calls the recipient limit allows.

Pure: no I/O, no clock. Under 10 calls a minute, merging is the difference between 10 and 10,000 pushes a
minute, so the plan is exactly the lower bound: for each distinct content, ceil(unique recipients / limit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from imshop_push.model import Content, Recipient


@dataclass(frozen=True, slots=True)
class Delivery:
    """The recipients of one request that still have to be reached (after dedup, progress and expiry)."""

    message_id: str
    content: Content
    recipients: Iterable[Recipient]


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One IMSHOP call and the requests it serves (a request may be served by several calls)."""

    content: Content
    recipients: tuple[Recipient, ...]
    message_ids: frozenset[str]

    def payload(self) -> dict[str, Any]:
        """The vendor's request body. Extensions never leave the dispatcher; empty recipient lists are omitted."""
        body: dict[str, Any] = {}
        user_ids = [rid for field, rid in self.recipients if field == "userIds"]
        install_ids = [rid for field, rid in self.recipients if field == "installIds"]
        if user_ids:
            body["userIds"] = user_ids
        if install_ids:
            body["installIds"] = install_ids
        body["message"] = {"title": self.content.title, "summary": self.content.summary}
        if self.content.deeplink is not None:
            body["deeplink"] = self.content.deeplink
        return body


def plan_calls(deliveries: Iterable[Delivery], *, max_recipients: int) -> list[PlannedCall]:
    """Group by content (first-seen order), de-duplicate recipients, split at `max_recipients`.

    userIds and installIds of one content share calls and count together against the limit.
    """
    if max_recipients < 1:
        raise ValueError("max_recipients must be at least 1")
    owners_by_content: dict[Content, dict[Recipient, list[str]]] = {}
    for delivery in deliveries:
        owners = owners_by_content.setdefault(delivery.content, {})
        for recipient in delivery.recipients:
            holders = owners.get(recipient)
            if holders is None:
                owners[recipient] = [delivery.message_id]
            elif holders[-1] != delivery.message_id:
                holders.append(delivery.message_id)
    calls: list[PlannedCall] = []
    for content, owners in owners_by_content.items():
        recipients = list(owners)
        for start in range(0, len(recipients), max_recipients):
            chunk = tuple(recipients[start : start + max_recipients])
            message_ids = frozenset(mid for recipient in chunk for mid in owners[recipient])
            calls.append(PlannedCall(content, chunk, message_ids))
    return calls


def lower_bound(deliveries: Iterable[Delivery], *, max_recipients: int) -> int:
    """The fewest calls any plan could make: what `plan_calls` must achieve (used by tests and the benchmark)."""
    unique: dict[Content, set[Recipient]] = {}
    for delivery in deliveries:
        unique.setdefault(delivery.content, set()).update(delivery.recipients)
    return sum(-(-len(recipients) // max_recipients) for recipients in unique.values())
