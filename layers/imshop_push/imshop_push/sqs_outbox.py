"""Messages the dispatcher writes back to SQS: poison to the dead-letter queue, backlog to the source queue.

Both go through SendMessageBatch; an entry SQS refuses is reported back so the caller can return that record
to SQS as a failure instead of losing it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.inbound import InboundMessage, to_send_attributes

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SQS_MAX_ATTRIBUTES = 10
SQS_MAX_BATCH = 10
SQS_MAX_DELAY_SECONDS = 900
REASON_ATTRIBUTE = "error"
SOURCE_ID_ATTRIBUTE = "sourceMessageId"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Poison:
    message: InboundMessage
    reason: str


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
        entries = [(p.message.message_id, _dead_letter_entry(p)) for p in poison]
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
            failed |= _send_batches(self._client(), url, [(d.message.message_id, _requeue_entry(d)) for d in items])
        return failed

    @cache  # noqa: B019 - one instance per execution environment; queue URLs never change
    def _queue_url(self, arn: str) -> str:
        parts = arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ValueError("eventSourceARN is not an SQS queue ARN")
        return self._client().get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


def _dead_letter_entry(poison: Poison) -> dict[str, Any]:
    attributes = to_send_attributes(poison.message.message_attributes)
    kept = dict(list(attributes.items())[: SQS_MAX_ATTRIBUTES - 2])
    if len(kept) < len(attributes):
        logger.warning(
            "dead letter keeps %d of %d message attributes (SQS allows %d)",
            len(kept),
            len(attributes),
            SQS_MAX_ATTRIBUTES,
        )
    kept[REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": poison.reason}
    kept[SOURCE_ID_ATTRIBUTE] = {"DataType": "String", "StringValue": poison.message.message_id}
    return {"MessageBody": poison.message.body, "MessageAttributes": kept}


def _requeue_entry(deferral: Deferral) -> dict[str, Any]:
    body = deferral.message.body
    if deferral.key_from_message_id:
        document = json.loads(body)
        document["idempotencyKey"] = deferral.idempotency_key
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
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
    for start in range(0, len(entries), SQS_MAX_BATCH):
        chunk = entries[start : start + SQS_MAX_BATCH]
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
