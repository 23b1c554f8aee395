"""Messages the dispatcher writes back to SQS: poison to the dead-letter queue, backlog to the source queue.

Both go through SendMessageBatch; an entry SQS would refuse, or does refuse, is reported back so the caller can
return that record to SQS as a failure instead of losing it.

A copy keeps the original body byte for byte and carries what the dispatcher adds (the idempotency key, the
reason) as message attributes. SQS counts the body and every attribute's name, type and value against one
limit, `SQS_MAX_MESSAGE_BYTES`; a copy that would exceed it sheds what matters least first, so a request that
SQS accepted once can be written again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.inbound import InboundMessage, to_send_attributes
from imshop_push.model import Deferral, Poison

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_MAX_MESSAGE_BYTES = 262_144
"""One message (body + attributes) and one SendMessageBatch call (all its entries) alike: the queues' default
MaximumMessageSize, which moto and the local emulator enforce too. Raise it only with the queues' setting."""
SQS_MAX_BATCH_BYTES = SQS_MAX_MESSAGE_BYTES
SQS_MAX_ATTRIBUTES = 10
SQS_MAX_BATCH = 10
SEND_THREADS = 8
MAX_REASON_CHARACTERS = 1000
MIN_REASON_BYTES = 200
"""A reason cut to make room for the original attributes keeps at least this much: enough to name the rule."""
KEY_ATTRIBUTE = "idempotencyKey"
SQS_MAX_DELAY_SECONDS = 900
REASON_ATTRIBUTE = "error"
SOURCE_ID_ATTRIBUTE = "sourceMessageId"
TRUNCATED = "…"

type Attributes = dict[str, dict[str, Any]]

logger = logging.getLogger(__name__)


class EntryTooLargeError(ValueError):
    """Even shorn of everything that may go, the copy exceeds SQS's message limit: it cannot be written."""


class DeadLetterQueue:
    def __init__(self, client: Callable[[], SQSClient], queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, poison: Sequence[Poison]) -> set[str]:
        """Move poison records; return the message ids that could NOT be moved."""
        entries, failed = _entries(poison, dead_letter_entry)
        return failed | _send_batches(self._client(), self._url, entries)


class SourceQueue:
    """Re-enqueues backlog with a delay: a new message starts a fresh receive count, so waiting for rate budget
    never walks a valid request towards the dead-letter queue."""

    def __init__(self, client: Callable[[], SQSClient]) -> None:
        self._client = client

    def requeue(self, deferrals: Sequence[Deferral]) -> set[str]:
        """Return the message ids that could NOT be re-enqueued: they go back to SQS as failures."""
        failed: set[str] = set()
        by_queue: dict[str, list[Deferral]] = {}
        for d in deferrals:
            by_queue.setdefault(d.message.event_source_arn, []).append(d)
        for arn, items in by_queue.items():
            try:
                url = self._queue_url(arn)
            except (ClientError, BotoCoreError, ValueError):
                logger.exception("cannot resolve the source queue for re-enqueueing")
                failed.update(d.message.message_id for d in items)
                continue
            entries, unfit = _entries(items, requeue_entry)
            failed |= unfit | _send_batches(self._client(), url, entries)
        return failed

    @cache  # noqa: B019 - one instance per execution environment; queue URLs never change
    def _queue_url(self, arn: str) -> str:
        parts = arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ValueError("eventSourceARN is not an SQS queue ARN")
        return self._client().get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


def requeue_entry(deferral: Deferral) -> dict[str, Any]:
    """The original body unchanged (re-serialising it could only grow it past the limit), the key as an attribute
    when the copy would otherwise lose it, and as many original attributes as still fit.

    Raises EntryTooLargeError when the body and the key together exceed the limit: the record must then go back
    to SQS as a failure, which keeps its message id and so its key."""
    message = deferral.message
    ours = {KEY_ATTRIBUTE: _text_attribute(deferral.idempotency_key)} if deferral.key_is_message_id else {}
    ours, theirs = _split_attributes(message, ours)
    room = SQS_MAX_MESSAGE_BYTES - _utf8_size(message.body) - _attributes_size(ours)
    if room < 0:
        raise EntryTooLargeError(
            f"the body ({_utf8_size(message.body)} bytes) and its idempotency key exceed SQS's "
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


def dead_letter_entry(poison: Poison) -> dict[str, Any]:
    """The original body and attributes plus the reason, the source message id and the key.

    Near the limit the reason is cut first (down to MIN_REASON_BYTES), then original attributes go, then the
    rest of the reason, the source id and last the key: a dead letter is always written when the body itself
    fits (SQS's own redrive would keep less). Raises EntryTooLargeError only for a body over the limit."""
    message = poison.message
    body_size = _utf8_size(message.body)
    if body_size > SQS_MAX_MESSAGE_BYTES:
        raise EntryTooLargeError(f"the body ({body_size} bytes) exceeds SQS's {SQS_MAX_MESSAGE_BYTES}-byte limit")
    reason = _printable(poison.reason)[:MAX_REASON_CHARACTERS]
    ids = {SOURCE_ID_ATTRIBUTE: _text_attribute(message.message_id)}
    if poison.idempotency_key is not None:
        ids[KEY_ATTRIBUTE] = _text_attribute(poison.idempotency_key)
    ids, theirs = _split_attributes(message, ids, reserved=(REASON_ATTRIBUTE,))
    room = SQS_MAX_MESSAGE_BYTES - body_size - _attributes_size(ids)
    excess = _reason_size(reason) + _attributes_size(theirs) - room
    if excess > 0:
        reason = _cut(reason, max(MIN_REASON_BYTES, _utf8_size(reason) - excess))
    kept = _shed(theirs, room - _reason_size(reason), message.message_id, "dead letter")
    reason = _cut(reason, room - _attributes_size(kept) - _reason_size(""))
    ours = ({REASON_ATTRIBUTE: _text_attribute(reason)} if reason else {}) | ids
    for name in (SOURCE_ID_ATTRIBUTE, KEY_ATTRIBUTE):  # the body alone fits: write it with what still fits
        if body_size + _attributes_size(ours) <= SQS_MAX_MESSAGE_BYTES:
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
    return _attribute_size(REASON_ATTRIBUTE, _text_attribute(reason))


def _shed(attributes: Attributes, room: int, message_id: str, what: str) -> Attributes:
    """Drop the largest attributes until the rest fit in `room` bytes: that keeps the most of them."""
    kept = dict(attributes)
    dropped = []
    for name in sorted(kept, key=lambda n: _attribute_size(n, kept[n]), reverse=True):
        if _attributes_size(kept) <= room:
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
    if _utf8_size(text) <= max_bytes:
        return text
    budget = max_bytes - _utf8_size(TRUNCATED)
    if budget <= 0:
        return ""
    return text.encode()[:budget].decode(errors="ignore") + TRUNCATED


def _text_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _printable(text: str) -> str:
    """Escape what SQS refuses in attribute values (control characters, lone surrogates, U+FFFE/U+FFFF):
    reasons quote producers' field names, which may hold anything."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)  # Cc, Cs and Cn are not printable


def _entries[T: (Poison, Deferral)](
    items: Sequence[T], build: Callable[[T], dict[str, Any]]
) -> tuple[list[tuple[str, dict[str, Any]]], set[str]]:
    """Each item's entry, keyed by its message id; the ids of those that cannot fit apart."""
    entries: list[tuple[str, dict[str, Any]]] = []
    failed: set[str] = set()
    for item in items:
        message_id = item.message.message_id
        try:
            entries.append((message_id, build(item)))
        except EntryTooLargeError as e:
            logger.error("cannot write a copy of %s: %s; it goes back to SQS as a failure", message_id, e)
            failed.add(message_id)
    return entries, failed


def _send_batches(client: SQSClient, url: str, entries: list[tuple[str, dict[str, Any]]]) -> set[str]:
    """Batches go out in parallel: re-enqueueing the backlog of a 10,000-record batch is 1,000 calls, which must
    fit the finishing reserve after the last IMSHOP call (boto3 clients are thread-safe)."""

    def send(chunk: list[tuple[str, dict[str, Any]]]) -> set[str]:
        request = [{"Id": str(i), **entry} for i, (_, entry) in enumerate(chunk)]
        try:
            response = client.send_message_batch(QueueUrl=url, Entries=request)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError):
            logger.exception("SendMessageBatch failed")
            return {mid for mid, _ in chunk}
        return {chunk[int(failure["Id"])][0] for failure in response.get("Failed", [])}

    chunks = list(_batches(entries))
    if len(chunks) <= 1:
        return set().union(*map(send, chunks))
    with ThreadPoolExecutor(max_workers=min(SEND_THREADS, len(chunks))) as pool:
        return set().union(*pool.map(send, chunks))


def _batches(entries: list[tuple[str, dict[str, Any]]]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """At most 10 entries and SQS_MAX_BATCH_BYTES a call: SQS refuses a whole batch over its payload limit, and a
    backlog of requests with thousands of recipients each would otherwise never leave the invocation."""
    chunk: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for item in entries:
        entry_size = payload_size(item[1])
        if chunk and (len(chunk) == SQS_MAX_BATCH or size + entry_size > SQS_MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += entry_size
    if chunk:
        yield chunk


def payload_size(entry: Mapping[str, Any]) -> int:
    """What SQS counts against its limit: the body, and each attribute's name, type and value."""
    return _utf8_size(entry["MessageBody"]) + _attributes_size(entry.get("MessageAttributes", {}))


def _attributes_size(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(_attribute_size(name, value) for name, value in attributes.items())


def _attribute_size(name: str, value: Mapping[str, Any]) -> int:
    size = _utf8_size(name) + _utf8_size(value["DataType"])
    return size + (_utf8_size(value["StringValue"]) if "StringValue" in value else len(value.get("BinaryValue", b"")))


def _utf8_size(text: str) -> int:
    return len(text.encode())
