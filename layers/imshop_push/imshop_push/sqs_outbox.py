"""Messages the dispatcher writes back to SQS: poison to the dead-letter queue, backlog to the source queue.

Both go through SendMessageBatch; an entry SQS refuses is reported back so the caller can return that record
to SQS as a failure instead of losing it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.inbound import InboundMessage, to_send_attributes

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_MAX_ATTRIBUTES = 10
SQS_MAX_BATCH = 10
SQS_MAX_BATCH_BYTES = 256 * 1024
MAX_REASON_CHARACTERS = 1000
KEY_ATTRIBUTE = "idempotencyKey"
SQS_MAX_DELAY_SECONDS = 900
REASON_ATTRIBUTE = "error"
SOURCE_ID_ATTRIBUTE = "sourceMessageId"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Poison:
    message: InboundMessage
    reason: str
    idempotency_key: str | None = None
    """Set when the key came from the SQS message id (which a redriven copy will not share) and IMSHOP may already
    have received part of the request: the dead letter carries it, so a redrive resumes instead of resending."""


@dataclass(frozen=True, slots=True)
class Deferral:
    message: InboundMessage
    delay_seconds: int
    idempotency_key: str
    key_from_message_id: bool
    """The key defaulted to the SQS message id, which the copy will not share: the copy must carry it."""


class DeadLetterQueue:
    def __init__(self, client: Callable[[], SQSClient], queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, poison: Sequence[Poison]) -> set[str]:
        """Move poison records; return the message ids that could NOT be moved."""
        entries = [(p.message.message_id, dead_letter_entry(p)) for p in poison]
        return _send_batches(self._client(), self._url, entries)


class SourceQueue:
    """Re-enqueues backlog with a delay: a new message starts a fresh receive count, so waiting for rate budget
    never walks a valid request towards the dead-letter queue."""

    def __init__(self, client: Callable[[], SQSClient]) -> None:
        self._client = client

    def requeue(self, deferrals: Sequence[Deferral]) -> set[str]:
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
            failed |= _send_batches(self._client(), url, [(d.message.message_id, requeue_entry(d)) for d in items])
        return failed

    @cache  # noqa: B019 - one instance per execution environment; queue URLs never change
    def _queue_url(self, arn: str) -> str:
        parts = arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ValueError("eventSourceARN is not an SQS queue ARN")
        return self._client().get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


def dead_letter_entry(poison: Poison) -> dict[str, Any]:
    attributes = to_send_attributes(poison.message.message_attributes)
    ours = {REASON_ATTRIBUTE: _text_attribute(_printable(poison.reason)[:MAX_REASON_CHARACTERS])}
    ours[SOURCE_ID_ATTRIBUTE] = _text_attribute(poison.message.message_id)
    if poison.idempotency_key is not None:
        ours[KEY_ATTRIBUTE] = _text_attribute(poison.idempotency_key)
    kept = {k: v for k, v in attributes.items() if k not in ours}
    kept = dict(list(kept.items())[: SQS_MAX_ATTRIBUTES - len(ours)])
    if len(kept) < len(attributes):
        logger.warning(
            "dead letter keeps %d of %d message attributes (SQS allows %d)",
            len(kept),
            len(attributes),
            SQS_MAX_ATTRIBUTES,
        )
    return {"MessageBody": poison.message.body, "MessageAttributes": kept | ours}


def _text_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def _printable(text: str) -> str:
    """Escape what SQS refuses in attribute values (control characters, lone surrogates, U+FFFE/U+FFFF):
    reasons quote producers' field names, which may hold anything."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)  # Cc, Cs and Cn are not printable


def requeue_entry(deferral: Deferral) -> dict[str, Any]:
    body = deferral.message.body
    if deferral.key_from_message_id:
        document = json.loads(body)
        document["idempotencyKey"] = deferral.idempotency_key
        body = json.dumps(document, separators=(",", ":"))  # ASCII: SQS refuses U+FFFE/U+FFFF raw
    entry: dict[str, Any] = {
        "MessageBody": body,
        "DelaySeconds": max(0, min(SQS_MAX_DELAY_SECONDS, deferral.delay_seconds)),
    }
    attributes = to_send_attributes(deferral.message.message_attributes)
    if attributes:
        entry["MessageAttributes"] = attributes
    return entry


def _send_batches(client: SQSClient, url: str, entries: list[tuple[str, dict[str, Any]]]) -> set[str]:
    failed: set[str] = set()
    for chunk in _batches(entries):
        request = [{"Id": str(i), **entry} for i, (_, entry) in enumerate(chunk)]
        try:
            response = client.send_message_batch(QueueUrl=url, Entries=request)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError):
            logger.exception("SendMessageBatch failed")
            failed.update(mid for mid, _ in chunk)
            continue
        for failure in response.get("Failed", []):
            failed.add(chunk[int(failure["Id"])][0])
    return failed


def _batches(entries: list[tuple[str, dict[str, Any]]]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """At most 10 entries and 256 KiB a call: SQS refuses a whole batch over its payload limit, and a backlog of
    requests with thousands of recipients each would otherwise never leave the invocation."""
    chunk: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for item in entries:
        entry_size = _payload_size(item[1])
        if chunk and (len(chunk) == SQS_MAX_BATCH or size + entry_size > SQS_MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += entry_size
    if chunk:
        yield chunk


def _payload_size(entry: dict[str, Any]) -> int:
    """What SQS counts against its limit: the body, and each attribute's name, type and value."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(value["StringValue"].encode()) if "StringValue" in value else len(value.get("BinaryValue", b""))
    return size
