"""The publisher against a real SQS API (moto server over HTTP): what a producer queues is exactly what the
dispatcher will receive and accept."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from imshop_push.domain.parsing import parse_body
from imshop_push.producers.publisher import (
    InvalidNotificationError,
    NotificationDraft,
    PublishError,
    publish_notification,
    publish_notifications,
)
from imshop_push_local.aws_clients import make_client
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
    assert failure.sender_fault, "the same call fails again as it is"
    assert failure.draft == replace(drafts[0], idempotency_key=failure.draft.idempotency_key)
    assert str(failure.draft.idempotency_key).startswith("auto-")


class _AnswerLosingProxy(ThreadingHTTPServer):
    """Forwards every request to the emulator; for the first `lose` SendMessage(Batch) calls it lets the
    emulator store the message, then closes the connection without an answer, as a reset on the way back
    would. botocore then retries the very same call."""

    daemon_threads = True

    def __init__(self, target: str, lose: int) -> None:
        super().__init__(("127.0.0.1", 0), _ForwardingHandler)
        self.target = urlsplit(target)
        self.lose = lose
        self.sends = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ForwardingHandler(BaseHTTPRequestHandler):
    server: _AnswerLosingProxy

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        target = self.server.target
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
        connection.request("POST", self.path, body=data, headers=headers)
        answer = connection.getresponse()
        payload = answer.read()
        connection.close()
        sending = "SendMessage" in self.headers.get("X-Amz-Target", "") or b"Action=SendMessage" in data
        if sending:
            self.server.sends += 1
            if self.server.lose > 0:
                self.server.lose -= 1
                self.close_connection = True
                return  # stored, but no answer reaches the caller
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def answer_losing_proxy(moto_server: MotoServer) -> Iterator[_AnswerLosingProxy]:
    proxy = _AnswerLosingProxy(moto_server.endpoint_url, lose=1)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()
    thread.join()


@pytest.mark.parametrize("batch", [False, True], ids=["publish_notification", "publish_notifications"])
def test_a_keyless_publish_that_boto3_retried_after_a_lost_answer_is_one_request(
    aws: LocalAws, answer_losing_proxy: _AnswerLosingProxy, batch: bool
) -> None:
    """SQS stored the first attempt, its answer never came, botocore sent the call again: two messages, two
    message ids, and still one key, so the dispatcher pushes them once."""
    through_proxy = make_client("sqs", answer_losing_proxy.url, aws.region)
    if batch:
        result = publish_notifications(
            through_proxy, aws.queue_url, [NotificationDraft(user_ids=["79991234567"], title="Код", summary="1234")]
        )
        assert result.ok
    else:
        publish_notification(through_proxy, aws.queue_url, user_ids=["79991234567"], title="Код", summary="1234")

    assert answer_losing_proxy.sends == 2, "botocore retried the call whose answer was lost"
    received = _receive_all(aws.client("sqs"), aws.queue_url, 2)
    assert len(received) == 2
    keys = {parse_body(m["Body"], message_id=mid).idempotency_key for mid, m in received.items()}
    assert len(keys) == 1
    assert not keys & set(received), "the key is the helper's, not either message id"
