"""Cancel: `{"cancel": {"idempotencyKey": ...}}` on either queue, in any envelope. Whatever of the request is
not sent yet is never sent, whether the cancel comes before it, with it, while it waits for budget, while it
is held for its sendAt, or between the parts of a split request; a sent request is left as it is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import SENT, unavailable
from harness import AMBIGUOUS, BONUS, FAILED, Harness, body, msg, phones, requeued_copy
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dispatch_send_time import scheduled

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.model import CallOutcome, CallResult
from imshop_push.domain.parsing import storable_key


def cancel(key: str) -> str:
    return json.dumps({"cancel": {"idempotencyKey": key}})


def test_a_cancel_before_its_request_means_it_is_never_sent() -> None:
    h = Harness()

    assert h.run(msg("c", cancel("order-1"))) == {"c": Disposition.CANCEL_RECORDED}
    assert h.run(msg("r", body(users=["u1"], key="order-1"))) == {"r": Disposition.CANCELLED}

    assert h.api.calls == []
    assert (h.metrics["CancelsReceived"], h.metrics["RequestsCancelled"]) == (1, 1)


def test_a_cancel_in_the_same_batch_as_its_request_wins_and_others_are_sent() -> None:
    h = Harness()

    results = h.run(
        msg("r", body(users=["u1"], key="order-1")),
        msg("c", cancel("order-1")),
        msg("other", body(users=["u2"], key="order-2", message=BONUS)),
    )

    assert results == {"r": Disposition.CANCELLED, "c": Disposition.CANCEL_RECORDED, "other": Disposition.DELIVERED}
    assert [c.payload["message"]["title"] for c in h.api.calls] == [BONUS["title"]]


def test_a_cancel_of_a_sent_request_changes_nothing() -> None:
    h = Harness()
    request = msg("r", body(users=["u1"], key="order-1"))
    assert h.run(request) == {"r": Disposition.DELIVERED}

    assert h.run(msg("c", cancel("order-1"))) == {"c": Disposition.CANCEL_RECORDED}

    assert h.run(request) == {"r": Disposition.DUPLICATE}, "still the delivered request, not a cancelled one"
    assert len(h.api.calls) == 1
    assert h.metrics["RequestsCancelled"] == 0


def test_a_cancel_stops_a_request_waiting_for_budget_in_the_same_execution() -> None:
    h = Harness(limit=1, window=60, margin=1.2)

    def cancel_the_second(payload: dict[str, Any]) -> CallOutcome:
        h.state.cancel([storable_key("second")], now=h.clock())  # arrives through another execution
        return SENT

    h.api.answer = cancel_the_second
    results = h.run(
        msg("a", body(users=["u1"], key="first", message=BONUS)),
        msg("b", body(users=["u2"], key="second")),
        seconds=900,
    )

    assert results == {"a": Disposition.DELIVERED, "b": Disposition.CANCELLED}
    assert len(h.api.calls) == 1
    assert h.metrics["RequestsCancelled"] == 1


def test_a_cancel_stops_what_is_left_of_a_split_request_and_a_deferred_copy() -> None:
    h = Harness(limit=1, window=60, margin=1.2)
    assert h.run(msg("r", body(users=phones(1500), key="campaign")), seconds=30) == {"r": Disposition.DEFERRED}
    assert len(h.api.calls) == 1

    assert h.run(msg("c", cancel("campaign"))) == {"c": Disposition.CANCEL_RECORDED}
    h.clock.now += h.backlog.received[0].delay_seconds
    assert h.run(requeued_copy(h.backlog.received[0], "r/0")) == {"r/0": Disposition.CANCELLED}

    assert len(h.api.calls) == 1, "the second half is never sent"


@pytest.mark.parametrize("first_answer", [FAILED, AMBIGUOUS], ids=["503", "no answer"])
def test_a_cancel_after_a_failed_or_unanswered_call_stops_the_rest_of_the_request(first_answer: CallOutcome) -> None:
    """Call 1 of a split request fails (nothing sent) or goes unanswered (perhaps sent): the request would go back
    to SQS, but its call 2 was still to be sent in this invocation. A cancel that comes meanwhile stops it; what
    call 1 carried is not sent again either, now or when SQS hands the request over again."""
    h = Harness(max_recipients=2)

    def cancelled_meanwhile(payload: dict[str, Any]) -> CallOutcome:
        h.state.cancel([storable_key("campaign")], now=h.clock())  # another execution records it
        return first_answer

    h.api.answer = cancelled_meanwhile
    request = msg("r", body(users=phones(4), key="campaign"))

    assert h.run(request) == {"r": Disposition.CANCELLED}
    h.api.answer = None
    h.clock.now += 120
    assert h.run(request) == {"r": Disposition.CANCELLED}, "SQS hands it over again (at least once)"

    assert len(h.api.calls) == 1, "call 2 is never sent, call 1 never again"
    assert h.metrics["RequestsCancelled"] == 2
    assert h.metrics["AmbiguousRedeliveries"] == 0


ANSWERS = {"sent": SENT, "503": FAILED, "no answer": AMBIGUOUS}


@settings(max_examples=60, deadline=None)
@given(
    st.integers(2, 4),
    st.lists(st.sampled_from(sorted(ANSWERS)), min_size=4, max_size=4),
    st.integers(1, 4),
)
def test_whatever_the_earlier_calls_answered_nothing_of_a_cancelled_request_is_sent_after_its_cancel(
    parts: int, answers: list[str], cancel_during: int
) -> None:
    """A request split over `parts` calls, merged with another request of the same text; its earlier calls answer
    anything; its cancel is recorded while call `cancel_during` is in flight. No call after that carries it, in
    this invocation or any redelivery, and the other request is still delivered."""
    cancel_during = min(cancel_during, parts)
    h = Harness(max_recipients=1)
    calls: list[tuple[set[str], CallResult]] = []

    def answer(payload: dict[str, Any]) -> CallOutcome:
        if len(h.api.calls) == cancel_during:
            h.state.cancel([storable_key("campaign")], now=h.clock())
        outcome = ANSWERS[answers[len(h.api.calls) - 1]] if len(h.api.calls) <= cancel_during else SENT
        calls.append((set(payload["userIds"]), outcome.result))
        return outcome

    h.api.answer = answer
    ours = phones(parts)
    pending = [msg("r", body(users=ours, key="campaign")), msg("o", body(users=["other"], key="other"))]
    for _ in range(6):
        results = h.run(*pending)
        pending = [m for m in pending if results[m.message_id] is Disposition.RETRY]
        h.clock.now += 120
    assert pending == [], "everything settled"

    after_cancel = [recipients for recipients, _ in calls[cancel_during:]]
    assert not any(recipients & set(ours) for recipients in after_cancel), "a call after the cancel carried it"
    assert any("other" in recipients and result is CallResult.SENT for recipients, result in calls)


def test_a_held_request_cancelled_meanwhile_is_dropped_when_due() -> None:
    h = Harness()
    assert h.run(msg("r", scheduled(T0 + 60, key="reminder"))) == {"r": Disposition.HELD}
    assert h.run(msg("c", cancel("reminder"))) == {"c": Disposition.CANCEL_RECORDED}

    h.clock.now += 60
    assert h.run(requeued_copy(h.backlog.received[0], "r/0")) == {"r/0": Disposition.CANCELLED}
    assert h.api.calls == []


def test_a_cancel_names_the_default_key_and_keys_are_stored_as_requests_keys_are() -> None:
    h = Harness()
    odd = "order\u0007" + "x" * 200  # not printable: stored hashed, as the request's key is
    event = {"id": "event-7", "source": "crm", "detail-type": "push", "detail": {"cancel": {"idempotencyKey": odd}}}

    assert h.run(msg("c1", json.dumps(event)), msg("c2", cancel("sqs-id-r"))) == {
        "c1": Disposition.CANCEL_RECORDED,
        "c2": Disposition.CANCEL_RECORDED,
    }
    sns = {"Type": "Notification", "MessageId": "sns-1", "Message": body(users=["u1"], key=odd)}
    assert h.run(msg("r1", json.dumps(sns)), msg("sqs-id-r", body(users=["u2"]))) == {
        "r1": Disposition.CANCELLED,
        "sqs-id-r": Disposition.CANCELLED,
    }
    assert h.api.calls == []


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"cancel": {"idempotencyKey": "k", "reason": "x"}}, "cancel: unknown field(s) reason"),
        ({"cancel": {}}, "cancel.idempotencyKey: is a required property"),
        ({"cancel": {"idempotencyKey": ""}}, "cancel.idempotencyKey: must be a non-empty string"),
        ({"cancel": {"idempotencyKey": "k" * 257}}, "cancel.idempotencyKey: must be a non-empty string"),
        ({"cancel": {"idempotencyKey": 7}}, "cancel.idempotencyKey: must be a non-empty string"),
        ({"cancel": "k"}, 'cancel: must be an object {"idempotencyKey": "<key>"}, got string'),
        ({"cancel": {"idempotencyKey": "k"}, "userIds": ["u"]}, "cancel: a cancel message holds nothing but"),
    ],
)
def test_a_malformed_cancel_is_poison_with_a_reason(document: dict[str, Any], reason: str) -> None:
    h = Harness()

    result = h.results(msg("c", json.dumps(document)))["c"]

    assert result.disposition is Disposition.DEAD_LETTERED
    assert result.reason.startswith(reason), result.reason
    assert h.metrics["CancelsReceived"] == 0


def test_a_malformed_cancel_in_an_event_names_the_detail_path() -> None:
    event = {"id": "e", "source": "s", "detail-type": "t", "detail": {"cancel": {}}}

    result = Harness().results(msg("c", json.dumps(event)))["c"]

    assert result.reason.startswith("detail.cancel.idempotencyKey: is a required property")


def test_when_the_cancel_cannot_be_recorded_it_and_its_request_in_the_batch_go_back_to_sqs() -> None:
    h = Harness()
    h.state.cancel = _unavailable  # type: ignore[method-assign]

    results = h.run(
        msg("c", cancel("order-1")), msg("r", body(users=["u1"], key="order-1")), msg("o", body(users=["u2"]))
    )

    assert results == {"c": Disposition.RETRY, "r": Disposition.RETRY, "o": Disposition.DELIVERED}
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u2")]]


def _unavailable(*_args: object, **_kwargs: object) -> None:
    raise unavailable("cancel")
