"""The dispatcher's own messages (pending-pool wakes, re-enqueued copies) are told from producers' messages by
what a producer cannot set by accident: a wake by its exact body, a copy's order by a digest binding it to the
copy's body. A producer's message is parsed and sent, or dead-lettered with a reason, whatever attributes it
carries; it is never taken for a wake, and an attribute of its own never decides latest-wins."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from harness import Harness, body, msg, phones, requeued_copy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_dispatch_shared_waiting import SECONDS, busy, one_recipient_each, wake_message
from test_dispatch_supersede import DELIVERED_TEXT, PAID, T0_MS, collapsed, sent_titles

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.collapse import epoch_ms, order_of
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Deferral
from imshop_push.domain.parsing import parse_body
from imshop_push.domain.pending import GROUP_ATTRIBUTE, wake_body, wake_group
from imshop_push.domain.sqs_copies import ORDER_ATTRIBUTE, RESERVED_ATTRIBUTES, copy_order, order_value, requeue_entry

LEGACY_ORDER_ATTRIBUTES = ("createdAt", "firstReceivedAt")
"""What copies carried before the order was bound to the body: a producer may use these names for anything."""
ATTRIBUTE_NAMES = sorted(RESERVED_ATTRIBUTES | set(LEGACY_ORDER_ATTRIBUTES))


def with_attributes(message: InboundMessage, attributes: dict[str, str]) -> InboundMessage:
    lambda_attributes = {name: {"dataType": "String", "stringValue": value} for name, value in attributes.items()}
    return message._replace(message_attributes={**message.message_attributes, **lambda_attributes})


# ----------------------------------------------------------------------- wakes


@pytest.mark.parametrize("pending", [True, False])
def test_a_request_carrying_a_pending_group_attribute_is_sent_not_taken_for_a_wake(pending: bool) -> None:
    h = Harness(pending=pending)
    group = "transactional:" + "0" * 40

    results = h.run(msg("m1", body(users=["79991234567"]), **{GROUP_ATTRIBUTE: group}))

    assert results == {"m1": Disposition.DELIVERED}
    assert [list(c.recipients) for c in h.api.calls] == [[("userIds", "79991234567")]]
    assert h.metrics["RequestsReceived"] == 1


def test_a_poison_request_carrying_a_pending_group_attribute_is_dead_lettered_with_its_reason() -> None:
    h = Harness(pending=True)
    poison = json.dumps({"userIds": ["79991234567"], "message": {"title": "t"}})

    results = h.results(msg("m1", poison, **{GROUP_ATTRIBUTE: "transactional:abc"}))

    assert results["m1"].disposition is Disposition.DEAD_LETTERED
    [letter] = h.dlq.received
    assert "message.summary" in letter.reason


@pytest.mark.parametrize(
    "text",
    [
        wake_body("g")[:-1] + ', "userIds": ["79991234567"]}',  # a wake's fields and more
        json.dumps({"pendingWake": "g"}),  # part of a wake
        wake_body("g").replace(": ", ":"),  # another spelling of the same JSON
        json.dumps({"pendingWake": "", "about": "x"}),
    ],
)
def test_only_a_wake_body_exactly_as_the_dispatcher_writes_it_is_a_wake(text: str) -> None:
    h = Harness(pending=True)

    assert wake_group(InboundMessage("m1", text)) is None
    assert h.run(msg("m1", text, **{GROUP_ATTRIBUTE: "g"})) == {"m1": Disposition.DEAD_LETTERED}
    assert wake_group(InboundMessage("w", wake_body("transactional:abc"))) == "transactional:abc"


def test_a_wake_a_producer_forges_costs_a_read_of_the_pool_and_loses_nothing() -> None:
    """Early (while every slot is taken) and for a group with nothing in it: the requests wait on, then go once."""
    h = Harness(pending=True)
    busy(h)
    h.run(*one_recipient_each("p", phones(5)), seconds=SECONDS)
    group = h.backlog.wakes[0][1]

    forged = h.run(msg("forged", wake_body(group)), msg("stray", wake_body("bulk:" + "f" * 40)), seconds=SECONDS)

    assert forged == {"forged": Disposition.DELIVERED, "stray": Disposition.DELIVERED}, "a wake is acknowledged"
    assert h.pool.pooled(group) == 5, "taken early, the requests wait in the pool again"
    assert not h.api.calls
    h.clock.now += h.policy.window_seconds + 1
    h.run(wake_message(h), seconds=SECONDS)
    assert sorted(h.api.delivered().values()) == [1] * 5


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=st.dictionaries(st.sampled_from(ATTRIBUTE_NAMES), st.text(min_size=1, max_size=30), max_size=6),
    valid=st.booleans(),
    pending=st.booleans(),
)
def test_whatever_attributes_a_producer_sets_its_message_is_sent_or_dead_lettered(
    attributes: dict[str, str], valid: bool, pending: bool
) -> None:
    h = Harness(pending=pending)
    text = body(users=phones(3), key="k-1") if valid else json.dumps({"userIds": phones(3)})

    results = h.run(with_attributes(msg("m1", text), attributes))

    assert h.metrics["RequestsReceived"] == 1
    if valid:
        assert results == {"m1": Disposition.DELIVERED}
        assert sorted(rid for c in h.api.calls for _, rid in c.recipients) == phones(3)
    else:
        assert results == {"m1": Disposition.DEAD_LETTERED}
        assert h.dlq.received[0].reason


# ----------------------------------------------------------------------- latest wins


def test_a_producer_created_at_attribute_in_epoch_seconds_does_not_make_the_newest_status_old() -> None:
    h = Harness()
    older = collapsed("older", message=PAID, sent_ms=T0_MS - 60_000)
    newer = with_attributes(
        collapsed("newer", message=DELIVERED_TEXT, sent_ms=T0_MS - 1_000),
        {"createdAt": str(T0_MS // 1000 - 1), "firstReceivedAt": str(T0_MS // 1000 - 1)},
    )

    results = h.run(older, newer)

    assert results == {"older": Disposition.SUPERSEDED, "newer": Disposition.DELIVERED}
    assert sent_titles(h) == [DELIVERED_TEXT["title"]]


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from([*LEGACY_ORDER_ATTRIBUTES, ORDER_ATTRIBUTE]),
    value=st.one_of(
        st.integers(-(2**63), 2**63).map(str),
        st.tuples(st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15), st.text(max_size=40)).map(
            lambda t: f"{t[0]}:{t[1]}:{t[2]}"
        ),
        st.text(max_size=40),
    ),
)
def test_no_attribute_a_producer_sets_decides_the_order(name: str, value: str) -> None:
    message = collapsed("m1", sent_ms=T0_MS - 5_000, received_ms=T0_MS - 4_000)
    request = parse_body(message.body, message_id="m1")

    assert order_of(request, with_attributes(message, {name: value}), T0_MS) == (T0_MS - 5_000, T0_MS - 4_000)


def test_an_order_copied_from_another_message_does_not_apply() -> None:
    first = collapsed("m1", message=PAID, sent_ms=1_000, received_ms=1_200)
    other = collapsed("m2", message=DELIVERED_TEXT, sent_ms=5_000, received_ms=5_100)

    copied = with_attributes(other, {ORDER_ATTRIBUTE: order_value(first.body, 1_000, 1_200)})

    assert copy_order(copied) is None
    assert copy_order(with_attributes(first, {ORDER_ATTRIBUTE: order_value(first.body, 1_000, 1_200)})) == (
        1_000,
        1_200,
    )


@settings(max_examples=200, deadline=None)
@given(
    created=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=23, minutes=59))]))
    | st.datetimes(timezones=st.just(timezone(-timedelta(hours=23, minutes=59)))),
    received_ms=st.integers(0, 4_102_444_800_000),
)
@example(created=datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=23, minutes=59))), received_ms=0)
@example(created=datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=23, minutes=59))), received_ms=0)
def test_a_copy_carries_the_order_of_any_created_at_a_request_can_name(created: datetime, received_ms: int) -> None:
    """Year 1 with a positive offset and year 9999 with a negative one lie outside years 1 to 9999 in UTC: their
    copies must still read back their order, or each hop would take a new first-received time."""
    message = collapsed("m1", message=PAID, sent_ms=1_000, received_ms=1_200)
    created_ms = epoch_ms(created)

    copy = with_attributes(message, {ORDER_ATTRIBUTE: order_value(message.body, created_ms, received_ms)})

    assert copy_order(copy) == (created_ms, received_ms)


def test_the_dispatchers_own_copy_keeps_its_order_over_a_producers_attributes() -> None:
    h = Harness()
    original = with_attributes(
        collapsed("m1", message=PAID, sent_ms=T0_MS - 60_000), {"createdAt": "1", ORDER_ATTRIBUTE: "1:1:00"}
    )
    request = parse_body(original.body, message_id="m1")
    order = (T0_MS - 60_000, T0_MS - 60_000)
    copy = requeued_copy(Deferral(original, 30, request.idempotency_key, request.key_is_message_id, order), "c1")
    copy = copy._replace(sent_timestamp_ms=T0_MS, first_received_ms=T0_MS)
    newer = collapsed("m2", message=DELIVERED_TEXT, sent_ms=T0_MS - 1_000)

    results = h.run(copy, newer)

    assert copy_order(copy) == order
    assert "createdAt" in requeue_entry(Deferral(original, 30, "k", False, order))["MessageAttributes"]
    assert results == {"c1": Disposition.SUPERSEDED, "m2": Disposition.DELIVERED}
    assert sent_titles(h) == [DELIVERED_TEXT["title"]]
