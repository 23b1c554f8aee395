"""Shared waiting: requests of one content deferred by different batches wait in one pending group and leave
it together, so the call that gets a slot carries them all (`pending.py`, `stages/pending.py`)."""

from __future__ import annotations

import math

from harness import BONUS, FAILED, QUEUE_ARN, Harness, body, msg, phones

from imshop_push.dispatcher import Disposition
from imshop_push.inbound import InboundMessage
from imshop_push.lanes import Lane
from imshop_push.parsing import parse_body
from imshop_push.pending import GROUP_ATTRIBUTE, TAKE_MAX_ITEMS, wake_body
from imshop_push.rate_limit import Denied

SECONDS = 30.0  # less than the window: a denied call cannot wait for its slot in-process


def busy(h: Harness) -> None:
    """Every slot of the coming window is taken by calls of other executions."""
    for _ in range(h.policy.limit):
        h.limiter.try_acquire(h.clock())


def one_recipient_each(prefix: str, users: list[str]) -> list[InboundMessage]:
    return [msg(f"{prefix}-{n}", body(users=[user], key=f"{prefix}-{n}")) for n, user in enumerate(users)]


def wake_message(h: Harness, index: int = -1, message_id: str = "wake") -> InboundMessage:
    _, group, _ = h.backlog.wakes[index]
    return msg(message_id, wake_body(group), **{GROUP_ATTRIBUTE: group})


def test_three_batches_of_one_text_wait_together_and_leave_in_one_call() -> None:
    h = Harness(pending=True)
    busy(h)
    users = phones(300)
    for batch in range(3):
        results = h.run(*one_recipient_each(f"b{batch}", users[batch * 100 : (batch + 1) * 100]), seconds=SECONDS)
        assert set(results.values()) == {Disposition.DEFERRED}
    assert h.metrics["RequestsPooled"] == 300
    assert h.backlog.received == [], "no request waits as a copy of its own"
    assert len(h.backlog.wakes) == 1, "the first deferral's wake serves the later ones"
    assert not h.api.calls

    h.clock.now += h.backlog.wakes[0][2] + h.policy.window_seconds
    assert h.run(wake_message(h), seconds=SECONDS) == {"wake": Disposition.DELIVERED}

    assert len(h.api.calls) == 1
    assert sorted(rid for _, rid in h.api.calls[0].recipients) == sorted(users)
    assert h.pool.pooled(h.backlog.wakes[0][1]) == 0, "what was sent leaves the pool"


def test_a_lone_deferred_request_waits_as_a_copy() -> None:
    h = Harness(pending=True)
    busy(h)
    assert h.run(msg("m1", body(users=phones(1))), msg("m2", body(users=phones(1, 5), message=BONUS)), seconds=SECONDS)
    assert {d.message.message_id for d in h.backlog.received} == {"m1", "m2"}
    assert h.backlog.wakes == []
    assert h.metrics["RequestsPooled"] == 0


def test_a_wake_with_budget_for_one_call_sends_a_full_one_and_keeps_the_rest_waiting() -> None:
    h = Harness(pending=True, limit=1)
    busy(h)
    users = phones(2500)
    h.run(*one_recipient_each("a", users), seconds=SECONDS)
    group = h.backlog.wakes[0][1]
    h.clock.now += h.policy.window_seconds + 1
    assert h.run(wake_message(h), seconds=SECONDS) == {"wake": Disposition.DELIVERED}
    assert [len(c.recipients) for c in h.api.calls] == [1000], "the one slot carries a full call"
    assert h.pool.pooled(group) == 1500
    assert len(h.backlog.wakes) == 2, "the rest has a wake of its own"

    for round_ in range(2):
        h.clock.now += h.policy.window_seconds + 1
        h.run(wake_message(h, message_id=f"wake-{round_}"), seconds=SECONDS)
    assert [len(c.recipients) for c in h.api.calls] == [1000, 1000, 500]
    assert sorted(h.api.delivered().values()) == [1] * 2500, "every recipient once"
    assert h.pool.pooled(group) == 0


def test_a_request_redelivered_while_it_waits_in_the_pool_is_sent_once() -> None:
    h = Harness(pending=True)
    busy(h)
    originals = one_recipient_each("r", phones(5))
    h.run(*originals, seconds=SECONDS)
    h.clock.now += h.policy.window_seconds + 1
    results = h.run(wake_message(h), originals[0], seconds=SECONDS)  # SQS handed the original over again
    assert results["wake"] is Disposition.DELIVERED
    assert sorted(h.api.delivered().values()) == [1] * 5


def test_requests_another_execution_holds_stay_pooled_with_a_new_wake() -> None:
    h = Harness(pending=True)
    busy(h)
    requests = one_recipient_each("h", phones(4))
    h.run(*requests, seconds=SECONDS)
    h.clock.now += h.policy.window_seconds + 1
    held = parse_body(requests[0].body, message_id="h-0")  # another execution took it up meanwhile
    h.state.claim_many(
        [(held.idempotency_key, held.fingerprint)], attempt_id="x", now=h.clock(), lease_until=h.clock() + 600
    )
    h.run(wake_message(h), seconds=SECONDS)
    group = h.backlog.wakes[0][1]
    assert h.pool.pooled(group) == 1, "the request another execution holds is not dropped"
    assert sorted(h.api.delivered().values()) == [1, 1, 1], "the others were sent"
    assert len(h.backlog.wakes) == 2


def test_a_failed_call_keeps_its_requests_in_the_pool() -> None:
    h = Harness(pending=True)
    busy(h)
    h.run(*one_recipient_each("f", phones(3)), seconds=SECONDS)
    group = h.backlog.wakes[0][1]
    h.clock.now += h.policy.window_seconds + 1
    h.api.script = [FAILED]
    assert h.run(wake_message(h), seconds=SECONDS) == {"wake": Disposition.DELIVERED}
    assert h.pool.pooled(group) == 3
    assert len(h.backlog.wakes) == 2, "a wake a window later tries again"
    h.clock.now += h.policy.window_seconds + 1
    h.run(wake_message(h, message_id="wake-2"), seconds=SECONDS)
    assert sorted(h.api.delivered().values()) == [2, 2, 2], "the failed call, then the one that went through"
    assert h.pool.pooled(group) == 0


def test_an_unwritable_wake_hands_the_requests_back_to_sqs() -> None:
    h = Harness(pending=True)
    busy(h)
    h.backlog.fail_wakes = True
    results = h.run(*one_recipient_each("w", phones(3)), seconds=SECONDS)
    assert set(results.values()) == {Disposition.RETRY}


def test_an_unavailable_pool_lets_the_requests_wait_as_copies() -> None:
    h = Harness(pending=True)
    busy(h)
    h.pool.fail.add("put")
    results = h.run(*one_recipient_each("u", phones(3)), seconds=SECONDS)
    assert set(results.values()) == {Disposition.DEFERRED}
    assert len(h.backlog.received) == 3


def test_a_wake_the_pool_cannot_answer_goes_back_to_sqs() -> None:
    h = Harness(pending=True)
    busy(h)
    h.run(*one_recipient_each("t", phones(3)), seconds=SECONDS)
    h.pool.fail.add("take")
    assert h.run(wake_message(h), seconds=SECONDS) == {"wake": Disposition.RETRY}


def test_a_group_larger_than_one_take_gets_a_wake_for_the_rest() -> None:
    h = Harness(pending=True, limit=10)
    busy(h)
    h.run(*one_recipient_each("g", phones(TAKE_MAX_ITEMS + 10)), seconds=SECONDS)
    h.clock.now += h.policy.window_seconds + 1
    h.run(wake_message(h), seconds=SECONDS)
    assert len(h.backlog.wakes) == 2
    h.clock.now += h.policy.window_seconds + 1
    h.run(wake_message(h, message_id="wake-2"), seconds=SECONDS)
    assert sorted(h.api.delivered().values()) == [1] * (TAKE_MAX_ITEMS + 10)


def test_a_partial_call_of_a_content_that_waits_joins_it_instead_of_taking_a_slot() -> None:
    h = Harness(pending=True, limit=2, bulk_queue_arn=QUEUE_ARN)
    busy(h)
    h.run(*one_recipient_each("early", phones(50)), seconds=SECONDS)  # denied: now the content waits
    h.clock.now += h.policy.window_seconds - 5  # a slot is free again, the wake is due within the window
    later = one_recipient_each("late", phones(50, 100))
    assert set(h.run(*later, seconds=SECONDS).values()) == {Disposition.DEFERRED}
    assert not h.api.calls, "no slot spent on 50 recipients while 50 more wait"
    assert len(h.backlog.wakes) == 1, "they join the armed wake"

    h.clock.now += 10
    h.run(wake_message(h), seconds=SECONDS)
    assert [len(c.recipients) for c in h.api.calls] == [100]


def test_personal_texts_and_the_wakes_own_requests_never_wait_for_others() -> None:
    h = Harness(pending=True, limit=2, bulk_queue_arn=QUEUE_ARN)
    busy(h)
    h.run(*one_recipient_each("early", phones(50)), seconds=SECONDS)
    h.clock.now += h.policy.window_seconds + 1
    lone = msg("lone", body(users=phones(1, 500), key="lone"))  # the same text, one request: nobody to merge with
    assert h.run(lone, seconds=SECONDS) == {"lone": Disposition.DELIVERED}
    assert h.run(wake_message(h), seconds=SECONDS) == {"wake": Disposition.DELIVERED}
    assert [len(c.recipients) for c in h.api.calls] == [1, 50]


def test_a_partial_merged_call_waits_in_the_pool_not_in_process_for_a_slot() -> None:
    h = Harness(pending=True, limit=1, window=10.0, bulk_queue_arn=QUEUE_ARN)
    busy(h)
    started = h.clock()
    results = h.run(*one_recipient_each("p", phones(30)), seconds=SECONDS)  # its slot comes within the deadline
    assert set(results.values()) == {Disposition.DEFERRED}
    assert h.clock() == started, "no sleep for a slot"
    [(_, _, delay)] = h.backlog.wakes
    slot = h.limiter.try_acquire(started, Lane.BULK)
    assert isinstance(slot, Denied)
    assert delay == math.ceil(slot.retry_at - started), "the wake is due when the slot frees"


def test_a_transactional_partial_merged_call_waits_in_the_pool_too() -> None:
    h = Harness(pending=True, limit=1, window=10.0)  # the queue is the transactional lane
    busy(h)
    results = h.run(*one_recipient_each("t", phones(30)), seconds=SECONDS)
    assert set(results.values()) == {Disposition.DEFERRED}, "a merged partial call waits with its text"
    h.clock.now += h.backlog.wakes[0][2]
    assert h.run(wake_message(h), seconds=SECONDS) == {"wake": Disposition.DELIVERED}
    assert [len(c.recipients) for c in h.api.calls] == [30]


def test_an_order_status_is_never_held_back_for_others() -> None:
    h = Harness(pending=True, limit=1, window=10.0)
    busy(h)
    h.run(*one_recipient_each("early", phones(50)), seconds=SECONDS)  # a content waits in the pool
    h.clock.now += 5
    status = msg("status", body(users=phones(1, 900), message=BONUS, key="order-1-status"))
    assert h.run(status, seconds=SECONDS) == {"status": Disposition.DEFERRED}, "out of budget in this invocation"
    assert {d.message.message_id for d in h.backlog.received} == {"status"}, "its own copy, not the pool"
