"""Shared waiting: requests of one content deferred by different batches wait in one pending group and leave
it together, so the call that gets a slot carries them all (`pending.py`, `stages/pending.py`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Sequence

import pytest
from fakes import FlakyPendingPool
from harness import BONUS, FAILED, QUEUE_ARN, Harness, body, msg, phones, requeued_copy

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.lanes import Lane
from imshop_push.domain.parsing import parse_body
from imshop_push.domain.pending import GROUP_ATTRIBUTE, TAKE_MAX_ITEMS, PendingCopy, wake_body
from imshop_push.domain.rate_limit import Denied

SECONDS = 30.0  # less than the window: a denied call cannot wait for its slot in-process


def busy(h: Harness) -> None:
    """Every slot of the coming window is taken by calls of other executions."""
    for _ in range(h.policy.limit):
        h.limiter.try_acquire(h.clock())


def until_slots_free(h: Harness) -> None:
    """The clock moves on to the moment the next slot frees (a wake held to fill may come before it)."""
    outcome = h.limiter.try_acquire(h.clock(), Lane.BULK)
    if isinstance(outcome, Denied):
        h.clock.now = max(h.clock.now, outcome.retry_at)
    else:
        h.limiter.give_back(outcome)


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


def test_a_lone_request_of_a_text_that_waits_joins_it_and_a_personal_text_goes_at_once() -> None:
    h = Harness(pending=True, limit=2, bulk_queue_arn=QUEUE_ARN)
    busy(h)
    h.run(*one_recipient_each("early", phones(50)), seconds=SECONDS)
    h.clock.now += h.policy.window_seconds + 1
    h.dispatcher = h.execution()  # another environment: the one that pooled them would take them itself
    lone = msg("lone", body(users=phones(1, 500), key="lone"))  # the same text, one request: part of its stream
    assert h.run(lone, seconds=SECONDS) == {"lone": Disposition.DEFERRED}, "it joins the text that waits"
    status = msg("status", body(users=phones(1, 900), message=BONUS, key="order-1-status"))
    assert h.run(status, seconds=SECONDS) == {"status": Disposition.DELIVERED}, "nothing else carries it"
    assert h.run(wake_message(h), seconds=SECONDS) == {"wake": Disposition.DELIVERED}, "the wake's own are sent"
    assert [len(c.recipients) for c in h.api.calls] == [1, 51]


def test_a_partial_merged_call_waits_in_the_pool_not_in_process_for_a_slot() -> None:
    h = Harness(pending=True, limit=1, window=10.0, bulk_queue_arn=QUEUE_ARN)
    busy(h)
    started = h.clock()
    results = h.run(*one_recipient_each("p", phones(30)), seconds=SECONDS)  # its slot comes within the deadline
    assert set(results.values()) == {Disposition.DEFERRED}
    assert h.clock() == started, "no sleep for a slot"
    [(_, _, delay)] = h.backlog.wakes
    assert delay == h.policy.window_seconds, "a window for the rest of its text to arrive"


def test_a_transactional_partial_merged_call_waits_in_the_pool_too() -> None:
    h = Harness(pending=True, limit=1, window=10.0)  # the queue is the transactional lane
    busy(h)
    results = h.run(*one_recipient_each("t", phones(30)), seconds=SECONDS)
    assert set(results.values()) == {Disposition.DEFERRED}, "a merged partial call waits with its text"
    h.clock.now += h.backlog.wakes[0][2]
    until_slots_free(h)
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


# --- a wake is trusted only once it is written ------------------------------------------------------------


def wake_written_after(h: Harness, meanwhile: Callable[[int], object], *, ok: bool) -> None:
    """The next wake's SendMessage is on its way while `meanwhile` runs (other executions, given the wake's
    delay), then succeeds or fails."""

    def slow_write(_arn: str, _group: str, delay: int) -> bool:
        h.backlog.while_writing_wake = None
        meanwhile(delay)
        return ok

    h.backlog.while_writing_wake = slow_write


def deliver_everything(h: Harness, originals: list[InboundMessage]) -> None:
    """SQS from here on: every wake written is delivered once due, every original given back comes again."""
    delivered_wakes = 0
    for round_ in range(20):
        h.clock.now += h.policy.window_seconds + 1
        again = [m for m, d in zip(originals, h.run(*originals, seconds=SECONDS).values(), strict=True) if d.is_failure]
        wakes = [wake_message(h, i, f"wake-{round_}-{i}") for i in range(delivered_wakes, len(h.backlog.wakes))]
        delivered_wakes = len(h.backlog.wakes)
        for wake in wakes:
            h.run(wake, seconds=SECONDS)
        originals = again + [requeued_copy(d, f"copy-{round_}-{d.message.message_id}") for d in h.backlog.received]
        h.backlog.received.clear()
        if not originals and delivered_wakes == len(h.backlog.wakes):
            return


def test_a_deferral_that_finds_a_wake_still_being_written_writes_its_own() -> None:
    h = Harness(pending=True)
    busy(h)
    first, second = one_recipient_each("e1", phones(3)), one_recipient_each("e2", phones(3, 3))
    results: dict[str, Disposition] = {}
    wake_written_after(h, lambda _: results.update(h.run(*second, seconds=SECONDS)), ok=False)
    assert set(h.run(*first, seconds=SECONDS).values()) == {Disposition.RETRY}, "its wake failed: back to SQS"
    assert set(results.values()) == {Disposition.DEFERRED}, "acknowledged: only a wake of its own may carry it"
    assert len(h.backlog.wakes) == 1, "the second execution wrote a wake of its own"

    deliver_everything(h, first)
    assert sorted(h.api.delivered().values()) == [1] * 6
    assert h.pool.pooled(h.backlog.wakes[0][1]) == 0


def test_a_partial_call_does_not_join_a_wake_still_being_written() -> None:
    h = Harness(pending=True, limit=2, bulk_queue_arn=QUEUE_ARN)
    busy(h)
    early, late = one_recipient_each("early", phones(50)), one_recipient_each("late", phones(50, 100))
    results: dict[str, Disposition] = {}

    def meanwhile(delay: int) -> None:
        h.clock.now += delay  # a slot frees; the wake being written is due now
        results.update(h.run(*late, seconds=SECONDS))

    wake_written_after(h, meanwhile, ok=False)
    assert set(h.run(*early, seconds=SECONDS).values()) == {Disposition.RETRY}
    assert set(results.values()) == {Disposition.DEFERRED}, "no written wake to join: it waits with one of its own"

    deliver_everything(h, early)
    assert sorted(h.api.delivered().values()) == [1] * 100


def test_a_wake_written_after_another_deferral_asked_is_trusted_from_then_on() -> None:
    h = Harness(pending=True)
    busy(h)
    batches = [one_recipient_each(f"b{n}", phones(3, 3 * n)) for n in range(3)]
    wake_written_after(h, lambda _: h.run(*batches[1], seconds=SECONDS), ok=True)
    h.run(*batches[0], seconds=SECONDS)
    assert len(h.backlog.wakes) == 2, "the one asked while the first was written wrote its own"
    h.run(*batches[2], seconds=SECONDS)
    assert len(h.backlog.wakes) == 2, "once written, a wake serves the deferrals after it"
    deliver_everything(h, [])
    assert sorted(h.api.delivered().values()) == [1] * 9


# --- a pooled request never expires while it waits -------------------------------------------------------


class ExpiringPool(FlakyPendingPool):
    """The pool with DynamoDB's TTL: an item whose last write is `ttl` old is gone before the next read."""

    def __init__(self, ttl: float) -> None:
        super().__init__()
        self.ttl = ttl
        self.clock: Callable[[], float] = lambda: 0.0
        self.expires: dict[tuple[str, str], float] = {}
        self.expired = 0

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None:
        super().put(group, copies, now=now)
        self.expires.update(((group, c.key), now + self.ttl) for c in copies)

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        gone = [key for (g, key), at in self.expires.items() if g == group and at <= self.clock()]
        self.expired += len(gone)
        self.remove(group, gone)
        return super().take(group, limit=limit)

    def remove(self, group: str, keys: Collection[str]) -> None:
        super().remove(group, keys)
        for key in keys:
            self.expires.pop((group, key), None)


@pytest.mark.parametrize("failed_calls", [0, 3])
def test_requests_waiting_longer_than_the_pools_ttl_are_renewed_by_every_wake_that_leaves_them(
    failed_calls: int,
) -> None:
    pool = ExpiringPool(ttl=180.0)
    h = Harness(pending_pool=pool)
    pool.clock = h.clock
    busy(h)
    users = phones(30)
    h.run(*one_recipient_each("t", users), seconds=SECONDS)
    for round_ in range(10):  # ten windows, three times the TTL: other executions took every slot, or IMSHOP failed
        h.clock.now += h.backlog.wakes[-1][2]
        until_slots_free(h)
        h.clock.now += 2  # the slots of the window before are free again
        if round_ < failed_calls:
            h.api.script = [FAILED]
        else:
            busy(h)
        h.run(wake_message(h, message_id=f"wake-{round_}"), seconds=SECONDS)
    h.clock.now += h.backlog.wakes[-1][2]
    h.run(wake_message(h, message_id="wake-last"), seconds=SECONDS)
    assert len(h.backlog.wakes) == 11, "every wake of the ten found them all waiting"
    assert pool.expired == 0, "no request expired while it waited"
    assert Counter(r for c in h.api.calls[failed_calls:] for _, r in c.recipients) == Counter(users)


# --- a group's requests are found by its wakes whatever was deployed since ------------------------------


def redeploy(h: Harness, *, bulk_queue_arn: str | None) -> None:
    """A new execution environment with other settings, on the same queues, tables and pool."""
    h.dispatcher = h.execution(bulk_queue_arn=bulk_queue_arn)


def wait_out_two_busy_wakes(h: Harness) -> None:
    """The wake comes while other executions hold every slot (its requests are pooled again), the next one
    finds budget."""
    h.clock.now += h.backlog.wakes[-1][2] + 2
    busy(h)
    h.run(wake_message(h, message_id="wake-busy"), seconds=SECONDS)
    h.clock.now += h.backlog.wakes[-1][2] + 2
    h.run(wake_message(h, message_id="wake-free"), seconds=SECONDS)


@pytest.mark.parametrize(("before", "after"), [(None, QUEUE_ARN), (QUEUE_ARN, None), (QUEUE_ARN, "arn:other")])
def test_a_change_of_the_lane_settings_loses_no_pooled_request(before: str | None, after: str | None) -> None:
    h = Harness(pending=True, bulk_queue_arn=before)
    busy(h)
    users = phones(40)
    h.run(*one_recipient_each("s", users), seconds=SECONDS)
    redeploy(h, bulk_queue_arn=after)
    wait_out_two_busy_wakes(h)
    assert Counter(r for c in h.api.calls for _, r in c.recipients) == Counter(users)
    assert all(h.pool.pooled(group) == 0 for _, group, _ in h.backlog.wakes)


@pytest.mark.parametrize("legacy", ["transactional:" + "0" * 40, "bulk:x", "any"])
def test_requests_stay_in_the_group_a_wake_took_them_from(legacy: str) -> None:
    """Whatever id an earlier version gave a group, the wakes of that id keep finding its requests."""
    h = Harness(pending=True)
    busy(h)
    users = phones(40)
    h.run(*one_recipient_each("s", users), seconds=SECONDS)
    group = h.backlog.wakes[0][1]
    copies = h.pool.take(group, limit=100)
    h.pool.put(legacy, copies, now=h.clock())
    h.pool.remove(group, [c.key for c in copies])
    h.pool.disarm(group)
    h.backlog.wakes[0] = (QUEUE_ARN, legacy, h.backlog.wakes[0][2])
    wait_out_two_busy_wakes(h)
    assert Counter(r for c in h.api.calls for _, r in c.recipients) == Counter(users)
    assert h.pool.pooled(legacy) == 0
