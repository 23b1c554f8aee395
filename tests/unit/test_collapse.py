"""The collapseKey contract at the edges: the request fields, the publisher's drafts, the order a request
keeps across re-enqueues, and the version order itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from harness import lambda_attributes
from hypothesis import given
from hypothesis import strategies as st

from imshop_push.collapse import order_of, slot_id, version
from imshop_push.drafts import InvalidNotificationError, NotificationDraft
from imshop_push.inbound import InboundMessage
from imshop_push.model import Deferral
from imshop_push.parsing import PoisonMessageError, parse_body
from imshop_push.sqs_copies import requeue_entry

MESSAGE = {"title": "Заказ отправлен", "summary": "Заказ 1042 передан в доставку"}
BASE = {"userIds": ["79991234567"], "message": MESSAGE}


def parse(**fields: object) -> object:
    return parse_body(json.dumps({**BASE, **fields}), message_id="m1")


def test_collapse_key_and_created_at_are_parsed_and_not_part_of_what_is_forwarded() -> None:
    plain = parse_body(json.dumps(BASE), message_id="m1")
    request = parse_body(
        json.dumps({**BASE, "collapseKey": "order-1042-status", "createdAt": "2026-12-01T21:00:00+03:00"}),
        message_id="m1",
    )

    assert request.collapse_key == "order-1042-status"
    assert request.created_at == datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    assert request.fingerprint == plain.fingerprint, "extensions never reach IMSHOP"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"collapseKey": ""}, "collapseKey: must not be empty"),
        ({"collapseKey": "k" * 129}, "collapseKey: must be at most 128 characters"),
        ({"collapseKey": 42}, "collapseKey: must be a string, got number"),
        ({"createdAt": "2026-12-01T18:00:00"}, "createdAt: must be an RFC 3339 timestamp with a time zone"),
        ({"createdAt": "2026-13-01T00:00:00Z"}, "createdAt: '2026-13-01T00:00:00Z' is not a valid date and time"),
    ],
)
def test_bad_collapse_fields_are_poison_naming_the_field(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(PoisonMessageError) as e:
        parse(**fields)
    assert e.value.reason.startswith(reason)


def test_a_draft_carries_collapse_key_and_created_at_in_utc() -> None:
    draft = NotificationDraft(
        user_ids=["79991234567"],
        title="t",
        summary="s",
        collapse_key="order-1042-status",
        created_at=datetime(2026, 12, 1, 21, 0, tzinfo=timezone(timedelta(hours=3))),
    )

    assert json.loads(draft.to_json())["collapseKey"] == "order-1042-status"
    assert json.loads(draft.to_json())["createdAt"] == "2026-12-01T18:00:00Z"


def test_a_draft_refuses_a_naive_created_at_and_a_too_long_collapse_key() -> None:
    with pytest.raises(InvalidNotificationError, match="createdAt: must be a timezone-aware datetime"):
        NotificationDraft(user_ids=["1"], title="t", summary="s", created_at=datetime(2026, 12, 1)).to_json()
    with pytest.raises(InvalidNotificationError, match="collapseKey: must be at most 128 characters"):
        NotificationDraft(user_ids=["1"], title="t", summary="s", collapse_key="k" * 129).to_json()


def test_a_copy_keeps_the_order_of_the_first_message_not_its_own() -> None:
    body = json.dumps({**BASE, "collapseKey": "order-1042-status"})
    first = InboundMessage("m1", body, sent_timestamp_ms=1_000, first_received_ms=1_200)
    request = parse_body(body, message_id="m1")
    order = order_of(request, first, now_ms=9_999)
    entry = requeue_entry(Deferral(first, 30, request.idempotency_key, request.key_is_message_id, order))

    copy = InboundMessage("m2", entry["MessageBody"], "", 1, lambda_attributes(entry), 5_000, 5_100)

    assert order == (1_000, 1_200)
    assert order_of(parse_body(copy.body, message_id="m2"), copy, now_ms=9_999) == (1_000, 1_200)


def test_copies_of_requests_without_a_collapse_key_carry_nothing_new() -> None:
    message = InboundMessage("m1", json.dumps({**BASE, "idempotencyKey": "k"}), sent_timestamp_ms=1_000)

    assert "MessageAttributes" not in requeue_entry(Deferral(message, 30, "k", False))


@given(
    st.tuples(st.integers(-62_135_596_800_000, 253_402_300_799_999), st.integers(0, 2**45), st.text(max_size=8)),
    st.tuples(st.integers(-62_135_596_800_000, 253_402_300_799_999), st.integers(0, 2**45), st.text(max_size=8)),
)
def test_the_version_string_sorts_as_created_then_received_then_key(
    a: tuple[int, int, str], b: tuple[int, int, str]
) -> None:
    assert (version(*a) < version(*b)) == (a < b)
    assert (version(*a) == version(*b)) == (a == b)


def test_slots_name_neither_the_key_nor_the_recipient() -> None:
    slot = slot_id("order-1042-status", ("userIds", "79991234567"))

    assert "79991234567" not in slot
    assert "1042" not in slot
    assert slot != slot_id("order-1042-status", ("installIds", "79991234567"))
