"""What the dispatcher keeps so that support can ask where a request is (`status.py`) without reading logs.

Most of it rides on writes that happen anyway: the settlement of a claimed request says its outcome, its calls,
its recipients reached and since when it waits (`Outcome`, `SoFar`); a cancel says when it came; a call record
says when IMSHOP confirmed it. One item per request is new, the `StatusRecord`: written once, at the first
decision about the request (its first settlement, its first hold, or its expiry or dead letter before any
claim). It holds the text the request sends (a call record's digests are of text and recipient, so the lookup
needs the text to find a recipient in them), a short digest of each of its recipients (to tell "not a recipient
of this request" from "not reached yet") and the facts no settlement carries (held until, dead-lettered why).
No recipient id is stored anywhere: only digests.

Values only, no I/O.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from typing import NamedTuple

from imshop_push.domain.model import Content, NotificationRequest, Recipient, RecipientField

MEMBER_DIGEST_SIZE = 4
"""Per recipient of a request, for membership only: a false match (odds about n in 4 billion for n recipients)
makes a stranger look like a recipient not reached, never a recipient look like a stranger."""
RECIPIENT_FIELDS: tuple[RecipientField, ...] = ("userIds", "installIds")


class Outcome(enum.StrEnum):
    """Where a claimed request stood when an execution let go of it: its settlement records this."""

    SENT = "sent"  # nothing is left to send
    SUPERSEDED = "superseded"  # done without sending what was left: a newer request of its collapseKey took it
    WAITING = "waiting"  # out of rate budget, back in the queue or the pending pool
    EXPIRED = "expired"
    DEAD_LETTERED = "dead-lettered"
    CANCELLED = "cancelled"
    RETRY = "retry"  # a transient failure: SQS delivers it again


class SoFar(NamedTuple):
    """What the request's earlier settlements recorded, read back by its next claim at no extra cost (the claim
    is a write that returns the old item): counts and times carry on from one receive to the next."""

    calls: int = 0
    last_sent_ms: int | None = None
    waiting_since_ms: int | None = None


class Report(NamedTuple):
    """What a settlement adds to the request's item (the same put: no extra write)."""

    outcome: Outcome
    at_ms: int  # when this settlement decided it
    calls: int  # confirmed calls that carried it, all its attempts
    reached: int  # its recipients IMSHOP confirmed, all its attempts
    total: int
    last_sent_ms: int | None = None
    waiting_since_ms: int | None = None
    expires_at_ms: int | None = None
    reason: str | None = None  # a dead letter's reason

    def so_far(self) -> SoFar:
        return SoFar(self.calls, self.last_sent_ms, self.waiting_since_ms)


class StatusRecord(NamedTuple):
    """The one extra item of a request, `status#<key>`."""

    key: str
    at_ms: int  # when it was written: the decision it records
    content: Content | None  # None: the body could not be parsed (a dead letter)
    members: bytes  # MEMBER_DIGEST_SIZE bytes per recipient
    total: int
    expires_at_ms: int | None = None
    held_until_ms: int | None = None
    expired: bool = False
    dead_letter: str | None = None  # the dead letter's reason


def member_digests(key: str, recipients: Iterable[Recipient]) -> bytes:
    """Salted with the key: the same recipient has unrelated digests in two requests."""
    return b"".join(member_digest(key, recipient) for recipient in recipients)


def member_digest(key: str, recipient: Recipient) -> bytes:
    field, rid = recipient
    return hashlib.blake2b(
        f"{key}\x1f{field}\x1f{rid}".encode(), digest_size=MEMBER_DIGEST_SIZE, person=b"imshop-member"
    ).digest()


def unpack_members(packed: bytes) -> frozenset[bytes]:
    step = MEMBER_DIGEST_SIZE
    return frozenset(packed[i : i + step] for i in range(0, len(packed), step))


def request_status(
    request: NotificationRequest,
    *,
    now: float,
    held_until: float | None = None,
    expired: bool = False,
    dead_letter: str | None = None,
) -> StatusRecord:
    """The status item of a parsed request, as the first decision about it finds it."""
    key, recipients = request.idempotency_key, request.recipients
    return StatusRecord(
        key,
        to_ms(now),
        request.content,
        member_digests(key, recipients),
        len(recipients),
        to_ms(request.expires_at.timestamp()) if request.expires_at is not None else None,
        to_ms(held_until) if held_until is not None else None,
        expired,
        dead_letter,
    )


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)
