"""The SQS side of one execution environment: gathering a batch as the event source mapping does
(batch size, batching window) and deleting what the invocation settled.

Kept apart from the worker's loop (``worker``) because these are the two places where at-least-once
is decided: a message received and not deleted comes back after its visibility timeout, whatever
happened in between.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from imshop_push_local.event_source.messages import EventSourceConfig, InvocationReport

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# SQS caps one ReceiveMessage at 10 messages; larger batches take several calls, as Lambda's do.
SQS_MAX_RECEIVE = 10
# SQS's long poll returns a delayed message the moment it becomes visible. moto's notices new sends only and
# looks at delayed messages again once a second, which would hold a wake or a copy delayed to its turn up to a
# second past it (half of a 2 s window). An idle worker short-polls at this pace instead, so what is due is
# received about when it is due, as Lambda's poller receives it (a tenth of a 2 s window late at most, and a
# few receives a second per idle worker: moto shares the machine's cores with the functions).
IDLE_POLL_SECONDS = 0.2
# Inside an open batching window, short polls at this pace gather the rest of the batch.
_WINDOW_POLL_SECONDS = 0.02


def collect_batch(sqs: SQSClient, config: EventSourceConfig) -> list[MessageTypeDef]:
    """Gather up to batch_size messages, or fewer once the batching window has closed.

    The window opens with the first message received, like MaximumBatchingWindowInSeconds.
    """
    batch: list[MessageTypeDef] = []
    deadline: float | None = None
    while len(batch) < config.batch_size:
        response = sqs.receive_message(
            QueueUrl=config.queue_url,
            MaxNumberOfMessages=min(SQS_MAX_RECEIVE, config.batch_size - len(batch)),
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        received = response.get("Messages", [])
        batch.extend(received)
        if deadline is None:
            if not received:
                return batch
            deadline = time.monotonic() + config.batching_window_seconds
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if not received:
            time.sleep(min(_WINDOW_POLL_SECONDS, remaining))
    return batch


def delete_settled(
    sqs: SQSClient, config: EventSourceConfig, index: int, messages: list[MessageTypeDef], report: InvocationReport
) -> None:
    """Delete every message the invocation did not report as failed; ``index`` names the worker in its errors."""
    failed = set(report.failed_ids)
    settled = [m for m in messages if m.get("MessageId") not in failed]
    try:
        for start in range(0, len(settled), SQS_MAX_RECEIVE):
            chunk = settled[start : start + SQS_MAX_RECEIVE]
            response = sqs.delete_message_batch(
                QueueUrl=config.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                # The message stays and comes back; that is SQS's at-least-once, not a poller bug.
                sys.stderr.write(f"[event source] delete failed: {failure}\n")
    except Exception as exc:  # the messages come back after the visibility timeout: at-least-once
        sys.stderr.write(f"[event source worker {index}] DeleteMessageBatch failed: {exc}\n")
