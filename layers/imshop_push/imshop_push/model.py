"""The notification request as the dispatcher sees it once a message body has been unwrapped and validated."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple

type RecipientField = Literal["userIds", "installIds"]
type Recipient = tuple[RecipientField, str]
"""(field, id): a user id and an install id with the same text are different recipients."""


class Content(NamedTuple):
    """What a recipient sees. Requests with equal content in one batch travel in one call.

    NamedTuples rather than frozen dataclasses for the per-record objects: immutable and hashable alike, and
    several times cheaper to build (a 10,000-record batch builds tens of thousands; see make bench).
    """

    title: str
    summary: str
    deeplink: str | None


class NotificationRequest(NamedTuple):
    """One valid SQS record.

    `fingerprint` identifies the forwarded part (recipients and content, not the extensions): the same
    idempotency key arriving with another fingerprint is a producer bug, not a duplicate.
    """

    message_id: str
    idempotency_key: str
    content: Content
    recipients: tuple[Recipient, ...]
    expires_at: datetime | None
    fingerprint: str
    key_is_message_id: bool = False
    """No idempotencyKey and no envelope id: the key is the SQS message id, which a re-enqueued copy lacks."""

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at
