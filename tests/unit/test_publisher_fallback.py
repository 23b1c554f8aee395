"""The publishing helper's `fallback=`: the body carries the field as the dispatcher reads it, and a bad fallback
stops at the producer with the dispatcher's own reason."""

from __future__ import annotations

import json

import pytest
from test_publisher import QUEUE_URL, FakeSqs

from imshop_push.domain.model import Content, Fallback
from imshop_push.domain.parsing import parse_body
from imshop_push.producers.publisher import (
    FallbackText,
    InvalidNotificationError,
    NotificationDraft,
    publish_notification,
)

STATUS = FallbackText(title="Статус заказа изменился", summary="Подробности в приложении", deeplink="myshop://orders")


def test_publish_notification_sends_the_fallback_the_dispatcher_reads() -> None:
    fake = FakeSqs()
    publish_notification(
        fake,  # type: ignore[arg-type]
        QUEUE_URL,
        user_ids=["79991234567"],
        title="Заказ №123 передан в доставку",
        summary="Курьер привезёт заказ завтра",
        idempotency_key="order-123-shipped",
        fallback=FallbackText(title=STATUS.title, summary=STATUS.summary, after_seconds=30),
    )
    body = fake.calls[0][1]["MessageBody"]
    assert json.loads(body)["fallback"] == {
        "message": {"title": "Статус заказа изменился", "summary": "Подробности в приложении"},
        "afterSeconds": 30,
    }
    assert parse_body(body, message_id="m").fallback == Fallback(Content(STATUS.title, STATUS.summary, None), 30)


def test_a_draft_without_after_seconds_leaves_the_default_to_the_dispatcher() -> None:
    draft = NotificationDraft(user_ids=["1"], title="t", summary="s", fallback=STATUS)
    assert draft.to_body()["fallback"] == {
        "message": {"title": STATUS.title, "summary": STATUS.summary},
        "deeplink": "myshop://orders",
    }
    assert parse_body(draft.to_json(), message_id="m").fallback == Fallback(
        Content(STATUS.title, STATUS.summary, "myshop://orders"), 60
    )


@pytest.mark.parametrize(
    ("fallback", "reason"),
    [
        (FallbackText(title="", summary="s"), "fallback.message.title: must not be empty"),
        (
            FallbackText(title="t", summary="s", after_seconds=86_401),
            "fallback.afterSeconds: must be at most 86400, got 86401",
        ),
        (FallbackText(title="t", summary="s", deeplink="a b"), "fallback.deeplink: must not contain whitespace"),
    ],
)
def test_a_bad_fallback_stops_at_the_producer_naming_the_path(fallback: FallbackText, reason: str) -> None:
    fake = FakeSqs()
    with pytest.raises(InvalidNotificationError) as caught:
        publish_notification(fake, QUEUE_URL, user_ids=["1"], title="t", summary="s", fallback=fallback)  # type: ignore[arg-type]
    assert caught.value.reason == reason
    assert fake.calls == []
