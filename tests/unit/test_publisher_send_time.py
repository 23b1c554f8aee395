"""The publishing helper's side of send time: `send_at` as the dispatcher reads it, and `cancel_notification`
checked with the dispatcher's own rule before SQS is called."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from test_publisher import QUEUE_URL, FakeSqs, _client

from imshop_push.model import Cancel
from imshop_push.parsing import parse_body, parse_message
from imshop_push.publisher import (
    InvalidNotificationError,
    LaneQueues,
    NotificationDraft,
    cancel_notification,
    publish_notification,
    publish_notifications,
)

MSK = timezone(timedelta(hours=3))
QUEUES = LaneQueues(transactional=QUEUE_URL, bulk=QUEUE_URL + "-bulk")


def test_send_at_is_queued_as_an_instant_the_dispatcher_reads() -> None:
    sqs = FakeSqs()

    publish_notification(
        _client(sqs), QUEUE_URL, user_ids=["u"], title="t", summary="s", send_at=datetime(2027, 1, 15, 10, tzinfo=MSK)
    )

    body = sqs.calls[0][1]["MessageBody"]
    assert json.loads(body)["sendAt"] == "2027-01-15T07:00:00Z"
    assert parse_body(body, message_id="m").send_at == datetime(2027, 1, 15, 7, tzinfo=UTC)


def test_a_naive_or_offsetless_send_at_is_refused_before_sqs_is_called() -> None:
    sqs = FakeSqs()

    with pytest.raises(InvalidNotificationError, match="sendAt: must be a timezone-aware datetime"):
        publish_notification(
            _client(sqs), QUEUE_URL, user_ids=["u"], title="t", summary="s", send_at=datetime(2027, 1, 1)
        )
    with pytest.raises(InvalidNotificationError, match="sendAt: must be an RFC 3339 timestamp with a time zone"):
        publish_notification(
            _client(sqs), QUEUE_URL, user_ids=["u"], title="t", summary="s", send_at="2027-01-01T10:00"
        )
    assert sqs.calls == []


def test_a_batch_send_at_schedules_the_drafts_without_their_own() -> None:
    sqs = FakeSqs()
    own = "2027-01-16T10:00:00+03:00"
    drafts = [
        NotificationDraft(user_ids=["a"], title="t", summary="s"),
        NotificationDraft(user_ids=["b"], title="t", summary="s", send_at=own),
    ]

    publish_notifications(_client(sqs), QUEUE_URL, drafts, send_at="2027-01-15T10:00:00+03:00")

    bodies = [json.loads(e["MessageBody"]) for e in sqs.batch_calls()[0]]
    assert [b["sendAt"] for b in bodies] == ["2027-01-15T10:00:00+03:00", own]


def test_cancel_notification_queues_exactly_a_cancel_on_the_chosen_lane() -> None:
    sqs = FakeSqs()

    message_id = cancel_notification(_client(sqs), QUEUES, "order-1-shipped")
    cancel_notification(_client(sqs), QUEUES, "bonus", lane="bulk")

    assert message_id == "mid-1"
    (_, first), (_, second) = sqs.calls
    assert first == {"QueueUrl": QUEUE_URL, "MessageBody": '{"cancel":{"idempotencyKey":"order-1-shipped"}}'}
    assert second["QueueUrl"] == QUEUE_URL + "-bulk"
    assert parse_message(first["MessageBody"], message_id="m") == Cancel("m", "order-1-shipped")


@pytest.mark.parametrize("key", ["", "k" * 257, 7, None])
def test_cancel_notification_refuses_a_key_the_dispatcher_would_reject(key: object) -> None:
    sqs = FakeSqs()

    with pytest.raises(InvalidNotificationError, match=r"cancel\.idempotencyKey: must be"):
        cancel_notification(_client(sqs), QUEUE_URL, key)  # type: ignore[arg-type]
    assert sqs.calls == []


def test_one_status_update_carries_its_collapse_key_and_created_at_as_the_dispatcher_reads_them() -> None:
    sqs = FakeSqs()

    publish_notification(
        _client(sqs),
        QUEUE_URL,
        user_ids=["u"],
        title="Заказ 123 собран",
        summary="s",
        collapse_key="order-123-status",
        created_at=datetime(2026, 12, 1, 13, 5, tzinfo=MSK),
    )

    request = parse_body(sqs.calls[0][1]["MessageBody"], message_id="m")
    assert request.collapse_key == "order-123-status"
    assert request.created_at == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
