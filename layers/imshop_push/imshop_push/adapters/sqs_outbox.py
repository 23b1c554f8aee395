"""Messages the dispatcher writes back to SQS: poison to the dead-letter queue, backlog to the source queue.

Both go through SendMessageBatch; an entry SQS would refuse, or does refuse, is reported back so the caller can
return that record to SQS as a failure instead of losing it. What each entry holds is `sqs_copies`' business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.domain.history import history_copy_body
from imshop_push.domain.model import Deferral, Poison
from imshop_push.domain.pending import GROUP_ATTRIBUTE, WAKE_TOKEN_ATTRIBUTE, wake_body
from imshop_push.domain.sqs_batches import batches
from imshop_push.domain.sqs_copies import SQS_MAX_DELAY_SECONDS, EntryTooLargeError, dead_letter_entry, requeue_entry
from imshop_push.domain.threads import map_in_threads

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


logger = logging.getLogger(__name__)


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

    def wake(self, event_source_arn: str, group: str, delay_seconds: int, token: str | None = None) -> bool:
        """The wake of a pending group (`pending.py`), to the queue its requests came from."""
        try:
            self._client().send_message(
                QueueUrl=self._queue_url(event_source_arn),
                MessageBody=wake_body(group),
                DelaySeconds=max(0, min(SQS_MAX_DELAY_SECONDS, delay_seconds)),
                MessageAttributes=_wake_attributes(group, token),
            )
        except (ClientError, BotoCoreError, ValueError):
            logger.exception("cannot write the wake of a pending group")
            return False
        return True

    def write_wakes(self, wakes: Sequence[tuple[str, str, int]], tokens: Sequence[str | None] = ()) -> set[int]:
        """Wakes written again for later windows (`stages/take_pending.py`): ten to a SendMessageBatch, side by side,
        so that a batch full of them is written within the invocation's finishing reserve."""
        failed: set[int] = set()
        by_queue: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for position, (arn, group, delay_seconds) in enumerate(wakes):
            try:
                url = self._queue_url(arn)
            except (ClientError, BotoCoreError, ValueError):
                logger.exception("cannot resolve the queue of a wake")
                failed.add(position)
                continue
            entry = {
                "MessageBody": wake_body(group),
                "DelaySeconds": max(0, min(SQS_MAX_DELAY_SECONDS, delay_seconds)),
                "MessageAttributes": _wake_attributes(group, tokens[position] if position < len(tokens) else None),
            }
            by_queue.setdefault(url, []).append((str(position), entry))
        for url, entries in by_queue.items():
            failed |= {int(position) for position in _send_batches(self._client(), url, entries)}
        return failed

    def history_copy(self, event_source_arn: str, token: str) -> bool:
        """History entries kept for later (`stages/history.py`): the next invocation that receives it writes them."""
        try:
            self._client().send_message(
                QueueUrl=self._queue_url(event_source_arn), MessageBody=history_copy_body(token)
            )
        except (ClientError, BotoCoreError, ValueError):
            logger.exception("cannot write a history copy")
            return False
        return True

    @cache  # noqa: B019 - one instance per execution environment; queue URLs never change
    def _queue_url(self, arn: str) -> str:
        parts = arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ValueError("eventSourceARN is not an SQS queue ARN")
        return self._client().get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]


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

    return set().union(*map_in_threads(send, list(batches(entries, lambda item: item[1]))))


def _wake_attributes(group: str, token: str | None) -> dict[str, Any]:
    attributes = {GROUP_ATTRIBUTE: {"DataType": "String", "StringValue": group}}
    if token is not None:
        attributes[WAKE_TOKEN_ATTRIBUTE] = {"DataType": "String", "StringValue": token}
    return attributes
