"""The publishing helper's side of send time: `send_at` as the dispatcher reads it, and `cancel_notification`
checked with the dispatcher's own rule before SQS is called."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from harness import Harness, msg
from hypothesis import given, settings
from hypothesis import strategies as st
from test_publisher import QUEUE_URL, FakeSqs, _client

from imshop_push.domain.model import Cancel
from imshop_push.domain.parsing import parse_body, parse_message
from imshop_push.domain.send_time import DEFAULT_STATE_TTL_SECONDS, SendTime
from imshop_push.producers.publisher import (
    InvalidNotificationError,
    LaneQueues,
    NotificationDraft,
    cancel_notification,
    publish_notification,
    publish_notifications,
)

MSK = timezone(timedelta(hours=3))
QUEUES = LaneQueues(transactional=QUEUE_URL, bulk=QUEUE_URL + "-bulk")
SOON = (datetime.now(MSK) + timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
"""10:00 Moscow time in two or three days: within the state TTL, which the helper checks as the dispatcher does."""


def test_send_at_is_queued_as_an_instant_the_dispatcher_reads() -> None:
    sqs = FakeSqs()

    publish_notification(_client(sqs), QUEUE_URL, user_ids=["u"], title="t", summary="s", send_at=SOON)

    body = sqs.calls[0][1]["MessageBody"]
    assert json.loads(body)["sendAt"] == SOON.astimezone(UTC).strftime("%Y-%m-%dT07:00:00Z")
    assert parse_body(body, message_id="m").send_at == SOON.replace(hour=7, tzinfo=UTC)


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
    own = (SOON + timedelta(days=1)).isoformat()
    drafts = [
        NotificationDraft(user_ids=["a"], title="t", summary="s"),
        NotificationDraft(user_ids=["b"], title="t", summary="s", send_at=own),
    ]

    publish_notifications(_client(sqs), QUEUE_URL, drafts, send_at=SOON.isoformat())

    bodies = [json.loads(e["MessageBody"]) for e in sqs.batch_calls()[0]]
    assert [b["sendAt"] for b in bodies] == [SOON.isoformat(), own]


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


@settings(max_examples=40, deadline=None)
@given(
    ttl=st.integers(60, 30 * 24 * 3600),
    beyond=st.one_of(st.integers(-(10**6), -5), st.integers(5, 10**6)),
    batch=st.booleans(),
)
def test_the_helper_refuses_a_send_at_exactly_when_the_dispatcher_would_dead_letter_it(
    ttl: int, beyond: int, batch: bool
) -> None:
    """Bound for bound, with the same reason: `beyond` seconds past the state TTL (a few seconds' margin for
    the time between publishing and receiving, which only makes the dispatcher more lenient)."""
    sqs = FakeSqs()
    send_at = datetime.fromtimestamp(time.time() + ttl + beyond, UTC)
    h = Harness(send_time=SendTime(max_ahead_seconds=ttl))
    h.clock.now = time.time()
    raw = json.dumps({"userIds": ["u"], "message": {"title": "t", "summary": "s"}, "sendAt": send_at.isoformat()})
    dispatcher_reason = h.results(msg("m", raw))["m"].reason

    refusal: str | None = None
    try:
        if batch:
            draft = NotificationDraft(user_ids=["u"], title="t", summary="s", send_at=send_at)
            publish_notifications(_client(sqs), QUEUE_URL, [draft], state_ttl_seconds=ttl)
        else:
            publish_notification(
                _client(sqs), QUEUE_URL, user_ids=["u"], title="t", summary="s", send_at=send_at, state_ttl_seconds=ttl
            )
    except InvalidNotificationError as e:
        refusal = e.reason

    if beyond > 0:
        assert refusal == dispatcher_reason
        assert [p.reason for p in h.dlq.received] == [refusal], "the dispatcher dead-letters it, with this reason"
        assert sqs.calls == []
    else:
        assert refusal is None
        assert not h.dlq.received
        assert len(sqs.calls) == 1


def test_the_default_horizon_is_the_stacks_default_state_ttl() -> None:
    sqs = FakeSqs()
    far = datetime.now(UTC) + timedelta(seconds=DEFAULT_STATE_TTL_SECONDS + 60)

    with pytest.raises(InvalidNotificationError, match=r"^sendAt: is more than 1209600 s ahead"):
        publish_notification(_client(sqs), QUEUE_URL, user_ids=["u"], title="t", summary="s", send_at=far)
    publish_notification(
        _client(sqs), QUEUE_URL, user_ids=["u"], title="t", summary="s", send_at=far - timedelta(minutes=2)
    )
    assert len(sqs.calls) == 1
