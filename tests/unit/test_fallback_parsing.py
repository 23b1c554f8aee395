"""The request field `fallback`: validated like the request's own content, its poison naming the path, and part
of what the idempotency key names."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from imshop_push.domain.model import Content, Fallback
from imshop_push.domain.parsing import PoisonMessageError, parse_body
from imshop_push.domain.state import ClaimStatus, InProcessStateStore

STATUS = {"title": "Статус заказа изменился", "summary": "Откройте заказ в приложении"}
REQUEST: dict[str, Any] = {
    "userIds": ["42"],
    "message": {"title": "Заказ 1001 отправлен", "summary": "Курьер приедет завтра утром"},
    "deeplink": "app://orders/1001",
    "idempotencyKey": "order-1001-shipped",
}


def parse(fallback: Any) -> Any:
    return parse_body(json.dumps({**REQUEST, "fallback": fallback}, ensure_ascii=False), message_id="m-1")


def test_a_fallback_is_parsed_with_its_own_text_deeplink_and_wait() -> None:
    request = parse({"message": STATUS, "deeplink": "app://orders", "afterSeconds": 30})
    assert request.fallback == Fallback(Content(STATUS["title"], STATUS["summary"], "app://orders"), 30)
    assert request.content.title == "Заказ 1001 отправлен"


def test_without_deeplink_the_fallback_has_none_and_waits_a_minute_by_default() -> None:
    assert parse({"message": STATUS}).fallback == Fallback(Content(STATUS["title"], STATUS["summary"], None), 60)


@pytest.mark.parametrize("after", [0, 86_400, 60.0])
def test_after_seconds_bounds_are_inclusive(after: float) -> None:
    request = parse({"message": STATUS, "afterSeconds": after})
    assert request.fallback is not None
    assert request.fallback.after_seconds == int(after)
    assert isinstance(request.fallback.after_seconds, int)


@pytest.mark.parametrize(
    ("fallback", "reason"),
    [
        ("status", "fallback: must be an object, got string"),
        ({}, "fallback.message: is a required property"),
        (
            {"message": STATUS, "afterSecond": 5},
            "fallback.afterSecond: is not an allowed field (did you mean afterSeconds?)",
        ),
        ({"message": {"title": "t"}}, "fallback.message.summary: is a required property"),
        ({"message": {"summary": "s"}}, "fallback.message.title: is a required property"),
        (
            {"message": {**STATUS, "body": "x"}},
            "fallback.message.body: is not an allowed field (allowed: title, summary)",
        ),
        ({"message": {**STATUS, "title": ""}}, "fallback.message.title: must not be empty"),
        ({"message": {**STATUS, "summary": ""}}, "fallback.message.summary: must not be empty"),
        ({"message": {**STATUS, "title": "t" * 201}}, "fallback.message.title: must be at most 200 characters"),
        ({"message": {**STATUS, "summary": "s" * 1501}}, "fallback.message.summary: must be at most 1500 characters"),
        ({"message": {**STATUS, "title": 7}}, "fallback.message.title: must be a string, got number"),
        ({"message": STATUS, "deeplink": "app://orders 1"}, "fallback.deeplink: must not contain whitespace"),
        ({"message": STATUS, "deeplink": ""}, "fallback.deeplink: must not be empty"),
        ({"message": STATUS, "deeplink": "x" * 513}, "fallback.deeplink: must be at most 512 characters"),
        ({"message": STATUS, "afterSeconds": -1}, "fallback.afterSeconds: must be at least 0, got -1"),
        ({"message": STATUS, "afterSeconds": 86_401}, "fallback.afterSeconds: must be at most 86400, got 86401"),
        ({"message": STATUS, "afterSeconds": 1.5}, "fallback.afterSeconds: must be an integer, got number"),
        ({"message": STATUS, "afterSeconds": "60"}, "fallback.afterSeconds: must be an integer, got string"),
        ({"message": STATUS, "afterSeconds": True}, "fallback.afterSeconds: must be an integer, got boolean"),
        ({"message": STATUS, "afterSeconds": None}, "fallback.afterSeconds: must be an integer, got null"),
    ],
)
def test_each_bad_fallback_field_is_poison_naming_its_path(fallback: Any, reason: str) -> None:
    with pytest.raises(PoisonMessageError) as caught:
        parse(fallback)
    assert caught.value.reason == reason


def test_a_fallback_over_one_push_payload_is_poison_naming_its_message() -> None:
    with pytest.raises(PoisonMessageError) as caught:
        parse({"message": {"title": "я" * 200, "summary": "я" * 1500}, "deeplink": "x" * 512})
    assert caught.value.reason.startswith("fallback.message: title, summary and deeplink together are 3912 bytes")


def test_inside_an_eventbridge_event_the_path_starts_at_detail() -> None:
    event = {"id": "e-1", "source": "crm", "detail-type": "push", "detail": {**REQUEST, "fallback": {"message": {}}}}
    with pytest.raises(PoisonMessageError) as caught:
        parse_body(json.dumps(event), message_id="m-1")
    assert caught.value.reason == "detail.fallback.message.title: is a required property"


def test_a_request_without_fallback_keeps_the_fingerprint_it_had_before_fallbacks() -> None:
    # As fingerprints were computed before the field existed: keys stored then must not conflict now.
    message = REQUEST["message"]
    fields = [message["title"], message["summary"], REQUEST["deeplink"], REQUEST["userIds"], []]
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    before = hashlib.blake2b(text.encode(), digest_size=20).hexdigest()
    assert parse_body(json.dumps(REQUEST), message_id="m-1").fingerprint == before
    assert parse({"message": STATUS}).fingerprint != before


@pytest.mark.parametrize(
    "other",
    [
        {"message": {**STATUS, "title": "Статус изменился"}},
        {"message": {**STATUS, "summary": "Откройте приложение"}},
        {"message": STATUS, "deeplink": "app://orders"},
        {"message": STATUS, "afterSeconds": 61},
    ],
)
def test_reusing_a_key_with_another_fallback_is_the_key_conflict(other: dict[str, Any]) -> None:
    store = InProcessStateStore()
    first, second = parse({"message": STATUS}), parse(other)
    store.claim_many([(first.idempotency_key, first.fingerprint)], attempt_id="a", now=0.0, lease_until=0.0)
    claims = store.claim_many([(second.idempotency_key, second.fingerprint)], attempt_id="b", now=1.0, lease_until=2.0)
    assert claims[second.idempotency_key].status is ClaimStatus.CONFLICT


def test_the_same_fallback_is_the_same_request() -> None:
    assert parse({"message": STATUS}).fingerprint == parse({"message": STATUS, "afterSeconds": 60}).fingerprint
