"""Idempotency keys: duplicates, conflicting content, copies in one batch, and keyless requests
that keep their key once IMSHOP may have part of them."""

from __future__ import annotations

from collections import Counter

import pytest
from fakes import SENT
from harness import AMBIGUOUS, BONUS, FAILED, QUEUE_ARN, SHIPPED, Harness, body, lambda_attributes, msg, requeued_copy

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import CallOutcome, CallResult
from imshop_push.domain.sqs_copies import dead_letter_entry


def test_the_same_key_twice_in_a_batch_with_the_same_content_is_sent_once() -> None:
    h = Harness()

    results = h.run(msg("m1", body(users=["u1"], key="order-1")), msg("m2", body(users=["u1"], key="order-1")))

    assert results == {"m1": Disposition.DELIVERED, "m2": Disposition.DUPLICATE}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", "u1"): 1})
    assert h.metrics["DuplicatesSkipped"] == 1


def test_the_same_key_twice_in_a_batch_with_different_content_is_poison() -> None:
    h = Harness()

    results = h.results(msg("m1", body(users=["u1"], key="order-1")), msg("m2", body(users=["u2"], key="order-1")))

    assert results["m1"].disposition is Disposition.DELIVERED
    assert results["m2"].disposition is Disposition.DEAD_LETTERED
    assert "key reused" in results["m2"].reason
    [poison] = h.dlq.received
    assert poison.message.message_id == "m2"
    assert poison.reason.startswith("idempotencyKey:")
    assert "key reused" in poison.reason
    assert h.api.calls[0].recipients == [("userIds", "u1")]


def test_a_redelivered_delivered_request_is_a_duplicate_and_makes_no_call() -> None:
    h = Harness()
    message = msg("m1", body(users=["u1", "u2"]))
    assert h.run(message) == {"m1": Disposition.DELIVERED}
    h.clock.now += 3600

    assert h.run(message) == {"m1": Disposition.DUPLICATE}
    assert len(h.api.calls) == 1
    assert h.metrics["DuplicatesSkipped"] == 1


def test_the_same_key_in_a_later_batch_is_a_duplicate_even_under_a_new_sqs_id() -> None:
    h = Harness()
    h.run(msg("m1", body(users=["u1"], key="order-1")))

    assert h.run(msg("m2", body(users=["u1"], key="order-1"))) == {"m2": Disposition.DUPLICATE}
    assert len(h.api.calls) == 1


def test_the_same_key_in_a_later_batch_with_other_content_is_poison() -> None:
    h = Harness()
    h.run(msg("m1", body(users=["u1"], key="order-1")))

    results = h.results(msg("m2", body(users=["u1"], key="order-1", message=BONUS)))

    assert results["m2"].disposition is Disposition.DEAD_LETTERED
    assert "key reused" in results["m2"].reason
    assert len(h.api.calls) == 1


def test_the_same_content_under_another_key_in_a_later_batch_is_another_notification() -> None:
    h = Harness()
    h.run(msg("m1", body(users=["u1"], key="order-1")))

    assert h.run(msg("m2", body(users=["u1"], key="order-2"))) == {"m2": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", "u1"): 2})


def test_a_redriven_keyless_request_resumes_where_it_stopped() -> None:
    """A raw request without idempotencyKey is keyed by its SQS message id; redriven from the DLQ it gets a new
    one. The dead letter carries the key, so the recipients IMSHOP already has are not sent again."""
    h = Harness(max_recipients=1)
    h.api.script = [SENT, CallOutcome(CallResult.REJECTED, "IMSHOP answered 400: Bad Request", 400)]
    original = msg("m1", body(users=["u1", "u2"]), producer="crm")

    assert h.run(original) == {"m1": Disposition.DEAD_LETTERED}
    entry = dead_letter_entry(h.dlq.received[0])
    assert entry["MessageBody"] == original.body, "the dead letter keeps the original body"
    assert entry["MessageAttributes"]["idempotencyKey"]["StringValue"] == "m1"
    assert entry["MessageAttributes"]["producer"]["StringValue"] == "crm"

    redriven = InboundMessage("redriven-1", entry["MessageBody"], QUEUE_ARN, 1, lambda_attributes(entry))
    assert h.run(redriven) == {"redriven-1": Disposition.DELIVERED}, "the cause was fixed, IMSHOP takes u2 now"
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u1")], [("userIds", "u2")], [("userIds", "u2")]]


def test_a_keyless_request_that_reached_imshop_is_retried_as_a_keyed_copy_so_sqs_redrive_cannot_resend_it() -> None:
    """SQS's own move to the DLQ (maxReceiveCount) adds no attribute, and a redriven copy has a new message id:
    a keyless request must not go that way once IMSHOP may have part of it."""
    h = Harness(max_recipients=1)
    h.api.script = [SENT, FAILED]
    original = msg("m1", body(users=["u1", "u2"]))

    assert h.run(original) == {"m1": Disposition.REQUEUED}
    (retry,) = h.backlog.received
    copy = requeued_copy(retry, "copy-1")
    assert copy.body == original.body, "the copy is the original, byte for byte"
    assert copy.message_attributes["idempotencyKey"]["stringValue"] == "m1"

    h.api.script = [FAILED]
    h.clock.now += 120
    assert h.run(copy) == {"copy-1": Disposition.RETRY}, "keyed now: ordinary retries, towards the DLQ"
    # SQS dead-letters it after maxReceiveCount, keeping its attributes; a redrive gives it a new message id.
    redriven = InboundMessage("redriven-1", copy.body, QUEUE_ARN, 1, copy.message_attributes)
    h.clock.now += 120
    assert h.run(redriven) == {"redriven-1": Disposition.DELIVERED}
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u1")]] + [[("userIds", "u2")]] * 3, (
        "u1 once (confirmed); u2 failed twice, then was sent"
    )
    assert h.metrics["RetriesRequeued"] == 1


def test_a_keyless_request_whose_calls_all_failed_goes_back_to_sqs_as_usual() -> None:
    h = Harness()
    h.api.script = [FAILED]

    assert h.run(msg("m1", body(users=["u1"]))) == {"m1": Disposition.RETRY}
    assert h.backlog.received == []


@pytest.mark.parametrize(("receive_count", "expected"), [(1, Disposition.RETRY), (2, Disposition.REQUEUED)])
def test_a_keyless_redelivery_that_cannot_be_claimed_keeps_its_key_if_it_may_have_history(
    receive_count: int, expected: Disposition
) -> None:
    """An earlier receive may have sent part of it (and died): unknown history is treated as history."""
    h = Harness()
    h.state.failing = {"claim_many"}
    message = msg("m1", body(users=["u1"]))._replace(receive_count=receive_count)

    assert h.run(message) == {"m1": expected}


def test_a_failed_keyed_copy_falls_back_to_an_sqs_retry_when_it_cannot_be_written() -> None:
    h = Harness()
    h.api.script = [AMBIGUOUS]
    h.backlog.fail_ids = {"m1"}

    assert h.run(msg("m1", body(users=["u1"]))) == {"m1": Disposition.RETRY}


def test_the_same_sqs_message_twice_in_a_batch_is_not_acknowledged_when_its_call_failed() -> None:
    h = Harness()
    a = msg("a", body(users=["u1"], key="a"))
    h.api.script = [FAILED]

    assert h.results(a, a)["a"].disposition is Disposition.RETRY
    h.clock.now += 60
    assert h.run(a) == {"a": Disposition.DELIVERED}, "not a duplicate of itself: its call failed"
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u1")]] * 2


def test_a_redelivery_is_not_poisoned_by_a_conflicting_message_with_its_key_earlier_in_the_batch() -> None:
    h = Harness()
    original = msg("x", body(users=["u1"], key="order-1"))
    assert h.run(original) == {"x": Disposition.DELIVERED}
    h.clock.now += 60
    impostor = msg("y", body(users=["u1"], key="order-1", message=BONUS))

    assert h.run(impostor, original) == {"y": Disposition.DEAD_LETTERED, "x": Disposition.DUPLICATE}
    assert [p.message.message_id for p in h.dlq.received] == ["y"]


def test_a_waiting_request_wins_its_key_over_a_conflicting_content_first_in_the_batch() -> None:
    h = Harness(limit=1, max_recipients=1)
    waiting = msg("x", body(users=["u1", "u2"], key="order-1"))
    assert h.run(waiting, seconds=20) == {"x": Disposition.DEFERRED}
    h.clock.now += 70
    impostor = msg("y", body(users=["u3"], key="order-1", message=BONUS))
    back = requeued_copy(h.backlog.received[0], "x-2")

    assert h.run(impostor, back) == {"y": Disposition.DEAD_LETTERED, "x-2": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", u): 1 for u in ("u1", "u2")})


def test_without_state_the_first_content_in_the_batch_wins_its_key() -> None:
    h = Harness()
    first = msg("x", body(users=["u1"], key="order-1"))
    second = msg("y", body(users=["u1"], key="order-1", message=BONUS))

    assert h.run(first, second) == {"x": Disposition.DELIVERED, "y": Disposition.DEAD_LETTERED}
    assert "key reused with different content" in h.dlq.received[0].reason
