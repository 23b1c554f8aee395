"""Merging and splitting: the fewest calls, never over the recipient limit, nothing lost.

The contract: docs/contract.md#recipients-per-call and #fewest-calls.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imshop_push.domain.model import Content, Recipient, RecipientField
from imshop_push.domain.planning import Delivery, PlannedCall, lower_bound, plan_calls

CONTENTS = [
    Content("Заказ отправлен", "Заказ передан в доставку", None),
    Content("Заказ отправлен", "Заказ передан в доставку", "slug://orders"),
    Content("Бонусы сгорают", "Осталось 3 дня", None),
    Content("Заказ отправлен", "Другой текст", None),
]

FIELDS: list[RecipientField] = ["userIds", "installIds"]
recipients_st: st.SearchStrategy[Recipient] = st.tuples(
    st.sampled_from(FIELDS),
    st.sampled_from(["7999000000" + str(i) for i in range(8)] + ["iid-a", "iid-b"]),
)


@st.composite
def deliveries_st(draw: st.DrawFn) -> list[Delivery]:
    """Overlapping recipients and repeated contents, so merging and splitting both happen."""
    count = draw(st.integers(min_value=0, max_value=8))
    deliveries = []
    for index in range(count):
        recipients = draw(st.lists(recipients_st, min_size=1, max_size=10, unique=True))
        deliveries.append(Delivery(f"msg-{index}", draw(st.sampled_from(CONTENTS)), tuple(recipients)))
    return deliveries


max_recipients_st = st.integers(min_value=1, max_value=6)


def wanted(deliveries: list[Delivery]) -> set[tuple[Content, Recipient]]:
    return {(d.content, r) for d in deliveries for r in d.recipients}


@given(deliveries=deliveries_st(), max_recipients=max_recipients_st)
def test_no_call_carries_more_than_the_limit_or_nothing(deliveries: list[Delivery], max_recipients: int) -> None:
    for call in plan_calls(deliveries, max_recipients=max_recipients):
        assert 1 <= len(call.recipients) <= max_recipients
        assert len(set(call.recipients)) == len(call.recipients)


@given(deliveries=deliveries_st(), max_recipients=max_recipients_st)
def test_every_content_and_recipient_is_in_exactly_one_call(deliveries: list[Delivery], max_recipients: int) -> None:
    sent = Counter(
        (call.content, r) for call in plan_calls(deliveries, max_recipients=max_recipients) for r in call.recipients
    )

    assert set(sent) == wanted(deliveries)
    assert all(times == 1 for times in sent.values())


@given(deliveries=deliveries_st(), max_recipients=max_recipients_st)
def test_the_plan_makes_exactly_the_fewest_possible_calls(deliveries: list[Delivery], max_recipients: int) -> None:
    calls = plan_calls(deliveries, max_recipients=max_recipients)

    assert len(calls) == lower_bound(deliveries, max_recipients=max_recipients)
    by_content = Counter((d.content, r) for d in deliveries for r in d.recipients)
    unique_per_content = Counter(content for content, _ in by_content)
    assert len(calls) == sum(-(-n // max_recipients) for n in unique_per_content.values())


@given(deliveries=deliveries_st(), max_recipients=max_recipients_st)
def test_each_call_serves_exactly_the_requests_that_own_one_of_its_recipients(
    deliveries: list[Delivery], max_recipients: int
) -> None:
    for call in plan_calls(deliveries, max_recipients=max_recipients):
        owners = {
            d.message_id for d in deliveries if d.content == call.content and set(d.recipients) & set(call.recipients)
        }
        assert call.message_ids == owners


@given(deliveries=deliveries_st(), max_recipients=max_recipients_st)
def test_calls_keep_first_seen_order_of_contents_and_recipients(
    deliveries: list[Delivery], max_recipients: int
) -> None:
    calls = plan_calls(deliveries, max_recipients=max_recipients)
    first_seen: dict[Content, dict[Recipient, None]] = {}
    for d in deliveries:
        for r in d.recipients:
            first_seen.setdefault(d.content, {})[r] = None

    assert list(dict.fromkeys(call.content for call in calls)) == list(first_seen)
    for content, recipients in first_seen.items():
        assert [r for call in calls if call.content == content for r in call.recipients] == list(recipients)


@given(deliveries=deliveries_st(), max_recipients=max_recipients_st)
def test_payload_is_the_vendor_body_and_nothing_else(deliveries: list[Delivery], max_recipients: int) -> None:
    for call in plan_calls(deliveries, max_recipients=max_recipients):
        payload = call.payload()
        user_ids = [rid for field, rid in call.recipients if field == "userIds"]
        install_ids = [rid for field, rid in call.recipients if field == "installIds"]

        assert set(payload) <= {"userIds", "installIds", "message", "deeplink"}
        assert "idempotencyKey" not in payload
        assert "expiresAt" not in payload
        assert payload.get("userIds") == (user_ids or None)
        assert payload.get("installIds") == (install_ids or None)
        assert payload["message"] == {"title": call.content.title, "summary": call.content.summary}
        assert ("deeplink" in payload) == (call.content.deeplink is not None)
        if call.content.deeplink is not None:
            assert payload["deeplink"] == call.content.deeplink


@given(deliveries=deliveries_st(), max_recipients=max_recipients_st)
def test_planning_a_generator_of_deliveries_plans_the_same(deliveries: list[Delivery], max_recipients: int) -> None:
    streamed = [Delivery(d.message_id, d.content, iter(tuple(d.recipients))) for d in deliveries]

    assert plan_calls(iter(streamed), max_recipients=max_recipients) == plan_calls(
        deliveries, max_recipients=max_recipients
    )


# --- examples -------------------------------------------------------------------------------------------

SHIPPED = CONTENTS[0]


def test_user_ids_and_install_ids_of_one_content_share_one_call() -> None:
    deliveries = [
        Delivery("a", SHIPPED, [("userIds", "79991234567"), ("userIds", "79990000001")]),
        Delivery("b", SHIPPED, [("installIds", "iid-1")]),
    ]

    calls = plan_calls(deliveries, max_recipients=1000)

    assert len(calls) == 1
    assert calls[0].payload() == {
        "userIds": ["79991234567", "79990000001"],
        "installIds": ["iid-1"],
        "message": {"title": SHIPPED.title, "summary": SHIPPED.summary},
    }
    assert calls[0].message_ids == {"a", "b"}


def test_user_ids_and_install_ids_count_together_against_the_limit() -> None:
    users: list[Recipient] = [("userIds", f"u{i}") for i in range(600)]
    installs: list[Recipient] = [("installIds", f"i{i}") for i in range(600)]

    calls = plan_calls([Delivery("a", SHIPPED, users + installs)], max_recipients=1000)

    assert [len(c.recipients) for c in calls] == [1000, 200]
    assert len(calls[0].payload()["userIds"]) + len(calls[0].payload()["installIds"]) == 1000
    assert "userIds" not in calls[1].payload()  # an empty list is omitted, not sent as []
    assert len(calls[1].payload()["installIds"]) == 200


def test_the_same_text_as_user_id_and_install_id_reaches_both() -> None:
    calls = plan_calls([Delivery("a", SHIPPED, [("userIds", "x"), ("installIds", "x")])], max_recipients=10)

    assert calls[0].payload()["userIds"] == ["x"]
    assert calls[0].payload()["installIds"] == ["x"]


def test_ten_thousand_requests_of_one_content_are_ten_calls() -> None:
    deliveries = [Delivery(f"m{i}", SHIPPED, [("userIds", f"7999{i:07d}")]) for i in range(10_000)]

    calls = plan_calls(deliveries, max_recipients=1000)

    assert len(calls) == 10
    assert all(len(c.recipients) == 1000 and len(c.message_ids) == 1000 for c in calls)


def test_different_deeplink_is_different_content() -> None:
    calls = plan_calls(
        [Delivery("a", CONTENTS[0], [("userIds", "u")]), Delivery("b", CONTENTS[1], [("userIds", "u")])],
        max_recipients=1000,
    )

    assert [c.payload().get("deeplink") for c in calls] == [None, "slug://orders"]


def test_a_recipient_shared_by_two_requests_is_sent_once_for_both() -> None:
    calls = plan_calls(
        [Delivery("a", SHIPPED, [("userIds", "u1"), ("userIds", "u2")]), Delivery("b", SHIPPED, [("userIds", "u2")])],
        max_recipients=1,
    )

    assert calls == [
        PlannedCall(SHIPPED, (("userIds", "u1"),), frozenset({"a"})),
        PlannedCall(SHIPPED, (("userIds", "u2"),), frozenset({"a", "b"})),
    ]


def test_no_deliveries_no_calls() -> None:
    assert plan_calls([], max_recipients=1000) == []
    assert lower_bound([], max_recipients=1000) == 0


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit: int) -> None:
    with pytest.raises(ValueError, match="max_recipients"):
        plan_calls([Delivery("a", SHIPPED, [("userIds", "u")])], max_recipients=limit)
