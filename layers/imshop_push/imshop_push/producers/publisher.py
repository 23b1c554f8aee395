"""Publishing notification requests: the producers' side of the queue, shipped in the same layer.

A producer (order system, CRM job, another Lambda) fires a push by sending one SQS message and forgetting about
it. If that message is malformed, the dispatcher can only dead-letter it minutes later, far from the code that
built it. So every body is checked here, before SQS is called, with the very schema and rules the dispatcher
applies (`imshop_push.domain.parsing.parse_body`): poison is stopped at its source, as an exception in the producer.

Usage::

    import boto3
    from datetime import UTC, datetime, timedelta
    from imshop_push.producers.publisher import NotificationDraft, publish_notification, publish_notifications

    sqs = boto3.client("sqs")
    message_id = publish_notification(
        sqs,
        queue_url,
        user_ids=["79991234567"],
        title="Заказ №123 передан в доставку",
        summary="Курьер привезёт заказ завтра до 14:00",
        deeplink="myshop://orders/123",
        idempotency_key="order-123-shipped",  # the same key again is a no-op, not a second push
        expires_at=datetime.now(UTC) + timedelta(hours=6),  # never delivered late
    )

    result = publish_notifications(
        sqs,
        queue_url,
        [NotificationDraft(user_ids=[customer_id], title="Бонусы сгорают", summary=text) for customer_id in ids],
    )
    for failure in result.failed:  # what SQS still refused after retries; nothing is dropped silently
        ...

Lanes: the stack has a transactional queue (`QueueUrl` output: order status, codes, anything a customer waits
for) and a bulk queue (`BulkQueueUrl`: campaigns, reminders), sharing one rate limit in which transactional
requests go first. Give both URLs once as `LaneQueues` and choose per call with `lane=`::

    queues = LaneQueues(transactional=outputs["QueueUrl"], bulk=outputs["BulkQueueUrl"])
    publish_notification(sqs, queues, lane="bulk", user_ids=ids, title="Бонусы сгорают", summary=text)

A plain URL string still works as before and is used as given, whatever `lane` says (it names the queue).

A personal text that should not wait long for its own call (10 calls a minute) takes a `fallback=`: a text it
shares with others, sent instead when its own call cannot start within `after_seconds` of its being due; the
personal text goes to the in-app history::

    publish_notification(sqs, queues, user_ids=[customer_id], title="Заказ 123 передан в доставку",
                         summary="Курьер привезёт заказ завтра", deeplink="myshop://orders/123",
                         fallback=FallbackText(title="Статус заказа изменился", summary="Подробности в приложении",
                                               deeplink="myshop://orders", after_seconds=60))

Send time: `send_at=` schedules a request (any horizon up to the stack's state TTL, 14 days by default), and
`cancel_notification` stops whatever of a request is not yet sent, even one not queued yet::

    publish_notification(sqs, queues, lane="bulk", user_ids=ids, title=t, summary=s,
                         idempotency_key="bonus-2026-12-04", send_at=datetime(2026, 12, 4, 10, tzinfo=MSK))
    cancel_notification(sqs, queues, "bonus-2026-12-04")

Only the standard library and the layer are imported at module import time: boto3 is the caller's client, so a
producer that bundles its own boto3 (or a stub in its tests) is never forced to import ours.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from imshop_push.domain.lanes import Lane
from imshop_push.domain.send_time import DEFAULT_STATE_TTL_SECONDS, SendTime
from imshop_push.domain.sqs_batches import batches
from imshop_push.producers.drafts import (
    FallbackText,
    InvalidNotificationError,
    NotificationDraft,
    cancel_body,
    checked_message,
)
from imshop_push.producers.publish_results import FailedMessage, PublishedMessage, PublishError, PublishResult, Tally

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

__all__ = [
    "FailedMessage",
    "FallbackText",
    "InvalidNotificationError",
    "LaneQueues",
    "NotificationDraft",
    "PublishError",
    "PublishResult",
    "PublishedMessage",
    "cancel_notification",
    "publish_notification",
    "publish_notifications",
]

DEFAULT_MAX_ATTEMPTS = 3
RETRY_BASE_DELAY_SECONDS = 0.2
OWN_KEY_PREFIX = "auto-"
"""Keys the helper gives drafts that have none: `auto-` and a random UUID."""

type LaneName = Literal["transactional", "bulk"] | Lane


@dataclass(frozen=True, slots=True)
class LaneQueues:
    """The stack's two queue URLs (outputs `QueueUrl` and `BulkQueueUrl`)."""

    transactional: str
    bulk: str

    def url(self, lane: LaneName) -> str:
        return self.bulk if Lane(lane) is Lane.BULK else self.transactional


def _queue_url(queue_url: str | LaneQueues, lane: LaneName) -> str:
    Lane(lane)  # an unknown lane is a programming error, refused before SQS is called
    return queue_url.url(lane) if isinstance(queue_url, LaneQueues) else queue_url


def publish_notification(
    sqs_client: SQSClient,
    queue_url: str | LaneQueues,
    *,
    lane: LaneName = "transactional",
    user_ids: Sequence[str] = (),
    install_ids: Sequence[str] = (),
    title: str,
    summary: str,
    deeplink: str | None = None,
    idempotency_key: str | None = None,
    expires_at: datetime | str | None = None,
    send_at: datetime | str | None = None,
    collapse_key: str | None = None,
    created_at: datetime | str | None = None,
    fallback: FallbackText | None = None,
    message_attributes: Mapping[str, MessageAttributeValueTypeDef] | None = None,
    state_ttl_seconds: float = DEFAULT_STATE_TTL_SECONDS,
) -> str:
    """Validate and queue one notification request; return its SQS MessageId.

    Raises `InvalidNotificationError` without calling SQS when the dispatcher would reject the request (or SQS
    refuse it), and lets boto3's own errors through (they already carry boto3's retries). Without
    `idempotency_key` the request gets a key of its own (`auto-` and a UUID), the same on every retry boto3 makes
    of this call: a retry whose first answer was lost is a duplicate, not a second push. Give a key to be able to
    cancel the request or publish it again from another process. Without `created_at`, a request with a
    `collapse_key` is stamped with the current time, later than any this process stamped before.
    `state_ttl_seconds` is the stack's STATE_TTL_SECONDS: how far ahead `send_at` may be. `fallback` is the
    shared text its recipients get instead when its own call cannot start in time.
    """
    draft = NotificationDraft(
        user_ids=user_ids,
        install_ids=install_ids,
        title=title,
        summary=summary,
        deeplink=deeplink,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        send_at=send_at,
        collapse_key=collapse_key,
        created_at=created_at,
        fallback=fallback,
        message_attributes=message_attributes,
    )
    draft = _own_key_and_order(draft)
    body = checked_message(draft, now=time.time(), send_time=SendTime(max_ahead_seconds=state_ttl_seconds))
    queue_url = _queue_url(queue_url, lane)
    if draft.message_attributes:
        response = sqs_client.send_message(
            QueueUrl=queue_url, MessageBody=body, MessageAttributes=dict(draft.message_attributes)
        )
    else:
        response = sqs_client.send_message(QueueUrl=queue_url, MessageBody=body)
    return response["MessageId"]


def publish_notifications(
    sqs_client: SQSClient,
    queue_url: str | LaneQueues,
    requests: Sequence[NotificationDraft],
    *,
    lane: LaneName = "transactional",
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    send_at: datetime | str | None = None,
    state_ttl_seconds: float = DEFAULT_STATE_TTL_SECONDS,
) -> PublishResult:
    """Validate all drafts, then queue them with SendMessageBatch (10 per call, within SQS's batch size).

    All drafts are validated first (the dispatcher's rules, the `send_at` horizon, SQS's size limit), so one bad
    draft stops the whole publication before any message exists: a half-published campaign is harder to repair
    than one that never started. Entries SQS refuses on its own side (`SenderFault` false: throttling, internal
    errors) are retried up to `max_attempts` in all, with a short backoff; entries refused for what they are are
    reported at once. A call that fails as a whole (no such queue, no permission, network gone after boto3's
    retries) raises `PublishError`; messages of earlier calls have been queued by then, so the `PublishError`
    raised carries, draft by draft, which were queued, which that call carried, and which were not sent at all.
    `send_at` schedules every draft that has no `send_at` of its own.

    Drafts without a key get one of their own, and collapsed drafts without `created_at` are stamped in the
    order given, before anything is sent: retries (boto3's, these attempts', or republishing
    `[f.draft for f in result.failed]`) keep both, so they are duplicates, never second pushes, and a draft
    retried after a later one of its `collapse_key` still counts as the older.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if send_at is not None:
        requests = [d if d.send_at is not None else replace(d, send_at=send_at) for d in requests]
    queue_url = _queue_url(queue_url, lane)
    requests = [_own_key_and_order(d) for d in requests]
    send_time = SendTime(max_ahead_seconds=state_ttl_seconds)
    now = time.time()
    bodies = []
    for index, draft in enumerate(requests):
        try:
            bodies.append(checked_message(draft, now=now, send_time=send_time))
        except InvalidNotificationError as e:
            raise InvalidNotificationError(e.reason, index=index) from None

    entries = [_batch_entry(i, body, draft) for i, (body, draft) in enumerate(zip(bodies, requests, strict=True))]
    tally = Tally(requests)
    pending = list(range(len(requests)))
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            sleep(RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 2))
        retry: list[int] = []
        chunks = list(batches(pending, entries.__getitem__))
        for position, chunk in enumerate(chunks):
            try:
                response = sqs_client.send_message_batch(QueueUrl=queue_url, Entries=[entries[i] for i in chunk])
            except Exception as e:
                tally.fail_call(chunk, e, attempt)
                tally.not_sent([i for c in chunks[position + 1 :] for i in c], e, attempt)
                raise PublishError(tally.result()) from e
            retry += tally.record(response, attempt)
        if not retry:
            break
        pending = sorted(retry)
    return tally.result()


def cancel_notification(
    sqs_client: SQSClient, queue_url: str | LaneQueues, idempotency_key: str, *, lane: LaneName = "transactional"
) -> str:
    """Cancel the request with this idempotency key (the key it was published with: a draft this helper published
    without one has a key of its own, `PublishedMessage.idempotency_key`; a message sent otherwise without one, the
    default key the dispatcher gave it); return the cancel's SQS MessageId. Whatever of the request is not yet
    sent is never sent, also when the cancel is queued first; a fully sent request is left as it is. The
    transactional lane by default: a cancel should not wait behind a bulk backlog. Raises
    `InvalidNotificationError` without calling SQS for a key the dispatcher would reject."""
    body = cancel_body(idempotency_key)
    return sqs_client.send_message(QueueUrl=_queue_url(queue_url, lane), MessageBody=body)["MessageId"]


class _CreatedAtClock:
    """Stamps for collapsed drafts: the current time, and always later than the last stamp of this process, so
    drafts published one after the other are ordered as they were published, even within one millisecond."""

    def __init__(self) -> None:
        self._last_ms = 0
        self._lock = threading.Lock()

    def stamp(self) -> datetime:
        with self._lock:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            ms = self._last_ms
        # The middle of the millisecond: the dispatcher's float conversion to epoch ms lands on `ms` exactly.
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms, microseconds=500)


_created_at_clock = _CreatedAtClock()


def _own_key_and_order(draft: NotificationDraft) -> NotificationDraft:
    """The key and the createdAt a draft keeps across every retry of it, where the producer gave none."""
    if draft.idempotency_key is None:
        draft = replace(draft, idempotency_key=f"{OWN_KEY_PREFIX}{uuid.uuid4()}")
    if draft.collapse_key is not None and draft.created_at is None:
        draft = replace(draft, created_at=_created_at_clock.stamp())
    return draft


def _batch_entry(index: int, body: str, draft: NotificationDraft) -> SendMessageBatchRequestEntryTypeDef:
    # The position doubles as the entry Id: unique in the batch, and SQS's answer maps straight back to a draft.
    entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(index), "MessageBody": body}
    if draft.message_attributes:
        entry["MessageAttributes"] = dict(draft.message_attributes)
    return entry
