"""The producers' helper: bodies the dispatcher accepts, poison refused before SQS is called, batches within
SQS's limits, and SQS's own failures retried or reported, never lost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from harness import Harness, msg

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.parsing import PoisonMessageError, parse_body
from imshop_push.domain.sqs_batches import SQS_MAX_MESSAGE_BYTES
from imshop_push.domain.sqs_copies import RESERVED_ATTRIBUTES
from imshop_push.producers.publisher import (
    InvalidNotificationError,
    NotificationDraft,
    PublishError,
    publish_notification,
    publish_notifications,
)

QUEUE_URL = "https://sqs.eu-central-1.amazonaws.com/123456789012/imshop-push-queue"
ROOT = Path(__file__).resolve().parents[2]

type Answer = Callable[[list[dict[str, Any]]], dict[str, Any]]


class FakeSqs:
    """Records every call; `answers` decide, call by call, what SendMessageBatch reports for its entries."""

    def __init__(self, answers: list[Answer] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._answers = list(answers or [])
        self._next_id = 0

    def _message_id(self) -> str:
        self._next_id += 1
        return f"mid-{self._next_id}"

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("send_message", kwargs))
        return {"MessageId": self._message_id(), "MD5OfMessageBody": "x"}

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("send_message_batch", kwargs))
        entries: list[dict[str, Any]] = kwargs["Entries"]
        if self._answers:
            return self._answers.pop(0)(entries)
        return self.accept(entries)

    def accept(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Successful": [{"Id": e["Id"], "MessageId": self._message_id()} for e in entries], "Failed": []}

    def batch_calls(self) -> list[list[dict[str, Any]]]:
        return [kwargs["Entries"] for name, kwargs in self.calls if name == "send_message_batch"]


def _client(fake: FakeSqs) -> Any:
    return cast(Any, fake)


def _fail(fake: FakeSqs, failing: dict[str, tuple[str, bool]]) -> Answer:
    """Accept every entry except those whose draft title is a key of `failing`: (code, sender_fault)."""

    def answer(entries: list[dict[str, Any]]) -> dict[str, Any]:
        ok = [e for e in entries if json.loads(e["MessageBody"])["message"]["title"] not in failing]
        bad = [e for e in entries if e not in ok]
        response = fake.accept(ok)
        for entry in bad:
            code, sender_fault = failing[json.loads(entry["MessageBody"])["message"]["title"]]
            response["Failed"].append(
                {"Id": entry["Id"], "Code": code, "Message": "refused", "SenderFault": sender_fault}
            )
        return response

    return answer


def _draft(n: int = 0, **overrides: Any) -> NotificationDraft:
    fields: dict[str, Any] = {
        "user_ids": [f"7999123{n:04d}"],
        "title": f"Заказ №{n} передан в доставку",
        "summary": "Курьер привезёт заказ завтра до 14:00",
    }
    return NotificationDraft(**(fields | overrides))


# ----------------------------------------------------------------------- body shape


def test_publish_notification_sends_the_body_the_dispatcher_accepts() -> None:
    fake = FakeSqs()
    message_id = publish_notification(
        _client(fake),
        QUEUE_URL,
        user_ids=["79991234567"],
        install_ids=["iid-0f6b2c"],
        title="Заказ №123 передан в доставку",
        summary="Курьер привезёт заказ завтра до 14:00",
        deeplink="myshop://orders/123",
        idempotency_key="order-123-shipped",
        expires_at=datetime(2099, 1, 31, 18, 0, tzinfo=UTC),
    )

    assert message_id == "mid-1"
    [(name, kwargs)] = fake.calls
    assert name == "send_message"
    assert kwargs["QueueUrl"] == QUEUE_URL
    assert "MessageAttributes" not in kwargs
    body = kwargs["MessageBody"]
    assert json.loads(body) == {
        "userIds": ["79991234567"],
        "installIds": ["iid-0f6b2c"],
        "message": {"title": "Заказ №123 передан в доставку", "summary": "Курьер привезёт заказ завтра до 14:00"},
        "deeplink": "myshop://orders/123",
        "idempotencyKey": "order-123-shipped",
        "expiresAt": "2099-01-31T18:00:00Z",
    }
    assert "Заказ" in body  # UTF-8, not \u escapes: a third of the size, and readable in the console
    request = parse_body(body, message_id="m1")
    assert request.idempotency_key == "order-123-shipped"
    assert request.recipients == (("userIds", "79991234567"), ("installIds", "iid-0f6b2c"))


def test_optional_fields_are_left_out_rather_than_null() -> None:
    body = _draft(user_ids=["79991234567"]).to_body()
    assert body == {
        "userIds": ["79991234567"],
        "message": {"title": "Заказ №0 передан в доставку", "summary": "Курьер привезёт заказ завтра до 14:00"},
    }


def test_install_ids_alone_are_enough() -> None:
    fake = FakeSqs()
    publish_notification(_client(fake), QUEUE_URL, install_ids=["iid-1"], title="Скидка", summary="Только сегодня")
    body = json.loads(fake.calls[0][1]["MessageBody"])
    assert body.pop("idempotencyKey").startswith("auto-")
    assert body == {"installIds": ["iid-1"], "message": {"title": "Скидка", "summary": "Только сегодня"}}


def test_message_attributes_are_passed_through() -> None:
    fake = FakeSqs()
    attributes: Any = {"tenant": {"DataType": "String", "StringValue": "myshop"}}
    publish_notification(
        _client(fake), QUEUE_URL, user_ids=["1"], title="t", summary="s", message_attributes=attributes
    )
    assert fake.calls[0][1]["MessageAttributes"] == attributes


def test_draft_is_immutable_and_copies_the_recipient_lists() -> None:
    users = ["79991234567"]
    draft = _draft(user_ids=users)
    users.append("79990000000")
    assert draft.user_ids == ("79991234567",)
    with pytest.raises(AttributeError):
        draft.title = "x"  # type: ignore[misc]


# ----------------------------------------------------------------------- expires_at


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2099, 1, 31, 18, 0, tzinfo=UTC), "2099-01-31T18:00:00Z"),
        (datetime(2099, 1, 31, 21, 0, tzinfo=timezone(timedelta(hours=3))), "2099-01-31T18:00:00Z"),
        (datetime(2099, 1, 31, 18, 0, 0, 250000, tzinfo=UTC), "2099-01-31T18:00:00.250000Z"),
        ("2099-01-31T21:00:00+03:00", "2099-01-31T21:00:00+03:00"),
    ],
)
def test_expires_at_is_rfc3339(value: datetime | str, expected: str) -> None:
    draft = _draft(expires_at=value)
    assert draft.to_body()["expiresAt"] == expected
    request = parse_body(draft.to_json(), message_id="m1")
    assert request.expires_at is not None
    assert request.expires_at == datetime.fromisoformat(expected)


def test_naive_expires_at_is_refused_before_sqs() -> None:
    fake = FakeSqs()
    with pytest.raises(InvalidNotificationError, match="expiresAt") as caught:
        publish_notification(
            _client(fake), QUEUE_URL, user_ids=["1"], title="t", summary="s", expires_at=datetime(2099, 1, 1)
        )
    assert "timezone-aware" in caught.value.reason
    assert fake.calls == []


@pytest.mark.parametrize("value", ["tomorrow", "2099-01-31", "2099-01-31T18:00:00"])
def test_expires_at_string_follows_the_dispatcher_rule(value: str) -> None:
    body = json.dumps({"userIds": ["1"], "message": {"title": "t", "summary": "s"}, "expiresAt": value})
    with pytest.raises(PoisonMessageError) as dispatcher:
        parse_body(body, message_id="m1")
    with pytest.raises(InvalidNotificationError) as publisher:
        _draft(expires_at=value).to_json()
    assert publisher.value.reason == dispatcher.value.reason
    assert publisher.value.reason.startswith("expiresAt: ")


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"user_ids": [], "install_ids": []}, "userIds"),
        ({"user_ids": [""]}, "userIds[0]"),
        ({"summary": ""}, "message.summary"),
        ({"title": "x" * 201}, "message.title"),
        ({"deeplink": "myshop://orders/1 23"}, "deeplink"),
        ({"deeplink": ""}, "deeplink"),
        ({"idempotency_key": "k" * 257}, "idempotencyKey"),
        ({"user_ids": [79991234567]}, "userIds[0]"),
    ],
)
def test_what_the_dispatcher_would_dead_letter_never_reaches_sqs(overrides: dict[str, Any], field: str) -> None:
    fake = FakeSqs()
    fields: dict[str, Any] = {"user_ids": ["79991234567"], "title": "t", "summary": "s"} | overrides
    draft = NotificationDraft(**fields)
    with pytest.raises(PoisonMessageError) as dispatcher:
        parse_body(json.dumps(draft.to_body()), message_id="m1")

    with pytest.raises(InvalidNotificationError) as caught:
        publish_notification(_client(fake), QUEUE_URL, **fields)

    assert caught.value.reason == dispatcher.value.reason  # the same words the DLQ would have shown, earlier
    assert caught.value.reason.startswith(f"{field}: ")
    assert isinstance(caught.value, ValueError)
    assert fake.calls == []


def test_reasons_name_the_field_and_the_rule() -> None:
    with pytest.raises(InvalidNotificationError) as caught:
        _draft(summary="").to_json()
    assert caught.value.reason == "message.summary: must not be empty"


def test_a_single_string_is_not_taken_for_a_list_of_recipients() -> None:
    with pytest.raises(InvalidNotificationError, match="userIds: must be a list of strings"):
        NotificationDraft(user_ids="79991234567", title="t", summary="s")


def test_unserializable_values_are_an_invalid_notification() -> None:
    with pytest.raises(InvalidNotificationError, match="body: cannot be serialized"):
        _draft(title=object()).to_json()


def test_characters_sqs_refuses_are_escaped_not_lost() -> None:
    text = _draft(summary="Скидка \uffff до 50%").to_json()
    assert "\\uffff" in text
    assert parse_body(text, message_id="m1").content.summary == "Скидка \uffff до 50%"


@pytest.mark.parametrize(
    ("overrides", "path"),
    [({"summary": "bad \ud800 surrogate"}, "message.summary"), ({"user_ids": ["1", "7999\udc00"]}, "userIds[1]")],
)
def test_lone_surrogates_are_an_invalid_notification(overrides: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidNotificationError, match=rf"^{re.escape(path)}: contains a lone surrogate"):
        _draft(**overrides).to_json()


def test_one_invalid_draft_stops_the_whole_batch_before_sqs() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(15)]
    drafts[12] = _draft(12, summary="")
    with pytest.raises(InvalidNotificationError) as caught:
        publish_notifications(_client(fake), QUEUE_URL, drafts)
    assert caught.value.index == 12
    assert str(caught.value) == "requests[12]: message.summary: must not be empty"
    assert fake.calls == []


# ----------------------------------------------------------------------- batching


def test_batches_are_chunked_at_ten() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(23)]
    result = publish_notifications(_client(fake), QUEUE_URL, drafts)

    assert [len(entries) for entries in fake.batch_calls()] == [10, 10, 3]
    assert result.ok
    assert [p.index for p in result.successful] == list(range(23))
    assert len(set(result.message_ids)) == 23
    for entries in fake.batch_calls():
        assert len({e["Id"] for e in entries}) == len(entries)
        for entry in entries:
            body = json.loads(entry["MessageBody"])
            assert body.pop("idempotencyKey") == result.successful[int(entry["Id"])].idempotency_key
            assert body == drafts[int(entry["Id"])].to_body()
            parse_body(entry["MessageBody"], message_id="m")


def test_batches_stay_within_the_sqs_payload_limit() -> None:
    fake = FakeSqs()
    # ~60 KB each: 10 of them would be a 600 KB batch, which SQS refuses as a whole.
    drafts = [_draft(i, user_ids=[f"7{i:02d}{n:08d}" for n in range(5000)]) for i in range(6)]
    publish_notifications(_client(fake), QUEUE_URL, drafts)
    sizes = [sum(len(e["MessageBody"].encode()) for e in entries) for entries in fake.batch_calls()]
    assert all(size <= SQS_MAX_MESSAGE_BYTES for size in sizes)
    assert sum(len(entries) for entries in fake.batch_calls()) == 6


def test_an_empty_batch_calls_nothing() -> None:
    fake = FakeSqs()
    result = publish_notifications(_client(fake), QUEUE_URL, [])
    assert result.ok
    assert result.successful == ()
    assert fake.calls == []


def test_message_attributes_travel_with_batch_entries() -> None:
    fake = FakeSqs()
    attributes: Any = {"tenant": {"DataType": "String", "StringValue": "myshop"}}
    publish_notifications(_client(fake), QUEUE_URL, [_draft(1, message_attributes=attributes), _draft(2)])
    first, second = fake.batch_calls()[0]
    assert first["MessageAttributes"] == attributes
    assert "MessageAttributes" not in second


# ----------------------------------------------------------------------- failures


def test_sqs_side_failures_are_retried_until_they_succeed() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(12)]
    flaky = {drafts[3].title: ("InternalError", False), drafts[11].title: ("ServiceUnavailable", False)}
    sleeps: list[float] = []
    fake._answers = [_fail(fake, flaky), _fail(fake, flaky), _fail(fake, flaky), fake.accept]

    result = publish_notifications(_client(fake), QUEUE_URL, drafts, sleep=sleeps.append)

    # attempt 1: two chunks, one entry failing in each; attempt 2: only the failed ones, twice refused,
    # attempt 3: accepted.
    ids = [[e["Id"] for e in entries] for entries in fake.batch_calls()]
    assert ids == [[str(i) for i in range(10)], ["10", "11"], ["3", "11"], ["3", "11"]]
    assert result.ok
    assert [p.index for p in result.successful] == list(range(12))
    assert sleeps == [0.2, 0.4]


def test_retriable_failures_give_up_after_max_attempts_and_are_reported() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(3)]
    always = _fail(fake, {drafts[1].title: ("InternalError", False)})
    fake._answers = [always, always]

    result = publish_notifications(_client(fake), QUEUE_URL, drafts, max_attempts=2, sleep=lambda _: None)

    assert len(fake.batch_calls()) == 2
    assert not result.ok
    assert [p.index for p in result.successful] == [0, 2]
    [failure] = result.failed
    assert (failure.index, failure.code, failure.sender_fault, failure.attempts) == (1, "InternalError", False, 2)
    assert failure.draft == replace(drafts[1], idempotency_key=failure.draft.idempotency_key)
    assert failure.message == "refused"


def test_sender_faults_are_reported_without_retry() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(3)]
    fake._answers = [_fail(fake, {drafts[0].title: ("InvalidParameterValue", True)})]
    sleeps: list[float] = []

    result = publish_notifications(_client(fake), QUEUE_URL, drafts, sleep=sleeps.append)

    assert len(fake.batch_calls()) == 1
    assert sleeps == []
    assert [(f.index, f.code, f.sender_fault, f.attempts) for f in result.failed] == [
        (0, "InvalidParameterValue", True, 1)
    ]
    assert [p.index for p in result.successful] == [1, 2]


def test_a_call_failing_as_a_whole_tells_what_was_queued() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(25)]

    def broken(entries: list[dict[str, Any]]) -> dict[str, Any]:
        error = RuntimeError("connection reset")
        error.response = {"Error": {"Code": "ThrottlingException"}}  # type: ignore[attr-defined]
        raise error

    fake._answers = [fake.accept, broken]

    with pytest.raises(PublishError) as caught:
        publish_notifications(_client(fake), QUEUE_URL, drafts)

    result = caught.value.result
    assert [p.index for p in result.successful] == list(range(10))
    assert [f.index for f in result.failed] == list(range(10, 25))
    assert {(f.code, f.sender_fault, f.attempts) for f in result.failed[:10]} == {("ThrottlingException", False, 1)}
    assert {(f.code, f.sender_fault, f.attempts) for f in result.failed[10:]} == {("NotSent", False, 0)}
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert len(fake.batch_calls()) == 2  # the third chunk was not attempted


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        publish_notifications(_client(FakeSqs()), QUEUE_URL, [_draft()], max_attempts=0)


# ----------------------------------------------------------------------- packaging


def test_importing_the_publisher_does_not_import_boto3() -> None:
    code = "import sys, imshop_push.producers.publisher; sys.exit('boto3' in sys.modules)"
    env_path = str(ROOT / "layers" / "imshop_push")
    completed = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": env_path}, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr


# ----------------------------------------------------------------------- what the dispatcher makes of it


def _received(fake: FakeSqs, first_sent_ms: int = 1_000) -> list[InboundMessage]:
    """Every message the fake SQS stored, as the dispatcher receives it: SentTimestamp in the order stored."""
    bodies = [kwargs["MessageBody"] for name, kwargs in fake.calls if name == "send_message"]
    stored = fake.batch_stored if isinstance(fake, StoringSqs) else []
    bodies += [entry["MessageBody"] for entries in stored for entry in entries]
    return [
        msg(f"sqs-{n}", text)._replace(sent_timestamp_ms=first_sent_ms + n, first_received_ms=first_sent_ms + n)
        for n, text in enumerate(bodies)
    ]


class StoringSqs(FakeSqs):
    """Keeps what SQS stored apart from what it answered: a refused entry is not stored."""

    def __init__(self, answers: list[Answer] | None = None) -> None:
        super().__init__(answers)
        self.batch_stored: list[list[dict[str, Any]]] = []

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        response = super().send_message_batch(**kwargs)
        stored = {ok["Id"] for ok in response["Successful"]}
        self.batch_stored.append([e for e in kwargs["Entries"] if e["Id"] in stored])
        return response


def test_a_keyless_publish_retried_by_boto3_after_a_lost_answer_is_pushed_once() -> None:
    """botocore sends SendMessage again, same parameters, when the answer is lost: SQS stores two messages."""
    fake = FakeSqs()
    client = _client(fake)
    publish_notification(client, QUEUE_URL, user_ids=["79991234567"], title="Код 1234", summary="Для входа")
    fake.send_message(**fake.calls[0][1])  # the retry of the same call

    first, second = _received(fake)
    h = Harness()

    assert h.run(first, second) == {"sqs-0": Disposition.DELIVERED, "sqs-1": Disposition.DUPLICATE}
    assert len(h.api.calls) == 1


def test_every_keyless_draft_gets_a_key_of_its_own_kept_across_the_helpers_retries() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(12)] + [_draft(12, idempotency_key="producers-own")]
    flaky = {drafts[3].title: ("InternalError", False)}
    fake._answers = [_fail(fake, flaky), fake.accept, fake.accept]

    result = publish_notifications(_client(fake), QUEUE_URL, drafts, sleep=lambda _: None)

    keys = [p.idempotency_key for p in result.successful]
    assert keys[12] == "producers-own"
    assert len(set(keys)) == 13
    assert all(str(k).startswith("auto-") for k in keys[:12])
    sent = [json.loads(e["MessageBody"]) for entries in fake.batch_calls() for e in entries]
    assert [b["idempotencyKey"] for b in sent if b["message"]["title"] == drafts[3].title] == [keys[3], keys[3]]


def test_republishing_the_failed_drafts_keeps_their_keys() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(3)]
    fake._answers = [_fail(fake, {drafts[1].title: ("InternalError", False)})]

    [failure] = publish_notifications(_client(fake), QUEUE_URL, drafts, max_attempts=1).failed
    again = publish_notifications(_client(fake), QUEUE_URL, [failure.draft])

    assert again.successful[0].idempotency_key == failure.draft.idempotency_key is not None


@pytest.mark.parametrize("name", sorted(RESERVED_ATTRIBUTES))
def test_attribute_names_the_dispatcher_reserves_are_refused_before_sqs(name: str) -> None:
    fake = FakeSqs()
    attributes: Any = {
        "tenant": {"DataType": "String", "StringValue": "x"},
        name: {"DataType": "String", "StringValue": "v"},
    }

    with pytest.raises(InvalidNotificationError, match=rf"^message_attributes: {name} is reserved"):
        publish_notification(
            _client(fake), QUEUE_URL, user_ids=["1"], title="t", summary="s", message_attributes=attributes
        )
    with pytest.raises(InvalidNotificationError, match=rf"^requests\[1\]: message_attributes: {name} is reserved"):
        publish_notifications(_client(fake), QUEUE_URL, [_draft(0), _draft(1, message_attributes=attributes)])
    assert fake.calls == []


def test_an_oversize_draft_stops_the_campaign_before_any_message_is_sent() -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(25)]
    drafts[12] = _draft(12, user_ids=[f"7999{n:07d}" for n in range(20_000)])

    with pytest.raises(InvalidNotificationError) as caught:
        publish_notifications(_client(fake), QUEUE_URL, drafts)

    assert caught.value.index == 12
    assert re.match(
        rf"body: \d+ bytes with its message attributes; SQS takes at most {SQS_MAX_MESSAGE_BYTES}", caught.value.reason
    )
    assert fake.calls == []


def test_message_attributes_count_towards_the_size_limit() -> None:
    users = [f"7999{n:07d}" for n in range(100)]  # a body of about 1.5 KB, far within the limit on its own
    big: Any = {"big": {"DataType": "String", "StringValue": "x" * (SQS_MAX_MESSAGE_BYTES - 1_000)}}
    fake = FakeSqs()

    with pytest.raises(InvalidNotificationError, match="with its message attributes"):
        publish_notification(_client(fake), QUEUE_URL, user_ids=users, title="t", summary="s", message_attributes=big)
    publish_notification(_client(fake), QUEUE_URL, user_ids=users[:1], title="t", summary="s", message_attributes=big)
    assert len(fake.calls) == 1


class _ClientError(Exception):
    def __init__(self, code: str, status: int) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.mark.parametrize(
    ("error", "sender_fault"),
    [
        (_ClientError("AWS.SimpleQueueService.NonExistentQueue", 400), True),
        (_ClientError("AccessDenied", 403), True),
        (_ClientError("ThrottlingException", 400), False),
        (_ClientError("InternalError", 500), False),
        (ConnectionResetError("connection reset"), False),
    ],
)
def test_a_call_failing_as_a_whole_says_whose_fault_it_is_and_what_was_never_sent(
    error: Exception, sender_fault: bool
) -> None:
    fake = FakeSqs()
    drafts = [_draft(i) for i in range(25)]

    def broken(entries: list[dict[str, Any]]) -> dict[str, Any]:
        raise error

    fake._answers = [fake.accept, broken]

    with pytest.raises(PublishError) as caught:
        publish_notifications(_client(fake), QUEUE_URL, drafts)

    failed = caught.value.result.failed
    assert [(f.index, f.sender_fault, f.attempts) for f in failed[:10]] == [(i, sender_fault, 1) for i in range(10, 20)]
    assert [(f.index, f.code, f.sender_fault, f.attempts) for f in failed[10:]] == [
        (i, "NotSent", False, 0) for i in range(20, 25)
    ]


def test_an_older_status_retried_after_a_newer_one_still_counts_as_the_older() -> None:
    """The helper's own retry gives the older draft the later SentTimestamp; its createdAt keeps the order."""
    fake = StoringSqs()
    paid = _draft(1, user_ids=["79991234567"], title="Заказ оплачен", collapse_key="order-1-status")
    shipped = _draft(2, user_ids=["79991234567"], title="Заказ отправлен", collapse_key="order-1-status")
    fake._answers = [_fail(fake, {paid.title: ("ThrottlingException", False)}), fake.accept]

    result = publish_notifications(_client(fake), QUEUE_URL, [paid, shipped], sleep=lambda _: None)

    assert result.ok
    received = _received(fake)
    assert [json.loads(m.body)["message"]["title"] for m in received] == [shipped.title, paid.title]
    h = Harness()
    h.run(*received)
    assert [c.payload["message"]["title"] for c in h.api.calls] == [shipped.title]


def test_collapsed_drafts_published_one_after_the_other_are_ordered_as_published() -> None:
    fake = FakeSqs()
    for n in range(20):  # within a millisecond or not, each is later than the one before
        publish_notification(
            _client(fake), QUEUE_URL, user_ids=["u"], title=f"status {n}", summary="s", collapse_key="c"
        )
    stamps = [parse_body(kwargs["MessageBody"], message_id="m").created_at for _, kwargs in fake.calls]
    ms = [int(s.timestamp() * 1000) for s in stamps if s is not None]

    assert len(ms) == 20
    assert ms == sorted(set(ms))


def test_a_producers_created_at_is_kept() -> None:
    fake = FakeSqs()
    created = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    publish_notification(
        _client(fake), QUEUE_URL, user_ids=["u"], title="t", summary="s", collapse_key="c", created_at=created
    )

    assert json.loads(fake.calls[0][1]["MessageBody"])["createdAt"] == "2026-12-01T18:00:00Z"


@pytest.mark.parametrize("field", ["expires_at", "created_at", "send_at"])
@pytest.mark.parametrize(
    "value",
    [
        datetime.max.replace(tzinfo=timezone(-timedelta(hours=3))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
    ],
    ids=["after 9999 in UTC", "before year 1 in UTC"],
)
def test_an_instant_outside_what_rfc3339_can_name_is_an_invalid_notification(field: str, value: datetime) -> None:
    fake = FakeSqs()
    camel = {"expires_at": "expiresAt", "created_at": "createdAt", "send_at": "sendAt"}[field]
    instants: dict[str, Any] = {field: value}

    with pytest.raises(InvalidNotificationError, match=rf"^{camel}: .* is outside years 1 to 9999 in UTC"):
        publish_notification(
            _client(fake), QUEUE_URL, user_ids=["u"], title="t", summary="s", collapse_key="c", **instants
        )
    assert fake.calls == []


def test_the_same_recipients_in_another_order_from_another_process_are_a_duplicate() -> None:
    fake = FakeSqs()
    users = [f"7999{n:07d}" for n in range(5)]
    publish_notification(_client(fake), QUEUE_URL, user_ids=users, title="t", summary="s", idempotency_key="k-1")
    publish_notification(
        _client(fake), QUEUE_URL, user_ids=users[::-1] + users[:1], title="t", summary="s", idempotency_key="k-1"
    )

    first, retry = _received(fake)
    h = Harness()

    assert h.run(first) == {"sqs-0": Disposition.DELIVERED}
    assert h.run(retry) == {"sqs-1": Disposition.DUPLICATE}
    assert len(h.api.calls) == 1
