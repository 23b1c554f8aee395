"""Merge a batch's requests into the fewest IMSHOP calls the recipient limit allows.

Pure: no I/O, no clock. Under 10 calls a minute, merging is the difference between 10 and 10,000 pushes a
minute, so the plan is exactly the lower bound: for each distinct content, ceil(unique recipients / limit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from imshop_push.domain.model import Content, Recipient


class Delivery(NamedTuple):
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
    isolated: bool = False
    """Split off a merged call IMSHOP rejected: one request's share, to find out which request IMSHOP refuses."""

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
    # Per content: each recipient's first owner (the message id itself, no container per recipient: a 6 MB
    # batch can hold 350,000 recipients), and the further owners of the few recipients requested twice.
    groups: dict[Content, tuple[dict[Recipient, str], dict[Recipient, list[str]]]] = {}
    for delivery in deliveries:
        group = groups.get(delivery.content)
        if group is None:
            group = groups[delivery.content] = ({}, {})
        first, more = group
        message_id = delivery.message_id
        for recipient in delivery.recipients:
            owner = first.setdefault(recipient, message_id)
            if owner != message_id:
                more.setdefault(recipient, []).append(message_id)
    calls: list[PlannedCall] = []
    for content, (first, more) in groups.items():
        recipients = list(first)
        for start in range(0, len(recipients), max_recipients):
            chunk = tuple(recipients[start : start + max_recipients])
            message_ids = {first[recipient] for recipient in chunk}
            if more:
                for recipient in chunk:
                    message_ids.update(more.get(recipient, ()))
            calls.append(PlannedCall(content, chunk, frozenset(message_ids)))
    return calls


def lower_bound(deliveries: Iterable[Delivery], *, max_recipients: int) -> int:
    """The fewest calls any plan could make: what `plan_calls` must achieve (used by tests and the benchmark)."""
    unique: dict[Content, set[Recipient]] = {}
    for delivery in deliveries:
        unique.setdefault(delivery.content, set()).update(delivery.recipients)
    return sum(-(-len(recipients) // max_recipients) for recipients in unique.values())
