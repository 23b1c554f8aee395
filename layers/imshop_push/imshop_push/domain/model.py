"""The values the pipeline works with: the request once a body has been unwrapped and validated, and what
becomes of each record. Values only: no I/O, no AWS library."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from imshop_push.domain.inbound import InboundMessage

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


class Inbox(NamedTuple):
    """The request extension `inbox`: shown in the user's in-app history only, never sent to the push API."""

    url: str | None = None
    promocode: str | None = None


DEFAULT_FALLBACK_AFTER_SECONDS = 60


class Fallback(NamedTuple):
    """The request field `fallback`: a text shared with other requests, for when its own call would start too
    late (`stages/fallback.py`). Part of the fingerprint: the same key with another fallback is another request."""

    content: Content
    after_seconds: int = DEFAULT_FALLBACK_AFTER_SECONDS


class Carried(NamedTuple):
    """What the copies of a request with a fallback carry (`fallback.py`): when SQS first accepted it, and
    whether it is switched to its fallback's text."""

    first_sent_ms: int
    switched: bool


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
    collapse_key: str | None = None
    """Latest wins per (collapseKey, recipient) (`stages/supersede.py`); never forwarded."""
    created_at: datetime | None = None
    """The producer's `createdAt`; without it, when SQS first got the request (`collapse.order_of`)."""
    inbox: Inbox | None = None
    """What the history adds to the push; None without `inbox` or without userIds (installIds have no history)."""
    send_at: datetime | None = None
    """Not sent before this instant (`stages/hold.py`). Not in the fingerprint: the same key is the same
    notification, whenever a copy of it says it is due."""
    fallback: Fallback | None = None
    """What its recipients get instead of `content` once it is switched (`stages/fallback.py`)."""

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class Cancel(NamedTuple):
    """A message `{"cancel": {"idempotencyKey": ...}}`: whatever of that request is not yet sent never is."""

    message_id: str
    idempotency_key: str  # as stored (`parsing.storable_key`), like a request's


class StoreError(RuntimeError):
    """A shared store (the state table, the rate-limit item) did not answer: its adapter translates its own
    library's errors into this, so the pipeline handles one kind of failure and never sees botocore."""


class Disposition(enum.StrEnum):
    """What the batch response and the logs say about one record."""

    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"
    DEAD_LETTERED = "dead_lettered"
    DEFERRED = "deferred"  # re-enqueued with a delay: waiting for rate budget is not a failure
    REQUEUED = "requeued"  # a transient failure, retried as a copy that carries the request's idempotency key
    RETRY = "retry"  # returned to SQS as a batch item failure
    SUPERSEDED = "superseded"  # a newer request of its collapseKey covers every recipient it had left
    HELD = "held"  # not due yet (sendAt, quiet hours): re-enqueued as a new message until it is
    CANCELLED = "cancelled"  # its request was cancelled: what was not sent is never sent
    CANCEL_RECORDED = "cancel_recorded"  # the record was a cancel, now remembered

    @property
    def is_failure(self) -> bool:
        return self is Disposition.RETRY


class RecordResult(NamedTuple):
    disposition: Disposition
    reason: str = ""


FINISH_RESERVE_SECONDS = 3.0
FINISH_RESERVE_PER_RECORD_SECONDS = 0.0015
FINISH_RESERVE_FRACTION = 0.25
"""After the last call: settling, re-enqueueing and dead-lettering (batched writes, ~1 ms a record) must fit."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """Wall-clock limits of one invocation (epoch seconds)."""

    hard: float  # the function times out here; leases end here
    last_call_start: float  # a call started later could outlive the invocation
    history_seconds: float = 0.0  # after a last call's worst case, for the history of the calls (`stages/history.py`)


class CallResult(enum.StrEnum):
    """What one IMSHOP call means for delivery: the client reduces every answer to one of these."""

    SENT = "sent"  # 200 + success: true
    FAILED = "failed"  # nothing was sent; retry later (5xx, success: false, auth/URL errors, network before send)
    RATE_LIMITED = "rate_limited"  # 429: nothing sent; back off until retry_after
    REJECTED = "rejected"  # 400, 413, 422: the vendor will never accept this body
    AMBIGUOUS = "ambiguous"  # the request left, no answer came back: it may or may not have been delivered


@dataclass(frozen=True, slots=True)
class CallOutcome:
    result: CallResult
    reason: str
    status: int | None = None
    retry_after_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Poison:
    """A record bound for the dead-letter queue, with why."""

    message: InboundMessage
    reason: str
    idempotency_key: str | None = None
    """Set when the key came from the SQS message id (which a redriven copy will not share) and IMSHOP may already
    have received part of the request: the dead letter carries it, so a redrive resumes instead of resending."""


@dataclass(frozen=True, slots=True)
class Deferral:
    """A record re-enqueued with a delay, waiting for rate budget."""

    message: InboundMessage
    delay_seconds: int
    idempotency_key: str
    key_is_message_id: bool
    """The key defaulted to the SQS message id, which the copy will not share: the copy must carry it."""
    order: tuple[int, int] | None = None
    """(createdAt, first received) in epoch ms of a request with a collapseKey: the copy carries them, so
    re-enqueueing never makes a request look newer than it is."""
    held_until_ms: int | None = None
    """A held request's due time: its copy carries it (`sqs_copies.HELD_ATTRIBUTE`)."""
    fallback: Carried | None = None
    """Of a request with a fallback: the copy carries when it was first accepted and whether it is switched."""
