"""The collapseKey contract at the edges: the request fields, the publisher's drafts, the order a request
keeps across re-enqueues, and the version order itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from harness import lambda_attributes
from hypothesis import example, given
from hypothesis import strategies as st

from imshop_push.domain.collapse import order_of, slot_id, version
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Deferral
from imshop_push.domain.parsing import PoisonMessageError, parse_body
from imshop_push.domain.sqs_copies import requeue_entry
from imshop_push.producers.drafts import InvalidNotificationError, NotificationDraft

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


# Every instant a datetime with an offset can name: year 1 at +23:59 to year 9999 at -23:59, in epoch ms.
EARLIEST_MS, LATEST_MS = -62_135_596_800_000 - 86_340_000, 253_402_300_799_999 + 86_340_000


@given(
    st.tuples(st.integers(EARLIEST_MS, LATEST_MS), st.integers(EARLIEST_MS, LATEST_MS), st.text(max_size=8)),
    st.tuples(st.integers(EARLIEST_MS, LATEST_MS), st.integers(EARLIEST_MS, LATEST_MS), st.text(max_size=8)),
)
@example((-62_135_596_800_000 - 1, 0, "k"), (-62_135_596_800_000 - 2, 0, "k"))
def test_the_version_string_sorts_as_created_then_received_then_key(
    a: tuple[int, int, str], b: tuple[int, int, str]
) -> None:
    assert (version(*a) < version(*b)) == (a < b)
    assert (version(*a) == version(*b)) == (a == b)


def created_at_text(wall: datetime, offset_minutes: int) -> str:
    """RFC 3339 as a producer may write it: the wall time of its own offset, to the millisecond."""
    sign, minutes = ("+" if offset_minutes >= 0 else "-"), abs(offset_minutes)
    return f"{wall.isoformat(timespec='milliseconds')}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def created_version(text: str) -> str:
    request = parse_body(json.dumps({**BASE, "collapseKey": "order-1042-status", "createdAt": text}), message_id="m1")
    message = InboundMessage("m1", "{}", sent_timestamp_ms=1_000, first_received_ms=1_200)
    order = order_of(request, message, now_ms=9_999)
    assert order is not None
    return version(*order, "the same request")


WALL_TIMES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_000)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59)


@given(WALL_TIMES, OFFSETS, WALL_TIMES, OFFSETS)
@example(datetime(1, 1, 1), 5 * 60, datetime(1, 1, 1), 4 * 60)  # both before year 1 in UTC: 19:00 and 20:00
@example(datetime(1, 1, 1), 5 * 60, datetime(1970, 1, 1), 0)
@example(datetime(1, 1, 1, 0, 0, 0, 1000), 0, datetime(1, 1, 1), 0)
@example(datetime(2026, 12, 1, 18, 0, 0, 123_000), 0, datetime(2026, 12, 1, 18, 0, 0, 122_000), 0)
@example(datetime(9999, 12, 31, 23, 59), -(23 * 60 + 59), datetime(9999, 12, 31, 23, 59), 23 * 60 + 59)
def test_created_at_versions_sort_as_the_instants_whatever_the_year_and_offset(
    wall_a: datetime, offset_a: int, wall_b: datetime, offset_b: int
) -> None:
    """Written in any year and offset RFC 3339 allows (and Python parses), to the millisecond: a version sorts
    as its instant does. Year 1 with a positive offset is a few hours before year 1 in UTC."""
    text_a, text_b = created_at_text(wall_a, offset_a), created_at_text(wall_b, offset_b)
    instant_a, instant_b = (datetime.fromisoformat(t) for t in (text_a, text_b))

    version_a, version_b = created_version(text_a), created_version(text_b)

    assert (version_a < version_b) == (instant_a < instant_b), (text_a, text_b, version_a, version_b)
    assert (version_a == version_b) == (instant_a == instant_b), (text_a, text_b, version_a, version_b)


def test_slots_name_neither_the_key_nor_the_recipient() -> None:
    slot = slot_id("order-1042-status", ("userIds", "79991234567"))

    assert "79991234567" not in slot
    assert "1042" not in slot
    assert slot != slot_id("order-1042-status", ("installIds", "79991234567"))
