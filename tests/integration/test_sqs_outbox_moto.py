"""Copies written back to a real SQS API (moto server over HTTP) come back exactly as they left."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from imshop_push.adapters.sqs_outbox import SourceQueue
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Deferral
from imshop_push.domain.pending import wake_body
from imshop_push.domain.sqs_batches import SQS_MAX_MESSAGE_BYTES
from imshop_push.domain.sqs_copies import KEY_ATTRIBUTE
from imshop_push_local.aws_emulator import MotoServer, make_client

REGION = "eu-central-1"


@pytest.fixture
def sqs(moto_server: MotoServer) -> Any:
    return make_client("sqs", moto_server.endpoint_url, REGION)


def queue(sqs: Any) -> tuple[str, str]:
    """A queue with SQS's default size limit (moto's own default is larger): URL and ARN."""
    url: str = sqs.create_queue(
        QueueName=f"outbox-{secrets.token_hex(4)}", Attributes={"MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES)}
    )["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def near_limit_cyrillic_body() -> str:
    """A keyless request a few hundred bytes under the limit, almost all of it two-byte Cyrillic."""
    title = "Ваш заказ передан в доставку. " * 5_000
    body = json.dumps({"userIds": ["79991234567"], "message": {"title": "", "summary": "Курьер"}}, ensure_ascii=False)
    room = SQS_MAX_MESSAGE_BYTES - 300 - len(body.encode())
    title = title.encode()[:room].decode(errors="ignore")
    return json.dumps(
        {"userIds": ["79991234567"], "message": {"title": title, "summary": "Курьер"}}, ensure_ascii=False
    )


def receive_one(sqs: Any, url: str) -> dict[str, Any]:
    for _ in range(10):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", [])
        if messages:
            [message] = messages
            return message  # type: ignore[no-any-return]
    raise AssertionError("nothing came back")


def test_a_near_limit_cyrillic_backlog_request_is_re_enqueued_and_received_back_identical(sqs: Any) -> None:
    url, arn = queue(sqs)
    body = near_limit_cyrillic_body()
    sent_id = sqs.send_message(
        QueueUrl=url,
        MessageBody=body,
        MessageAttributes={"tenant": {"DataType": "String", "StringValue": "myshop"}},
    )["MessageId"]
    original = receive_one(sqs, url)
    assert original["Body"] == body, "precondition: SQS accepted the producer's request"
    message = InboundMessage(
        sent_id,
        original["Body"],
        arn,
        1,
        {"tenant": {"dataType": "String", "stringValue": "myshop"}},
    )

    failed = SourceQueue(lambda: sqs).requeue([Deferral(message, 0, sent_id, key_is_message_id=True)])

    assert failed == set()
    sqs.delete_message(QueueUrl=url, ReceiptHandle=original["ReceiptHandle"])
    copy = receive_one(sqs, url)
    assert copy["Body"] == body
    assert copy["Body"].encode() == body.encode()
    assert copy["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] == sent_id
    assert copy["MessageAttributes"]["tenant"]["StringValue"] == "myshop"


def test_wakes_written_again_go_ten_to_a_batch_each_to_its_queue_and_a_missing_queue_fails_alone(sqs: Any) -> None:
    (url, arn), (other_url, other_arn) = queue(sqs), queue(sqs)
    missing = arn.rsplit(":", 1)[0] + ":no-such-queue"
    wakes = [(arn, f"content:{n}", 0) for n in range(12)] + [(missing, "content:lost", 0), (other_arn, "content:x", 0)]

    failed = SourceQueue(lambda: sqs).write_wakes(wakes)

    assert failed == {12}
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        bodies += [m["Body"] for m in messages]
    assert sorted(bodies) == sorted(wake_body(f"content:{n}") for n in range(12))
    assert receive_one(sqs, other_url)["Body"] == wake_body("content:x")
