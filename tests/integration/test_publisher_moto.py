"""The publisher against a real SQS API (moto server over HTTP): what a producer queues is exactly what the
dispatcher will receive and accept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from imshop_push.parsing import parse_body
from imshop_push.publisher import (
    InvalidNotificationError,
    NotificationDraft,
    PublishError,
    publish_notification,
    publish_notifications,
)
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision

FAKE_API_URL = "https://imshop.invalid/api/push/secret-token"


@pytest.fixture
def aws(moto_server: MotoServer) -> LocalAws:
    return provision(moto_server.endpoint_url, api_url=FAKE_API_URL, prefix="publisher-test")


def _receive_all(sqs: Any, queue_url: str, expected: int) -> dict[str, dict[str, Any]]:
    messages: dict[str, dict[str, Any]] = {}
    for _ in range(20):
        if len(messages) >= expected:
            break
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            messages[message["MessageId"]] = message
    return messages


def test_a_published_request_is_received_as_the_dispatcher_accepts_it(aws: LocalAws) -> None:
    sqs = aws.client("sqs")
    message_id = publish_notification(
        sqs,
        aws.queue_url,
        user_ids=["79991234567", "79997654321"],
        install_ids=["5f1c0e9a-3b7d-4c2e-9a41-7d2f0c6b8e13"],
        title="Заказ №123 передан в доставку",
        summary="Курьер привезёт заказ завтра до 14:00. Трек-номер в приложении.",
        deeplink="myshop://orders/123",
        idempotency_key="order-123-shipped",
        expires_at=datetime(2099, 12, 31, 21, 0, tzinfo=UTC),
        message_attributes={"tenant": {"DataType": "String", "StringValue": "myshop"}},
    )

    [message] = _receive_all(sqs, aws.queue_url, 1).values()
    assert message["MessageId"] == message_id
    assert message["MessageAttributes"]["tenant"]["StringValue"] == "myshop"
    request = parse_body(message["Body"], message_id=message["MessageId"])
    assert request.idempotency_key == "order-123-shipped"
    assert request.content.title == "Заказ №123 передан в доставку"
    assert request.content.deeplink == "myshop://orders/123"
    assert request.recipients == (
        ("userIds", "79991234567"),
        ("userIds", "79997654321"),
        ("installIds", "5f1c0e9a-3b7d-4c2e-9a41-7d2f0c6b8e13"),
    )
    assert request.expires_at == datetime(2099, 12, 31, 21, 0, tzinfo=UTC)
    assert json.loads(message["Body"])["expiresAt"] == "2099-12-31T21:00:00Z"


def test_a_batch_is_queued_in_full_and_every_body_is_accepted(aws: LocalAws) -> None:
    sqs = aws.client("sqs")
    drafts = [
        NotificationDraft(
            user_ids=[f"7999{n:07d}"],
            title="Бонусы сгорают через 3 дня",
            summary=f"Бонусов на вашем счёте: {100 + n}. Потратьте их до конца недели.",
            deeplink="myshop://bonuses",
            idempotency_key=f"bonus-reminder-2099-01-{n}",
        )
        for n in range(23)
    ]

    result = publish_notifications(sqs, aws.queue_url, drafts)

    assert result.ok
    assert len(result.successful) == 23
    received = _receive_all(sqs, aws.queue_url, 23)
    assert set(received) == set(result.message_ids)
    by_key = {parse_body(m["Body"], message_id=mid).idempotency_key: m for mid, m in received.items()}
    for draft in drafts:
        assert json.loads(by_key[str(draft.idempotency_key)]["Body"]) == draft.to_body()


def test_an_invalid_request_never_reaches_the_queue(aws: LocalAws) -> None:
    sqs = aws.client("sqs")
    with pytest.raises(InvalidNotificationError, match=r"^message.summary: must not be empty$"):
        publish_notification(sqs, aws.queue_url, user_ids=["79991234567"], title="Скидка", summary="")
    attributes = sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_a_missing_queue_fails_the_batch_with_what_was_not_queued(aws: LocalAws) -> None:
    sqs = aws.client("sqs")
    missing = aws.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    drafts = [NotificationDraft(user_ids=["79991234567"], title="Скидка", summary="Только сегодня")]
    with pytest.raises(PublishError) as caught:
        publish_notifications(sqs, missing, drafts)
    [failure] = caught.value.result.failed
    assert "NonExistentQueue" in failure.code or "QueueDoesNotExist" in failure.code
    assert failure.draft is drafts[0]
