"""Recipient ids are often phone numbers: logs carry only a masked form, never the id itself."""

from __future__ import annotations

from collections.abc import Iterable


def mask_recipient(recipient_id: str) -> str:
    """Keep at most the first two and last two characters, enough to correlate with a support ticket.

    Ids of six characters or fewer are masked completely: two plus two of them would reveal most of the id.
    """
    if len(recipient_id) <= 6:
        return "*" * len(recipient_id)
    return f"{recipient_id[:2]}{'*' * (len(recipient_id) - 4)}{recipient_id[-2:]}"


def mask_recipients(recipient_ids: Iterable[str], *, limit: int = 3) -> list[str]:
    """A short masked sample: a log line about a 1000-recipient call must stay small."""
    sample: list[str] = []
    for recipient_id in recipient_ids:
        if len(sample) == limit:
            sample.append("...")
            break
        sample.append(mask_recipient(recipient_id))
    return sample
