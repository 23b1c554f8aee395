"""Every call counts (docs/contract.md#shared-waiting): a text that streams in over a window leaves in its lower
bound of calls whenever slots are free, and a backlog leaves at the vendor's rate (no delay past its turn, no
execution taking more wakes than one window's calls)."""

from __future__ import annotations

import math

from fakes import FlakyPendingPool
from harness import BONUS, QUEUE_ARN, Harness, body, msg, phones, requeued_copy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import RecordResult
from imshop_push.domain.pending import GROUP_ATTRIBUTE, WAKE_TOKEN_ATTRIBUTE, wake_body
from imshop_push.domain.sqs_copies import SQS_MAX_DELAY_SECONDS, delay_until

WINDOW = 60.0
MAX_RECIPIENTS = 50
SECONDS = 20.0  # less than a window: an execution cannot wait in process for the next window's slots


def wake_message(group: str, message_id: str) -> InboundMessage:
    return msg(message_id, wake_body(group), **{GROUP_ATTRIBUTE: group})


def stream_batch(index: int, size: int, first_user: int) -> list[InboundMessage]:
    """`size` requests of one text, one recipient each, as one SQS batch hands them over."""
    users = phones(size, first_user)
    return [msg(f"s{index}-{n}", body(users=[u], message=BONUS, key=f"s{index}-{n}")) for n, u in enumerate(users)]


def deliver(
    h: Harness,
    arrivals: list[tuple[float, list[InboundMessage]]],
    *,
    rounds: int = 200,
    seconds: float = SECONDS,
    wakes_written: list[int] | None = None,
) -> None:
    """SQS from here on: each batch arrives at its time; every copy and wake the executions write comes back as a
    batch of its own once its delay has passed, until nothing waits."""
    waiting = sorted(arrivals, key=lambda a: a[0])
    for round_ in range(rounds):
        if not waiting:
            return
        at, batch = waiting.pop(0)
        h.clock.now = max(h.clock(), at)
        copies, wakes = len(h.backlog.received), len(h.backlog.wakes)
        results = h.results(*batch, seconds=seconds)
        assert not any(r.disposition.is_failure for r in results.values()), results
        for n, copy in enumerate(h.backlog.received[copies:]):
            again = requeued_copy(copy, f"{copy.message.message_id.split('/')[0]}/{round_}.{n}")
            waiting.append((h.clock() + min(copy.delay_seconds, SQS_MAX_DELAY_SECONDS), [again]))
        for n, (_, group, delay) in enumerate(h.backlog.wakes[wakes:]):
            waiting.append((h.clock() + delay, [wake_message(group, f"wake/{round_}.{n}")]))
            if wakes_written is not None:
                wakes_written.append(delay)
        waiting.sort(key=lambda a: a[0])
    raise AssertionError("the stream never drained")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.integers(2, 40),
    later=st.lists(st.tuples(st.floats(0.5, WINDOW * 0.9), st.integers(1, 40)), max_size=6),
    busy_slots=st.integers(0, 9),
)
def test_a_text_streaming_in_within_a_window_leaves_in_its_lower_bound_whatever_slots_are_free(
    first: int, later: list[tuple[float, int]], busy_slots: int
) -> None:
    """The first batch carries the text more than once (a stream, not a personal text); later batches, lone
    requests among them, arrive within the window after it. Other executions hold `busy_slots` of the 10."""
    h = Harness(pending=True, window=WINDOW, max_recipients=MAX_RECIPIENTS, bulk_queue_arn=QUEUE_ARN)
    for _ in range(busy_slots):
        h.limiter.try_acquire(h.clock())
    start = h.clock()
    arrivals = [(start, stream_batch(0, first, 0))]
    total = first
    for index, (offset, size) in enumerate(sorted(later), start=1):
        arrivals.append((start + offset, stream_batch(index, size, total)))
        total += size

    deliver(h, arrivals)

    reached = sorted(r for c in h.api.calls for _, r in c.recipients)
    assert reached == sorted(phones(total)), "every recipient exactly once"
    assert len(h.api.calls) == math.ceil(total / MAX_RECIPIENTS), [len(c.recipients) for c in h.api.calls]


def test_a_personal_text_and_a_full_call_go_at_once() -> None:
    h = Harness(pending=True, window=WINDOW, max_recipients=MAX_RECIPIENTS, bulk_queue_arn=QUEUE_ARN)
    status = msg("status", body(users=phones(1, 900), key="order-1"))
    full = stream_batch(0, MAX_RECIPIENTS, 0)

    h.run(status, *full, seconds=SECONDS)

    assert sorted(len(c.recipients) for c in h.api.calls) == [1, MAX_RECIPIENTS]
    assert h.backlog.wakes == []


@given(turn=st.floats(0, 2e9), now=st.floats(0, 2e9))
def test_a_delay_never_passes_its_turn_and_is_at_most_a_second_early(turn: float, now: float) -> None:
    delay = delay_until(turn, now)
    assert delay >= 0
    if turn >= now:  # within a microsecond: the subtraction rounds
        assert now + delay <= turn + 1e-6
        assert turn < now + delay + 1 + 1e-6


def test_an_execution_takes_half_a_windows_calls_worth_of_wakes_and_writes_the_others_again_for_their_turns() -> None:
    h = Harness(pending=True, limit=4, window=WINDOW)
    for _ in range(4):
        h.limiter.try_acquire(h.clock())  # every slot taken: each text waits in the pool with a wake of its own
    texts = 10
    for n in range(texts):
        content = {"title": f"T{n}", "summary": "s"}
        h.run(*[msg(f"t{n}-{k}", body(users=[f"7999{n:03d}{k}"], message=content)) for k in (0, 1)], seconds=SECONDS)
    assert len(h.backlog.wakes) == texts
    h.clock.now += WINDOW * 2  # the slots are free again
    wakes = [msg(f"wake-{n}", wake_body(g), **{GROUP_ATTRIBUTE: g}) for n, (_, g, _) in enumerate(h.backlog.wakes)]

    h.run(*wakes, seconds=SECONDS)

    assert len(h.api.calls) == 2, "the groups of the first two wakes: with another execution, one window's calls"
    again = h.backlog.wakes[texts:]
    assert sorted(delay for _, _, delay in again) == [60] * 4 + [120] * 4, "each to the window of its turn"
    assert {g for _, g, _ in again} == {g for _, g, _ in h.backlog.wakes[2:texts]}


def test_a_wake_on_a_slow_state_table_sends_what_it_could_claim_and_leaves_the_rest_with_a_wake_at_once() -> None:
    """A claim takes 50 ms (an emulator, a throttled table, a busy host) and an invocation has 4 s before its last
    call may start: a wake that claimed all of the 400 it took would pass that moment and defer them all, every
    time, and the group would never drain. A wake that sent whatever it claimed would send a partial call each
    time."""
    h = Harness(pending=True, window=2.0, max_recipients=40)
    h.state.clock, h.state.seconds_per_claim = h.clock, 0.05
    seconds = 20.0  # 4 s to the last call start: the reserve (3 s) and a worst-case call (13 s) come off
    for _ in range(h.policy.limit):
        h.limiter.try_acquire(h.clock())
    for index in range(4):  # every slot taken: each batch of the text waits in the pool
        h.results(*stream_batch(index, 100, 100 * index), seconds=seconds)
    assert len(h.api.calls) == 0
    assert h.pool.pooled(h.backlog.wakes[0][1]) == 400
    h.clock.now += 3 * h.policy.window_seconds
    h.dispatcher = h.execution()  # another environment: the wake message is what brings the group in
    left: list[int] = []

    deliver(h, [(h.clock(), [wake_message(h.backlog.wakes[0][1], "wake-0")])], seconds=seconds, wakes_written=left)

    reached = sorted(r for c in h.api.calls for _, r in c.recipients)
    assert reached == sorted(phones(400)), "every recipient exactly once"
    assert 0 in left, "what a wake had no time to claim is taken again at once"
    assert [len(c.recipients) for c in h.api.calls] == [40] * 10, "the remainder of a cut claim waits for the rest"


def test_an_environment_takes_its_own_due_group_with_its_next_batch_and_the_wake_message_finds_nothing_left() -> None:
    """The wake message is behind whatever the queue held when it was written: the environment that pooled the
    group takes it itself once it is due, and the message, when it comes, costs a read and sends nothing."""
    h = Harness(pending=True, limit=2, window=WINDOW)
    for _ in range(2):
        h.limiter.try_acquire(h.clock())
    h.run(*stream_batch(0, 30, 0), seconds=SECONDS)
    [(_, group, _)] = h.backlog.wakes
    assert not h.api.calls
    h.clock.now += 2 * WINDOW  # due, and the slots are free again

    status = msg("status", body(users=phones(1, 900), message={"title": "Заказ 1", "summary": "в пути"}, key="o-1"))
    assert h.run(status, seconds=SECONDS) == {"status": Disposition.DELIVERED}
    assert sorted(len(c.recipients) for c in h.api.calls) == [1, 30], "its own group went with the next batch"

    assert h.run(wake_message(group, "wake-late"), seconds=SECONDS) == {"wake-late": Disposition.DELIVERED}
    assert len(h.api.calls) == 2, "the late wake message sent nothing again"
    assert h.pool.pooled(group) == 0


def test_a_pool_no_other_execution_shares_holds_no_partial_call() -> None:
    """A local run without tables keeps the pool in its own memory: no one else would fill a held call."""
    h = Harness(pending_pool=FlakyPendingPool(shared=False), window=WINDOW, max_recipients=MAX_RECIPIENTS)

    h.run(*stream_batch(0, 10, 0), seconds=SECONDS)

    assert [len(c.recipients) for c in h.api.calls] == [10]
    assert h.backlog.wakes == []


def test_a_late_wake_message_of_a_group_its_environment_took_leaves_the_text_arriving_since_to_its_window() -> None:
    """The environment that pooled a text took it itself; the text goes on arriving, and its new requests open the
    group again for a window. The first wake message, delivered late, must not send them before that window."""
    h = Harness(pending=True, limit=4, window=WINDOW)
    for _ in range(4):
        h.limiter.try_acquire(h.clock())
    h.run(*stream_batch(0, 30, 0), seconds=SECONDS)
    [(_, group, _)] = h.backlog.wakes
    [first_token] = h.backlog.wake_tokens
    h.clock.now += 2 * WINDOW
    h.run(
        msg("status", body(users=phones(1, 900), message={"title": "Заказ", "summary": "."}, key="o")), seconds=SECONDS
    )
    assert sorted(len(c.recipients) for c in h.api.calls) == [1, 30], "taken by its own environment"
    h.dispatcher = h.execution()
    h.run(*stream_batch(1, 10, 30), seconds=SECONDS)  # the text goes on: it waits a window to fill
    assert len(h.backlog.wakes) == 2

    late = msg("wake-late", wake_body(group), **{GROUP_ATTRIBUTE: group, WAKE_TOKEN_ATTRIBUTE: first_token or ""})
    assert h.run(late, seconds=SECONDS) == {"wake-late": Disposition.DELIVERED}
    assert len(h.api.calls) == 2, "the late wake is obsolete: the 10 wait for their own window"

    h.clock.now += WINDOW
    newer = msg(
        "wake-2", wake_body(group), **{GROUP_ATTRIBUTE: group, WAKE_TOKEN_ATTRIBUTE: h.backlog.wake_tokens[1] or ""}
    )
    h.run(newer, seconds=SECONDS)
    assert [len(c.recipients) for c in h.api.calls][2:] == [10]


def test_a_lone_request_of_a_text_a_concurrent_batch_carries_joins_it_rather_than_going_alone() -> None:
    """Two batches worked on side by side: one holds four requests of a text and has not pooled them yet, the other
    holds the text's fifth. The first announced the text first thing; the lone request waits with it."""
    h = Harness(pending=True, window=WINDOW, max_recipients=MAX_RECIPIENTS)
    four, [lone] = stream_batch(0, 4, 0), stream_batch(1, 1, 4)
    concurrent = h.execution()
    lone_results: dict[str, RecordResult] = {}

    def lone_batch_meanwhile() -> None:  # before the first batch pools its four
        lone_results.update(concurrent.dispatch([lone], deadline=h.deadlines[-1]))

    h.pool.after_announce = lone_batch_meanwhile
    h.run(*four, seconds=SECONDS)

    assert {r.disposition for r in lone_results.values()} == {Disposition.DEFERRED}, "it joins the text"
    assert not h.api.calls
    [(_, group, _)] = h.backlog.wakes
    h.clock.now += WINDOW
    h.dispatcher = h.execution()
    h.run(wake_message(group, "wake"), seconds=SECONDS)
    assert [len(c.recipients) for c in h.api.calls] == [5]


def test_requests_held_to_fill_wait_unclaimed_and_their_wake_claims_them_once() -> None:
    """A claim before the pool would be written, settled and written again by the wake's execution."""
    h = Harness(pending=True, window=WINDOW, max_recipients=MAX_RECIPIENTS)
    claimed: list[str] = []
    h.state.while_claiming = lambda requests: claimed.extend(key for key, _ in requests)

    assert set(h.run(*stream_batch(0, 5, 0), seconds=SECONDS).values()) == {Disposition.DEFERRED}
    assert claimed == []
    [(_, group, _)] = h.backlog.wakes
    h.clock.now += WINDOW
    h.run(wake_message(group, "wake"), seconds=SECONDS)

    assert [len(c.recipients) for c in h.api.calls] == [5]
    assert sorted(claimed) == sorted(f"s0-{n}" for n in range(5))


def test_requests_held_to_fill_are_pooled_even_when_the_state_table_refuses_the_batchs_settlement() -> None:
    h = Harness(pending=True, window=WINDOW, max_recipients=MAX_RECIPIENTS)
    status = msg("status", body(users=phones(1, 900), message={"title": "Заказ", "summary": "."}, key="o"))
    h.state.failing.add("settle")

    results = h.run(status, *stream_batch(0, 3, 0), seconds=SECONDS)

    assert results.pop("status") is Disposition.RETRY
    assert set(results.values()) == {Disposition.DEFERRED}
    assert h.pool.pooled(h.backlog.wakes[0][1]) == 3


def test_two_wakes_of_one_group_in_one_batch_take_it_whichever_token_is_armed() -> None:
    """The batch keeps the first wake of a group and acknowledges the other; the group's record may name the other
    one's token. Kept with its own token, the first would find itself obsolete, and the group would stay armed with
    no wake message left."""
    h = Harness(pending=True, limit=2, window=WINDOW)
    for _ in range(2):
        h.limiter.try_acquire(h.clock())
    h.run(*stream_batch(0, 3, 0), seconds=SECONDS)
    [(_, group, _)] = h.backlog.wakes
    assert h.pool.disarm(group)  # taken meanwhile (and nothing found), then armed again by the next requests
    h.dispatcher = h.execution()
    h.run(*stream_batch(1, 3, 3), seconds=SECONDS)
    first, second = (
        msg(f"wake-{n}", wake_body(group), **{GROUP_ATTRIBUTE: group, WAKE_TOKEN_ATTRIBUTE: token or ""})
        for n, token in enumerate(h.backlog.wake_tokens[:2])
    )
    h.clock.now += 2 * WINDOW

    h.run(first, second, seconds=SECONDS)

    assert [len(c.recipients) for c in h.api.calls] == [6]
    assert h.pool.pooled(group) == 0
