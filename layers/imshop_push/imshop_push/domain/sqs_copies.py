"""What the dispatcher writes back to SQS, entry by entry: dead letters and re-enqueued copies of a record.

A copy keeps the original body byte for byte and carries what the dispatcher adds (the idempotency key, the
reason) as message attributes. SQS counts the body and every attribute's name, type and value against one
limit, `SQS_MAX_MESSAGE_BYTES`; a copy that would exceed it sheds what matters least first, so a request that
SQS accepted once can be written again.

Values only, no I/O: the attribute names are also what the intake reads back and the DLQ tool shows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from imshop_push.domain.fallback import FALLBACK_ATTRIBUTE, fallback_value
from imshop_push.domain.inbound import InboundMessage, to_send_attributes
from imshop_push.domain.model import Deferral, Poison
from imshop_push.domain.pending import GROUP_ATTRIBUTE, WAKE_TOKEN_ATTRIBUTE
from imshop_push.domain.sqs_batches import SQS_MAX_MESSAGE_BYTES, attribute_size, attributes_size, utf8_size

SQS_MAX_ATTRIBUTES = 10
SQS_MAX_DELAY_SECONDS = 900
MAX_REASON_CHARACTERS = 1000
MIN_REASON_BYTES = 200
"""A reason cut to make room for the original attributes keeps at least this much: enough to name the rule."""
KEY_ATTRIBUTE = "idempotencyKey"
REASON_ATTRIBUTE = "error"
SOURCE_ID_ATTRIBUTE = "sourceMessageId"
HELD_ATTRIBUTE = "heldUntil"
"""On a held request's copy: when it is due (epoch ms). Its status item was written when it was held first, so
later hops and its first settlement need not write it again (`status_record.py`)."""
ORDER_ATTRIBUTE = "collapseOrder"
"""A collapsed request's order, carried by its copies (`collapse.py`): `<createdAt>:<first received>:<digest>`,
epoch ms, the digest binding both to the copy's body (`order_value`)."""
RESERVED_ATTRIBUTES = frozenset(
    {
        KEY_ATTRIBUTE,
        REASON_ATTRIBUTE,
        SOURCE_ID_ATTRIBUTE,
        ORDER_ATTRIBUTE,
        GROUP_ATTRIBUTE,
        WAKE_TOKEN_ATTRIBUTE,
        HELD_ATTRIBUTE,
        FALLBACK_ATTRIBUTE,
    }
)
"""Names the dispatcher writes on what it puts on a queue; the publishing helper refuses them on a draft."""
_DAY_MS = 86_400_000
MIN_ORDER_MS = -62_135_596_800_000 - _DAY_MS  # 0001-01-01T00:00:00+23:59 is nearly a day before year 1 in UTC
MAX_ORDER_MS = 253_402_300_799_999 + _DAY_MS  # 9999-12-31T23:59:59.999-23:59: the instants a createdAt can name
_ORDER_DIGEST_BYTES = 16
TRUNCATED = "…"

type Attributes = dict[str, dict[str, Any]]

logger = logging.getLogger(__name__)


def delay_until(turn: float, now: float) -> int:
    """The whole seconds SQS holds a message whose turn is `turn`: rounded down, never past the turn. Up to a second
    early, the execution that receives it waits the rest for its slot in process and takes the slot the moment it
    frees; a second late would leave a slot of a short window unused while the request sits in the queue. SQS's
    15-minute cap is applied where the message is written."""
    return int(max(0.0, turn - now))


class EntryTooLargeError(ValueError):
    """Even shorn of everything that may go, the copy exceeds SQS's message limit: it cannot be written."""


def requeue_entry(deferral: Deferral) -> dict[str, Any]:
    """The original body unchanged (re-serialising it could only grow it past the limit), the key as an attribute
    when the copy would otherwise lose it, and as many original attributes as still fit.

    Raises EntryTooLargeError when the body and the key together exceed the limit: the record must then go back
    to SQS as a failure, which keeps its message id and so its key."""
    message = deferral.message
    ours = {KEY_ATTRIBUTE: _text_attribute(deferral.idempotency_key)} if deferral.key_is_message_id else {}
    if deferral.order is not None:
        ours[ORDER_ATTRIBUTE] = _text_attribute(order_value(message.body, *deferral.order))
    if deferral.held_until_ms is not None:
        ours[HELD_ATTRIBUTE] = _text_attribute(str(deferral.held_until_ms))
    if deferral.fallback is not None:
        ours[FALLBACK_ATTRIBUTE] = _text_attribute(fallback_value(message.body, deferral.fallback))
    ours, theirs = _split_attributes(message, ours)
    room = SQS_MAX_MESSAGE_BYTES - utf8_size(message.body) - attributes_size(ours)
    if room < 0:
        raise EntryTooLargeError(
            f"the body ({utf8_size(message.body)} bytes) and its idempotency key exceed SQS's "
            f"{SQS_MAX_MESSAGE_BYTES}-byte message limit"
        )
    kept = _shed(theirs, room, message.message_id, "re-enqueued copy")
    entry: dict[str, Any] = {
        "MessageBody": message.body,
        "DelaySeconds": max(0, min(SQS_MAX_DELAY_SECONDS, deferral.delay_seconds)),
    }
    if kept or ours:
        entry["MessageAttributes"] = kept | ours
    return entry


def held_until_of(message: InboundMessage) -> int | None:
    """The due time a held copy carries; None for any other message (or a value that is not a number)."""
    value = message.message_attributes.get(HELD_ATTRIBUTE, {}).get("stringValue")
    try:
        return int(value) if isinstance(value, str) else None
    except ValueError:
        return None


def order_value(body: str, created_ms: int, received_ms: int) -> str:
    """The order attribute of a copy of `body`. The digest is what tells the dispatcher's copies from a producer's
    message: an attribute a producer set for its own ends (another meaning, epoch seconds, copied from another
    message) never matches it. It is not a secret: a producer who computes it on purpose can only state the order
    of its own request, which its body's `createdAt` states anyway, within the instants a `createdAt` can name."""
    return f"{created_ms}:{received_ms}:{_order_digest(body, created_ms, received_ms)}"


def copy_order(message: InboundMessage) -> tuple[int, int] | None:
    """(createdAt, first received) in epoch ms as the dispatcher's copy of this body carries it; None for any
    message that is not such a copy, whatever attributes it has."""
    value = message.message_attributes.get(ORDER_ATTRIBUTE, {}).get("stringValue")
    if not isinstance(value, str):
        return None
    parts = value.split(":")
    if len(parts) != 3:  # created, received, digest
        return None
    try:
        created, received = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if not (MIN_ORDER_MS <= created <= MAX_ORDER_MS and MIN_ORDER_MS <= received <= MAX_ORDER_MS):
        return None
    return (created, received) if parts[2] == _order_digest(message.body, created, received) else None


def _order_digest(body: str, created_ms: int, received_ms: int) -> str:
    digest = hashlib.blake2b(
        f"{created_ms}:{received_ms}:".encode(), digest_size=_ORDER_DIGEST_BYTES, person=b"imshop-order"
    )
    digest.update(body.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def dead_letter_entry(poison: Poison) -> dict[str, Any]:
    """The original body and attributes plus the reason, the source message id and the key.

    Near the limit the reason is cut first (down to MIN_REASON_BYTES), then original attributes go, then the
    rest of the reason, the source id and last the key: a dead letter is always written when the body itself
    fits (SQS's own redrive would keep less). Raises EntryTooLargeError only for a body over the limit."""
    message = poison.message
    body_size = utf8_size(message.body)
    if body_size > SQS_MAX_MESSAGE_BYTES:
        raise EntryTooLargeError(f"the body ({body_size} bytes) exceeds SQS's {SQS_MAX_MESSAGE_BYTES}-byte limit")
    reason = _printable(poison.reason)[:MAX_REASON_CHARACTERS]
    ids = {SOURCE_ID_ATTRIBUTE: _text_attribute(message.message_id)}
    if poison.idempotency_key is not None:
        ids[KEY_ATTRIBUTE] = _text_attribute(poison.idempotency_key)
    ids, theirs = _split_attributes(message, ids, reserved=(REASON_ATTRIBUTE,))
    room = SQS_MAX_MESSAGE_BYTES - body_size - attributes_size(ids)
    excess = _reason_size(reason) + attributes_size(theirs) - room
    if excess > 0:
        reason = _cut(reason, max(MIN_REASON_BYTES, utf8_size(reason) - excess))
    kept = _shed(theirs, room - _reason_size(reason), message.message_id, "dead letter")
    reason = _cut(reason, room - attributes_size(kept) - _reason_size(""))
    ours = ({REASON_ATTRIBUTE: _text_attribute(reason)} if reason else {}) | ids
    for name in (SOURCE_ID_ATTRIBUTE, KEY_ATTRIBUTE):  # the body alone fits: write it with what still fits
        if body_size + attributes_size(ours) <= SQS_MAX_MESSAGE_BYTES:
            break
        if ours.pop(name, None) is not None:
            logger.warning("dead letter of %s leaves out its %s: the body leaves no room", message.message_id, name)
    if not reason:
        logger.warning("dead letter of %s leaves out its reason: the body leaves no room", message.message_id)
    return {"MessageBody": message.body, "MessageAttributes": kept | ours}


def _split_attributes(
    message: InboundMessage, ours: Attributes, *, reserved: Sequence[str] = ()
) -> tuple[Attributes, Attributes]:
    """Ours, with the original key attribute among them (it is the key a parser reads), and the originals that
    SQS's attribute count still allows, first ones first."""
    theirs = to_send_attributes(message.message_attributes)
    if KEY_ATTRIBUTE not in ours and KEY_ATTRIBUTE in theirs:
        ours = ours | {KEY_ATTRIBUTE: theirs[KEY_ATTRIBUTE]}
    taken = set(ours) | set(reserved)
    others = [(name, value) for name, value in theirs.items() if name not in taken]
    kept = dict(others[: max(0, SQS_MAX_ATTRIBUTES - len(taken))])
    if len(kept) < len(others):
        logger.warning(
            "copy of %s keeps %d of its %d other message attributes (SQS allows %d in all)",
            message.message_id,
            len(kept),
            len(others),
            SQS_MAX_ATTRIBUTES,
        )
    return ours, kept


def _reason_size(reason: str) -> int:
    return attribute_size(REASON_ATTRIBUTE, _text_attribute(reason))


def _shed(attributes: Attributes, room: int, message_id: str, what: str) -> Attributes:
    """Drop the largest attributes until the rest fit in `room` bytes: that keeps the most of them."""
    kept = dict(attributes)
    dropped = []
    for name in sorted(kept, key=lambda n: attribute_size(n, kept[n]), reverse=True):
        if attributes_size(kept) <= room:
            break
        del kept[name]
        dropped.append(name)
    if dropped:
        logger.warning(
            "%s of %s leaves out message attributes %s: with them it would exceed SQS's %d-byte limit",
            what,
            message_id,
            ", ".join(sorted(dropped)),
            SQS_MAX_MESSAGE_BYTES,
        )
    return kept


def _cut(text: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8, marked when cut, never splitting a character; empty when nothing fits."""
    if utf8_size(text) <= max_bytes:
        return text
    budget = max_bytes - utf8_size(TRUNCATED)
    if budget <= 0:
        return ""
    return text.encode()[:budget].decode(errors="ignore") + TRUNCATED


def _text_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _printable(text: str) -> str:
    """Escape what SQS refuses in attribute values (control characters, lone surrogates, U+FFFE/U+FFFF):
    reasons quote producers' field names, which may hold anything."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)  # Cc, Cs and Cn are not printable
