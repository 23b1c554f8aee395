"""What the dispatcher writes back to SQS: within SQS's limits, with the reason and the original intact."""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from imshop_push.adapters.sqs_outbox import DeadLetterQueue, SourceQueue
from imshop_push.domain.inbound import InboundMessage, to_send_attributes
from imshop_push.domain.model import Deferral, Poison
from imshop_push.domain.sqs_batches import SQS_MAX_MESSAGE_BYTES, payload_size
from imshop_push.domain.sqs_copies import (
    KEY_ATTRIBUTE,
    MAX_REASON_CHARACTERS,
    MIN_REASON_BYTES,
    SQS_MAX_ATTRIBUTES,
    EntryTooLargeError,
    dead_letter_entry,
    requeue_entry,
)

QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-requests"
MESSAGE_ID = "6f1c2b9e-0d4a-4c1e-9b7f-3a2d5e8c1f00"


def sent_size(entry: dict[str, Any]) -> int:
    """SQS's own count, written out independently of the module: body, and every attribute's name, type, value."""
    size = len(entry["MessageBody"].encode("utf-8"))
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(value["StringValue"].encode()) if "StringValue" in value else len(value["BinaryValue"])
    return size


class FakeSqs:
    """Accepts a batch only within SQS's limits (10 entries, 10 attributes and 256 KiB per message, 256 KiB per
    call, no empty attribute values), as SQS does, and records it."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        assert len(Entries) <= 10
        for e in Entries:
            assert sent_size(e) <= SQS_MAX_MESSAGE_BYTES, "SQS would refuse the message as too long"
            assert len(e.get("MessageAttributes", {})) <= SQS_MAX_ATTRIBUTES
            assert all(v.get("StringValue", "x") for v in e.get("MessageAttributes", {}).values())
        assert sum(sent_size(e) for e in Entries) <= SQS_MAX_MESSAGE_BYTES, "SQS would answer BatchRequestTooLong"
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": f"new-{e['Id']}"} for e in Entries], "Failed": []}

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str) -> dict[str, str]:  # noqa: N803
        return {"QueueUrl": f"https://sqs.eu-central-1.amazonaws.com/{QueueOwnerAWSAccountId}/{QueueName}"}

    def sent(self) -> list[dict[str, Any]]:
        return [e for batch in self.batches for e in batch]


def big_message(n: int) -> InboundMessage:
    users = [f"7999{i:07d}" for i in range(8_000)]
    body = json.dumps({"userIds": users, "message": {"title": "t", "summary": "s"}})
    return InboundMessage(f"m{n}", body, QUEUE_ARN)


def request_body(size: int, filler: str = "Ж") -> str:
    """A valid keyless request of exactly `size` UTF-8 bytes (give or take a character of `filler`)."""
    shell = json.dumps({"userIds": ["79991234567"], "message": {"title": "", "summary": "s"}})
    room = size - len(shell.encode())
    title = filler * (room // len(filler.encode()))
    return json.dumps({"userIds": ["79991234567"], "message": {"title": title, "summary": "s"}}, ensure_ascii=False)


def lambda_attributes(attributes: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: {"dataType": "String", "stringValue": value} for name, value in attributes.items()}


# --- batching -------------------------------------------------------------------------------------------


def test_large_requests_are_re_enqueued_in_batches_sqs_accepts() -> None:
    sqs = FakeSqs()
    deferrals = [Deferral(big_message(n), 5, f"m{n}", key_is_message_id=True) for n in range(10)]

    failed = SourceQueue(lambda: cast(Any, sqs)).requeue(deferrals)

    assert failed == set()
    assert sum(len(b) for b in sqs.batches) == 10
    assert len(sqs.batches) > 1, "precondition: ten 120 KB bodies do not fit one batch"


def test_large_poison_is_dead_lettered_in_batches_sqs_accepts() -> None:
    sqs = FakeSqs()
    poison = [Poison(big_message(n), "IMSHOP answered 400: Bad Request") for n in range(10)]

    assert DeadLetterQueue(lambda: cast(Any, sqs), "https://dlq").send(poison) == set()
    assert sum(len(b) for b in sqs.batches) == 10


def test_near_limit_copies_go_one_per_call_and_small_ones_ten_per_call() -> None:
    sqs = FakeSqs()
    near = [InboundMessage(f"n{i}", request_body(SQS_MAX_MESSAGE_BYTES - 100), QUEUE_ARN) for i in range(3)]
    small = [InboundMessage(f"s{i}", request_body(1000), QUEUE_ARN) for i in range(12)]

    failed = SourceQueue(lambda: cast(Any, sqs)).requeue([Deferral(m, 1, m.message_id, True) for m in near + small])

    assert failed == set()
    assert sorted(len(b) for b in sqs.batches) == [1, 1, 1, 2, 10], "batches go out in parallel, in any order"


# --- re-enqueued copies -----------------------------------------------------------------------------------


def test_a_re_enqueued_keyless_copy_keeps_its_body_and_carries_its_key_as_an_attribute() -> None:
    body = json.dumps({"userIds": ["1"], "message": {"title": "Заказ 📦", "summary": "s"}}, ensure_ascii=False)
    message = InboundMessage("m1", body, QUEUE_ARN, 3, lambda_attributes({"producer": "crm"}))

    entry = requeue_entry(Deferral(message, 42, "m1", key_is_message_id=True))

    assert entry["MessageBody"] == body
    assert entry["DelaySeconds"] == 42
    assert entry["MessageAttributes"] == {
        "producer": {"DataType": "String", "StringValue": "crm"},
        KEY_ATTRIBUTE: {"DataType": "String", "StringValue": "m1"},
    }


@pytest.mark.parametrize("filler", ["Ж", "x", "📦", "中"])
def test_a_keyless_request_near_the_limit_is_re_enqueued_unchanged(filler: str) -> None:
    body = request_body(SQS_MAX_MESSAGE_BYTES - 100, filler)
    sqs = FakeSqs()

    failed = SourceQueue(lambda: cast(Any, sqs)).requeue(
        [Deferral(InboundMessage(MESSAGE_ID, body, QUEUE_ARN), 5, MESSAGE_ID, True)]
    )

    assert failed == set()
    [entry] = sqs.sent()
    assert entry["MessageBody"] == body
    assert entry["MessageAttributes"][KEY_ATTRIBUTE]["StringValue"] == MESSAGE_ID


def test_original_attributes_give_way_to_the_key_largest_first() -> None:
    attributes = {"trace": "t-1", "blob": "b" * 3000, "tenant": "shop"}
    body = request_body(SQS_MAX_MESSAGE_BYTES - 3050)
    message = InboundMessage(MESSAGE_ID, body, QUEUE_ARN, 1, lambda_attributes(attributes))
    original = {"MessageBody": body, "MessageAttributes": to_send_attributes(message.message_attributes)}
    assert payload_size(original) <= SQS_MAX_MESSAGE_BYTES, "precondition: SQS accepted the original"

    entry = requeue_entry(Deferral(message, 5, MESSAGE_ID, key_is_message_id=True))

    assert entry["MessageBody"] == body
    assert set(entry["MessageAttributes"]) == {"trace", "tenant", KEY_ATTRIBUTE}
    assert sent_size(entry) <= SQS_MAX_MESSAGE_BYTES


def test_a_copy_that_cannot_fit_even_alone_with_its_key_goes_back_to_sqs_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SQS hands the record back with the same message id, so the key survives; the reason is in the log."""
    too_big = InboundMessage(MESSAGE_ID, request_body(SQS_MAX_MESSAGE_BYTES - 10, "x"), QUEUE_ARN)
    fine = InboundMessage("m2", request_body(1000), QUEUE_ARN)
    sqs = FakeSqs()

    with caplog.at_level(logging.ERROR, logger="imshop_push.adapters.sqs_outbox"):
        failed = SourceQueue(lambda: cast(Any, sqs)).requeue(
            [Deferral(too_big, 5, MESSAGE_ID, True), Deferral(fine, 5, "m2", True)]
        )

    assert failed == {MESSAGE_ID}
    assert [e["MessageBody"] for e in sqs.sent()] == [fine.body]
    assert MESSAGE_ID in caplog.text
    assert f"{SQS_MAX_MESSAGE_BYTES}-byte" in caplog.text
    with pytest.raises(EntryTooLargeError):
        requeue_entry(Deferral(too_big, 5, MESSAGE_ID, True))


def test_a_copy_keyed_by_its_attribute_keeps_that_attribute_before_any_other() -> None:
    attributes = {"blob": "b" * 500, KEY_ATTRIBUTE: "order-1"}
    body = request_body(SQS_MAX_MESSAGE_BYTES - 100)
    message = InboundMessage("m1", body, QUEUE_ARN, 1, lambda_attributes(attributes))

    entry = requeue_entry(Deferral(message, 5, "order-1", key_is_message_id=False))

    assert entry["MessageAttributes"] == {KEY_ATTRIBUTE: {"DataType": "String", "StringValue": "order-1"}}


# --- dead letters -----------------------------------------------------------------------------------------


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


def test_near_the_limit_a_dead_letter_cuts_its_reason_then_drops_original_attributes() -> None:
    reason = "message.title: " + "должно быть короче " * 50
    attributes = {"trace": "t-1", "blob": "b" * 2000}
    body = request_body(SQS_MAX_MESSAGE_BYTES - 1000)
    message = InboundMessage(MESSAGE_ID, body, QUEUE_ARN, 1, lambda_attributes(attributes))

    entry = dead_letter_entry(Poison(message, reason, idempotency_key=MESSAGE_ID))

    written = entry["MessageAttributes"]
    assert entry["MessageBody"] == body
    assert sent_size(entry) <= SQS_MAX_MESSAGE_BYTES
    assert set(written) == {"trace", "error", "sourceMessageId", KEY_ATTRIBUTE}
    assert written[KEY_ATTRIBUTE]["StringValue"] == MESSAGE_ID
    assert written["sourceMessageId"]["StringValue"] == MESSAGE_ID
    cut = written["error"]["StringValue"]
    assert cut.startswith("message.title: должно")
    assert cut.endswith("…")
    assert len(cut.encode()) > MIN_REASON_BYTES - 4, "cut to the floor, short of a character at most"


def test_a_body_at_the_limit_is_dead_lettered_without_attributes(caplog: pytest.LogCaptureFixture) -> None:
    body = request_body(SQS_MAX_MESSAGE_BYTES, "x")
    assert len(body.encode()) == SQS_MAX_MESSAGE_BYTES
    sqs = FakeSqs()

    with caplog.at_level(logging.WARNING, logger="imshop_push.domain.sqs_copies"):
        failed = DeadLetterQueue(lambda: cast(Any, sqs), "https://dlq").send(
            [Poison(InboundMessage(MESSAGE_ID, body, QUEUE_ARN), "IMSHOP answered 413", MESSAGE_ID)]
        )

    assert failed == set()
    [entry] = sqs.sent()
    assert entry["MessageBody"] == body
    assert entry["MessageAttributes"] == {}
    assert "leaves out its reason" in caplog.text


# --- properties: any message SQS accepted can be written again -------------------------------------------

SQS_TEXT = st.characters(  # what SQS accepts in bodies and attribute values
    codec="utf-8",
    exclude_categories=["Cs"],
    exclude_characters="".join(map(chr, [*range(9), 11, 12, *range(14, 32)])) + "\ufffe\uffff",
)
FILLERS = st.text(alphabet=st.sampled_from("xЖ中📦 é"), min_size=1, max_size=8)
NAMES = st.from_regex(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]{0,40}", fullmatch=True).filter(
    lambda n: not n.endswith(".") and ".." not in n
)


@st.composite
def sqs_messages(draw: st.DrawFn) -> InboundMessage:
    """A message SQS accepted: any attributes (String or Binary, large ones too) and any body that fits beside
    them, biased towards the limit where copies break."""
    attributes: dict[str, dict[str, Any]] = {}
    for name in draw(st.lists(NAMES, max_size=10, unique=True)):
        size = draw(st.one_of(st.integers(1, 64), st.integers(1000, 20_000)))
        if draw(st.booleans()):
            value = (draw(st.text(SQS_TEXT, min_size=1, max_size=4)) * size)[:size]
            attributes[name] = {"dataType": "String", "stringValue": value}
        else:
            attributes[name] = {"dataType": "Binary", "binaryValue": base64.b64encode(b"\x00" * size).decode()}
    used = sum(
        len(n.encode()) + len(a["dataType"]) + (len(a["stringValue"].encode()) if "stringValue" in a else 0)
        for n, a in attributes.items()
    )
    used += sum(len(base64.b64decode(a["binaryValue"])) for a in attributes.values() if "binaryValue" in a)
    room = SQS_MAX_MESSAGE_BYTES - used
    if room < 100:
        attributes, room = {}, SQS_MAX_MESSAGE_BYTES
    size = draw(
        st.one_of(st.integers(100, 2000), st.integers(max(100, room - 3000), room), st.integers(room - 100, room))
    )
    body = request_body(size, draw(FILLERS))
    while len(body.encode()) > room:  # a multi-byte filler may overshoot by a character
        body = body.replace("x", "", 1) if "x" in body else body[:-1]
    message_id = draw(st.one_of(st.uuids().map(str), st.text(SQS_TEXT, min_size=1, max_size=100)))
    return InboundMessage(message_id, body, QUEUE_ARN, 1, attributes)


def key_attribute_size(key: str) -> int:
    return len(KEY_ATTRIBUTE) + len("String") + len(key.encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=sqs_messages(), delay=st.integers(-5, 2000))
def test_any_keyless_request_is_re_enqueued_within_the_limit_with_its_key_and_body_intact(
    message: InboundMessage, delay: int
) -> None:
    body_size = len(message.body.encode())
    original = {"MessageBody": message.body, "MessageAttributes": to_send_attributes(message.message_attributes)}
    event(
        "must shed"
        if payload_size(original) + key_attribute_size(message.message_id) > SQS_MAX_MESSAGE_BYTES
        else "room"
    )
    try:
        entry = requeue_entry(Deferral(message, delay, message.message_id, key_is_message_id=True))
    except EntryTooLargeError:
        event("cannot fit")
        assert body_size + key_attribute_size(message.message_id) > SQS_MAX_MESSAGE_BYTES
        return

    assert entry["MessageBody"] == message.body
    assert entry["MessageAttributes"][KEY_ATTRIBUTE] == {"DataType": "String", "StringValue": message.message_id}
    assert sent_size(entry) <= SQS_MAX_MESSAGE_BYTES
    assert len(entry["MessageAttributes"]) <= SQS_MAX_ATTRIBUTES
    assert 0 <= entry["DelaySeconds"] <= 900


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=sqs_messages(), reason=st.text(max_size=3000))
def test_any_poison_is_dead_lettered_within_the_limit_with_its_key_and_body_intact(
    message: InboundMessage, reason: str
) -> None:
    entry = dead_letter_entry(Poison(message, "rule: " + reason, idempotency_key=message.message_id))

    written = entry["MessageAttributes"]
    assert entry["MessageBody"] == message.body
    assert sent_size(entry) <= SQS_MAX_MESSAGE_BYTES
    assert len(written) <= SQS_MAX_ATTRIBUTES
    assert all(v.get("StringValue", "x") for v in written.values()), "SQS refuses empty attribute values"
    if len(message.body.encode()) + key_attribute_size(message.message_id) <= SQS_MAX_MESSAGE_BYTES:
        assert written[KEY_ATTRIBUTE] == {"DataType": "String", "StringValue": message.message_id}
    if "error" in written:
        error = written["error"]["StringValue"]
        assert error.startswith("rule") or "rule".startswith(error.removesuffix("…")), "a cut reason keeps its start"
        assert written["error"]["StringValue"].isprintable(), "control characters and lone surrogates escaped"


class OverlapSqs(FakeSqs):
    """Its first two calls only return once both are in flight: a sender that waits for each call before the
    next never gets past the first (the barrier breaks after its timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=10)
        self.calls = 0
        self.lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        with self.lock:
            self.calls += 1
            first_two = self.calls <= 2
        if first_two:
            self.barrier.wait()
        return super().send_message_batch(QueueUrl=QueueUrl, Entries=Entries)


def test_the_backlog_of_a_large_batch_is_re_enqueued_by_calls_in_parallel() -> None:
    """10,000 deferrals are 1,000 SendMessageBatch calls: one after another they would outlast the reserve an
    invocation keeps for finishing after its last IMSHOP call."""
    sqs = OverlapSqs()
    messages = [InboundMessage(f"m{i}", request_body(200), QUEUE_ARN) for i in range(40)]

    failed = SourceQueue(lambda: cast(Any, sqs)).requeue([Deferral(m, 1, m.message_id, False) for m in messages])

    assert failed == set()
    assert sorted(len(b) for b in sqs.batches) == [10] * 4
