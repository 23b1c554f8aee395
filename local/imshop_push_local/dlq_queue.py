"""Reading a dead-letter queue without disturbing it, and knowing which queues feed it.

Listing receives (SQS has no other way to read a message), and every receive counts towards a queue's
`maxReceiveCount`. So listing reads only queues that are a dead-letter queue (some queue's redrive policy names
them) and have no redrive policy of their own, and receives each message once per listing: hidden while the
listing runs, then made visible again at once. A live request queue is refused: listing it twice would push a
request past its `maxReceiveCount` into the DLQ.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from imshop_push.domain.sqs_copies import REASON_ATTRIBUTE, SOURCE_ID_ATTRIBUTE
from imshop_push_local.dlq_masking import DEFAULT_PREVIEW_CHARS, mask_text, preview_body
from imshop_push_local.dlq_names import CliError, describe_client_error, queue_url_of

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef, MessageTypeDef

SQS_BATCH = 10
LISTING_VISIBILITY_SECONDS = 30
"""How long a listed message stays hidden if the listing dies before it lets the messages go."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    source_message_id: str | None
    reason: str | None
    sent_at: str | None
    receive_count: int | None
    other_attributes: list[str]
    body_preview: str

    def as_json(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "sourceMessageId": self.source_message_id,
            "reason": self.reason,
            "sentAt": self.sent_at,
            "receiveCount": self.receive_count,
            "otherAttributes": self.other_attributes,
            "bodyPreview": self.body_preview,
        }


def source_queue_urls(sqs: SQSClient, url: str) -> list[str]:
    """The queues whose redrive policy names this one; an error names the permission it needs."""
    try:
        urls: list[str] = []
        pages = sqs.get_paginator("list_dead_letter_source_queues").paginate(QueueUrl=url)
        for page in pages:
            urls.extend(page.get("queueUrls", []))
    except ClientError as e:
        raise CliError(
            f"cannot list the queues that dead-letter into {url} ({describe_client_error(e)}); the DLQ commands "
            "need sqs:ListDeadLetterSourceQueues on it to know it is a dead-letter queue and where its messages "
            "belong"
        ) from None
    return urls


def source_queue_arns(sqs: SQSClient, url: str) -> list[str]:
    arns = []
    for source in source_queue_urls(sqs, url):
        attributes = sqs.get_queue_attributes(QueueUrl=source, AttributeNames=["QueueArn"]).get("Attributes", {})
        arns.append(attributes["QueueArn"])
    return arns


def redrive_destination(sqs: SQSClient, arn: str, requested: str) -> str:
    """Where the messages go: a queue that feeds this DLQ, so that one lane's poison never lands in another's queue
    (bulk dead letters in the transactional lane would compete with order statuses).

    Named explicitly even when it is the only one: the dispatcher dead-letters with SendMessage, and SQS records an
    "original source queue" only for messages it dead-lettered itself through the redrive policy.
    """
    sources = source_queue_arns(sqs, queue_url_of(sqs, arn))
    if not sources:
        raise CliError(f"{arn} is not a dead-letter queue: no queue names it in its redrive policy")
    if requested and requested not in sources:
        raise CliError(
            f"{requested} does not feed {arn} (its redrive policy does not name it): redrive moves dead letters "
            f"only back to a queue they came from; this DLQ's: {', '.join(sources)}"
        )
    if requested:
        return requested
    return sources[0] if len(sources) == 1 else ""


def require_listable(sqs: SQSClient, url: str, *, force: bool) -> None:
    """Refuse a queue that listing would harm: one with a maxReceiveCount of its own (a request queue), or,
    unless forced, one that no redrive policy names (not known to be a DLQ)."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    if "RedrivePolicy" in attributes:
        limit = json.loads(attributes["RedrivePolicy"]).get("maxReceiveCount", "?")
        raise CliError(
            f"{url} has a redrive policy of its own (maxReceiveCount {limit}): it is a queue requests are consumed "
            "from, not a dead-letter queue; listing receives every message it shows, and receives count towards "
            "maxReceiveCount, so listing it would dead-letter live requests. Name its dead-letter queue instead"
        )
    if not force and not source_queue_urls(sqs, url):
        raise CliError(
            f"{url} is not a dead-letter queue: no queue names it in its redrive policy. Listing receives every "
            "message it shows, so it reads dead-letter queues only; for a dead-letter queue whose source queue "
            "is gone, pass --force"
        )


def peek(sqs: SQSClient, queue_url: str, *, limit: int) -> list[MessageTypeDef]:
    """Receive up to `limit` messages, each once, and make them visible again before returning.

    Received messages stay hidden until released, so each round brings only messages not seen yet; long
    polling (1 s) asks every SQS server, so an empty answer means nothing more is visible.
    """
    seen: dict[str, MessageTypeDef] = {}
    try:
        while len(seen) < limit:
            response = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(SQS_BATCH, limit - len(seen)),
                VisibilityTimeout=LISTING_VISIBILITY_SECONDS,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                seen[message["MessageId"]] = message
    finally:
        release(sqs, queue_url, list(seen.values()))
    return list(seen.values())[:limit]


def release(sqs: SQSClient, queue_url: str, messages: list[MessageTypeDef]) -> None:
    """Make listed messages visible again now; one that cannot be released returns after the listing timeout."""
    problems: list[str] = []
    for start in range(0, len(messages), SQS_BATCH):
        chunk = messages[start : start + SQS_BATCH]
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
        ]
        try:
            failed = sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
            problems += [f"{f.get('Code', '?')}" for f in failed]
        except ClientError as e:
            problems += [describe_client_error(e)] * len(chunk)
    if problems:
        print(
            f"warning: {len(problems)} listed message(s) stay hidden for up to {LISTING_VISIBILITY_SECONDS} s "
            f"({problems[0]})",
            file=sys.stderr,
        )


def to_dead_letter(message: MessageTypeDef, *, preview_chars: int = DEFAULT_PREVIEW_CHARS) -> DeadLetter:
    attributes = message.get("MessageAttributes", {})
    system = message.get("Attributes", {})
    receive_count = system.get("ApproximateReceiveCount")
    reason = _string_attribute(message, REASON_ATTRIBUTE)
    return DeadLetter(
        message_id=message["MessageId"],
        source_message_id=_string_attribute(message, SOURCE_ID_ATTRIBUTE),
        reason=mask_text(reason) if reason is not None else None,
        sent_at=from_millis(system.get("SentTimestamp")),
        receive_count=int(receive_count) if receive_count and receive_count.isdigit() else None,
        other_attributes=sorted(name for name in attributes if name not in {REASON_ATTRIBUTE, SOURCE_ID_ATTRIBUTE}),
        body_preview=preview_body(message.get("Body", ""), preview_chars),
    )


def _string_attribute(message: MessageTypeDef, name: str) -> str | None:
    attribute = message.get("MessageAttributes", {}).get(name)
    return attribute.get("StringValue") if attribute is not None else None


def from_millis(value: str | int | None) -> str | None:
    try:
        millis = int(value) if value is not None else None
    except ValueError:
        return None
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
