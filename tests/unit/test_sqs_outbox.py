"""What the dispatcher writes back to SQS: within SQS's limits, with the reason and the original intact."""

from __future__ import annotations

import json
from typing import Any, cast

from imshop_push.inbound import InboundMessage
from imshop_push.sqs_outbox import (
    MAX_REASON_CHARACTERS,
    SQS_MAX_BATCH_BYTES,
    DeadLetterQueue,
    Deferral,
    Poison,
    SourceQueue,
    dead_letter_entry,
    requeue_entry,
)

QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-requests"


class FakeSqs:
    """Accepts a batch only within SQS's limits (10 entries, 256 KiB), as SQS does, and records it."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        size = sum(len(e["MessageBody"].encode()) for e in Entries)
        size += sum(
            len(k) + len(v["DataType"]) + len(v["StringValue"].encode())
            for e in Entries
            for k, v in e.get("MessageAttributes", {}).items()
        )
        assert len(Entries) <= 10
        assert size <= SQS_MAX_BATCH_BYTES, "SQS would answer BatchRequestTooLong"
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": f"new-{e['Id']}"} for e in Entries], "Failed": []}

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str) -> dict[str, str]:  # noqa: N803
        return {"QueueUrl": f"https://sqs.eu-central-1.amazonaws.com/{QueueOwnerAWSAccountId}/{QueueName}"}


def big_message(n: int) -> InboundMessage:
    users = [f"7999{i:07d}" for i in range(8_000)]
    body = json.dumps({"userIds": users, "message": {"title": "t", "summary": "s"}})
    return InboundMessage(f"m{n}", body, QUEUE_ARN)


def test_large_requests_are_re_enqueued_in_batches_sqs_accepts() -> None:
    sqs = FakeSqs()
    deferrals = [Deferral(big_message(n), 5, f"m{n}", key_from_message_id=True) for n in range(10)]

    failed = SourceQueue(lambda: cast(Any, sqs)).requeue(deferrals)

    assert failed == set()
    assert sum(len(b) for b in sqs.batches) == 10
    assert len(sqs.batches) > 1, "precondition: ten 120 KB bodies do not fit one batch"


def test_large_poison_is_dead_lettered_in_batches_sqs_accepts() -> None:
    sqs = FakeSqs()
    poison = [Poison(big_message(n), "IMSHOP answered 400: Bad Request") for n in range(10)]

    assert DeadLetterQueue(lambda: cast(Any, sqs), "https://dlq").send(poison) == set()
    assert sum(len(b) for b in sqs.batches) == 10


def test_a_reason_quoting_a_hostile_field_name_is_escaped_and_bounded() -> None:
    hostile = "userIds\x00\ud800\ufffe" + "x" * 600_000
    entry = dead_letter_entry(Poison(InboundMessage("m1", "{}"), f"{hostile}: is not an allowed field"))

    reason = entry["MessageAttributes"]["error"]["StringValue"]
    assert len(reason) <= MAX_REASON_CHARACTERS
    assert reason.startswith("userIds\\x00\\ud800\\ufffe")
    reason.encode()  # no lone surrogate left: SQS (and UTF-8) would refuse it


def test_a_dead_letter_keeps_as_many_original_attributes_as_sqs_allows() -> None:
    attributes = {f"a{i}": {"dataType": "String", "stringValue": str(i)} for i in range(10)}
    message = InboundMessage("m1", "{oops", QUEUE_ARN, 1, attributes)

    entry = dead_letter_entry(Poison(message, "body: is not valid JSON", idempotency_key="m1"))

    names = list(entry["MessageAttributes"])
    assert len(names) == 10
    assert names[:7] == [f"a{i}" for i in range(7)]
    assert names[7:] == ["error", "sourceMessageId", "idempotencyKey"]
    assert entry["MessageBody"] == "{oops"


def test_a_re_enqueued_keyless_copy_carries_its_key_and_stays_ascii() -> None:
    body = json.dumps({"userIds": ["1"], "message": {"title": "Заказ \ufffe", "summary": "s"}}, ensure_ascii=False)
    message = InboundMessage("m1", body, QUEUE_ARN, 3, {"producer": {"dataType": "String", "stringValue": "crm"}})

    entry = requeue_entry(Deferral(message, 42, "m1", key_from_message_id=True))

    assert json.loads(entry["MessageBody"])["idempotencyKey"] == "m1"
    assert entry["MessageBody"].isascii(), "SQS refuses U+FFFE raw in a body"
    assert json.loads(entry["MessageBody"])["message"]["title"] == "Заказ \ufffe"
    assert entry["DelaySeconds"] == 42
    assert entry["MessageAttributes"] == {"producer": {"DataType": "String", "StringValue": "crm"}}
