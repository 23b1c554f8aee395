"""What a request with a `fallback` carries from one message to the next, and how a call records the recipients
it reaches in the fallback's text. Values only: no I/O, no AWS library.

A request is *switched* once its recipients are to get the fallback's text instead of its own
(`stages/fallback.py`). Two things must survive any re-enqueue, redelivery or crash:

- when it became due, which starts at the `SentTimestamp` of the first message that carried it: a copy carries
  that instant (a copy's own SentTimestamp is later), with whether it is switched, in `FALLBACK_ATTRIBUTE`;
- what reached each recipient. A call in the fallback's text records, beside the digests of its text, a
  *switch digest* per recipient of each switched request it carries, named after the request's own text
  (`switch_digests`). A redelivery of the request (the original message, which carries no attribute) reads
  them among the calls of its own attempts, as it reads its own: it knows it was switched, and which recipients
  the fallback reached (or may have), and sends them neither text again. Another request whose own text is the
  fallback's never records them, so its calls never count for this one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Carried, Content, NotificationRequest, Recipient
from imshop_push.domain.state import DIGEST_SIZE

FALLBACK_ATTRIBUTE = "fallbackState"
"""On the dispatcher's copies of a request with a fallback: `<first SentTimestamp ms>:<0|1 switched>:<digest>`."""
_DIGEST_BYTES = 16
WAKE_LEAD_WINDOWS = 0.5
"""How long before the opening its switched requests were denied a fallback's group is woken, in windows. Its
execution takes the group, claims every request (up to `pending.TAKE_MAX_ITEMS`: 20 s at the generous
`TAKE_SECONDS_PER_ITEM`, less than half a 60 s window), then waits in process for the opening, where its
transactional demand holds bulk back. Requests switched later than that join the next window's wake: one call a
window, not one a batch."""


def fallback_value(body: str, carried: Carried) -> str:
    """The attribute of a copy of `body`. The digest binds it to the body, so an attribute a producer set for its
    own ends is never taken for one; it is no secret (a producer can only switch or date its own request)."""
    return f"{carried.first_sent_ms}:{int(carried.switched)}:{_digest(body, carried)}"


def carried_of(message: InboundMessage) -> Carried | None:
    """What a dispatcher's copy of this body carries; None for any other message."""
    value = message.message_attributes.get(FALLBACK_ATTRIBUTE, {}).get("stringValue")
    if not isinstance(value, str):
        return None
    parts = value.split(":")
    if len(parts) != 3 or parts[1] not in ("0", "1"):
        return None
    try:
        carried = Carried(int(parts[0]), parts[1] == "1")
    except ValueError:
        return None
    return carried if parts[2] == _digest(message.body, carried) else None


def _digest(body: str, carried: Carried) -> str:
    digest = hashlib.blake2b(
        f"{carried.first_sent_ms}:{int(carried.switched)}:".encode(), digest_size=_DIGEST_BYTES, person=b"imshop-fb"
    )
    digest.update(body.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def switch_digests(own: Content, recipients: Iterable[Recipient]) -> list[bytes]:
    """The record, per recipient, that the fallback of a request with this own text reached (or may have). Hashed
    under a personalisation of its own: never equal to a digest of a text sent (`state.delivery_digests`)."""
    prefix = "\x1f".join((own.title, own.summary, own.deeplink or "", ""))
    return [
        hashlib.blake2b(f"{prefix}{field}\x1f{rid}".encode(), digest_size=DIGEST_SIZE, person=b"imshop-switch").digest()
        for field, rid in recipients
    ]


def planned_content(request: NotificationRequest, switched: bool) -> Content:
    """The text its recipients are planned (and merged) under."""
    return request.fallback.content if switched and request.fallback is not None else request.content


def fallback_wake_at(opening: float, now: float, window_seconds: float) -> float:
    """When the group of a fallback's text, denied a slot until `opening`, is woken: `WAKE_LEAD_WINDOWS` before
    the opening; before the next one when that moment has passed (a wake for this opening may be taken already,
    its execution waiting for the slot: a wake of its own would cost a call); at once when a slot is free now (the
    call was denied for its invocation's budget). A whole number of seconds from `now`, so that the delay of the
    wake's message, in whole seconds, never carries it past the opening."""
    if opening <= now:
        return now
    lead = window_seconds * WAKE_LEAD_WINDOWS
    ahead = opening - lead - now
    if ahead < 0:
        ahead += window_seconds
    return now + max(0, math.floor(ahead))
