"""The sliding window on calls that *arrive* at IMSHOP (docs/contract.md#never-over-the-limit), on a fake clock.

A call arrives somewhere in [start, end] of its interval (end is at most start + worst case: a crashed
caller's call cannot outlive its timeouts). The limiter is correct when no choice of arrival points puts more
than `limit` arrivals inside one window.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_clock import T0, FakeClock
from imshop_push.domain.rate_limit import (
    Denied,
    InProcessRateLimiter,
    Permit,
    WindowPolicy,
    live_slots,
    next_opening,
    wait_for_permit,
)


def policy(limit: int = 10, window: float = 60.0, margin: float = 1.2, worst: float = 13.0) -> WindowPolicy:
    return WindowPolicy(limit=limit, window_seconds=window, margin_seconds=margin, worst_case_call_seconds=worst)


def violations(calls: list[tuple[float, float]], limit: int, window: float) -> list[int]:
    """Indexes j (calls sorted by start) where call j and `limit` earlier-started calls could all arrive
    within one window: there is a window hitting every interval iff max(start) - min(end) < window."""
    ordered = sorted(calls)
    bad = []
    for j, (start_j, end_j) in enumerate(ordered):
        earlier_ends = sorted((end for _, end in ordered[:j]), reverse=True)
        if len(earlier_ends) < limit:
            continue
        earliest_end = min(end_j, earlier_ends[limit - 1])
        if start_j - earliest_end < window:
            bad.append(j)
    return bad


def test_the_checker_sees_a_violation() -> None:
    # limit 2: three calls whose intervals could all arrive within 60 s.
    assert violations([(0, 1), (10, 11), (55, 56)], limit=2, window=60) == [2]
    # A long first call can arrive late: it shares a window with calls that started much later.
    assert violations([(0, 50), (60, 61), (100, 101)], limit=2, window=60) == [2]
    assert violations([(0, 1), (10, 11), (61, 62)], limit=2, window=60) == []


# --- model check ----------------------------------------------------------------------------------------

# Each step first lets time pass (in windows), then acts. The interesting boundaries (just under / at / over
# a window) must come up often, not by luck.
FRACTIONS = st.one_of(
    st.sampled_from([0.0, 0.0, 0.0, 0.3, 0.98, 0.99, 1.0, 1.01, 1.02, 1.03]),
    st.sampled_from([0.0, 0.0, 0.0, 0.3, 0.98, 0.99, 1.0, 1.01, 1.02, 1.03]),
    st.floats(min_value=0, max_value=2),
)
Step = tuple[float, str, float]
steps_st = st.lists(
    st.tuples(
        FRACTIONS,
        st.sampled_from(["acquire", "acquire", "acquire", "release", "release", "crash", "block"]),
        st.floats(min_value=0, max_value=1),  # which holder to release, or how long to block (in windows)
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=400)
@given(
    steps=steps_st,
    limit=st.integers(min_value=1, max_value=4),
    window=st.sampled_from([1.0, 10.0, 60.0]),
    worst_in_windows=st.sampled_from([0.0, 0.05, 0.5, 1.3]),
)
def test_no_window_can_hold_more_than_limit_arrivals(
    steps: list[Step], limit: int, window: float, worst_in_windows: float
) -> None:
    worst = worst_in_windows * window
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=limit, window=window, margin=window * 0.02, worst=worst))
    holding: list[tuple[Permit, float]] = []
    calls: list[tuple[float, float]] = []
    for elapsed, action, arg in steps:
        clock.now += elapsed * window
        # A holder past its worst case has, in reality, finished (its timeouts ended the call): whatever the
        # caller does later, the call lies in [start, start + worst]. A late release is a crashed holder.
        for permit, start in list(holding):
            if clock() - start > worst:
                holding.remove((permit, start))
                calls.append((start, start + worst))
        if action == "acquire":
            outcome = limiter.try_acquire(clock())
            if isinstance(outcome, Permit):
                holding.append((outcome, clock()))
            else:
                assert outcome.retry_at > clock()
        elif action == "release" and holding:
            permit, start = holding.pop(int(arg * len(holding)) % len(holding))
            limiter.release(permit, clock())
            calls.append((start, clock()))
        elif action == "crash" and holding:
            _, start = holding.pop(int(arg * len(holding)) % len(holding))
            calls.append((start, start + worst))
        elif action == "block":
            limiter.block_until(clock() + arg * window)
    calls += [(start, start + worst) for _, start in holding]

    assert violations(calls, limit, window) == []


caller_st = st.tuples(
    st.floats(min_value=0, max_value=3),  # when it wants to call, in windows from the start
    st.floats(min_value=0, max_value=1),  # how long its call takes, as a fraction of the worst case
    st.booleans(),  # whether its execution dies mid-call (never releases)
)


@settings(max_examples=300)
@given(
    callers=st.lists(caller_st, min_size=1, max_size=30),
    limit=st.integers(min_value=1, max_value=4),
    window=st.sampled_from([1.0, 60.0]),
    worst_in_windows=st.sampled_from([0.0, 0.2, 1.5]),
    blocks=st.lists(st.tuples(st.floats(0, 3), st.floats(0, 1)), max_size=3),  # (when, how long) 429s
)
def test_greedy_concurrent_callers_never_exceed_the_limit(
    callers: list[tuple[float, float, bool]],
    limit: int,
    window: float,
    worst_in_windows: float,
    blocks: list[tuple[float, float]],
) -> None:
    """Discrete-event simulation: every caller retries exactly at `retry_at`, the earliest moment the
    limiter allows, so any slot freed too early is used at once and shows up as a violation."""
    worst = worst_in_windows * window
    limiter = InProcessRateLimiter(policy(limit=limit, window=window, margin=window * 0.02, worst=worst))
    events: list[tuple[float, int, int]] = []  # (time, 0 = release / 1 = block / 2 = try, caller)
    for i, (wants_at, _, _) in enumerate(callers):
        heapq.heappush(events, (T0 + wants_at * window, 2, i))
    for i, (at, _) in enumerate(blocks):
        heapq.heappush(events, (T0 + at * window, 1, i))
    permits: dict[int, Permit] = {}
    starts: dict[int, float] = {}
    while events:
        now, kind, i = heapq.heappop(events)
        if kind == 0:
            limiter.release(permits[i], now)
        elif kind == 1:
            limiter.block_until(now + blocks[i][1] * window)
        else:
            outcome = limiter.try_acquire(now)
            if isinstance(outcome, Denied):
                assert outcome.retry_at > now
                heapq.heappush(events, (outcome.retry_at, 2, i))
                continue
            permits[i], starts[i] = outcome, now
            if not callers[i][2]:
                heapq.heappush(events, (now + callers[i][1] * worst, 0, i))
    calls = [
        (starts[i], starts[i] + (worst if crashed else fraction * worst))
        for i, (_, fraction, crashed) in enumerate(callers)
    ]

    assert len(starts) == len(callers)  # everybody got through eventually
    assert violations(calls, limit, window) == []


# --- examples -------------------------------------------------------------------------------------------


def test_limit_permits_then_denied_until_the_first_slot_frees() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=3, window=60, margin=1.2, worst=13))
    permits = [limiter.try_acquire(clock()) for _ in range(3)]
    assert all(isinstance(p, Permit) for p in permits)
    clock.now += 2
    for p in permits:
        limiter.release(p, clock())  # type: ignore[arg-type]

    denied = limiter.try_acquire(clock())

    assert denied == Denied(retry_at=T0 + 2 + 60 + 1.2)
    clock.now = denied.retry_at - 0.001
    assert isinstance(limiter.try_acquire(clock()), Denied)
    clock.now = denied.retry_at
    assert isinstance(limiter.try_acquire(clock()), Permit)


def test_release_tightens_the_reservation_to_end_plus_window() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=1, window=60, margin=1.0, worst=13))
    permit = limiter.try_acquire(clock())
    assert isinstance(permit, Permit)

    assert limiter.try_acquire(clock()) == Denied(T0 + 13 + 60 + 1)  # pessimistic while the call runs
    clock.now += 0.5
    limiter.release(permit, clock())
    assert limiter.try_acquire(clock()) == Denied(T0 + 0.5 + 60 + 1)


def test_a_crashed_holder_keeps_its_slot_until_the_pessimistic_reservation_ends() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=1, window=60, margin=1.2, worst=13))
    assert isinstance(limiter.try_acquire(clock()), Permit)  # ...and never released

    clock.now = T0 + 13 + 60 + 1.2 - 0.01
    assert limiter.try_acquire(clock()) == Denied(T0 + 13 + 60 + 1.2)
    clock.now = T0 + 13 + 60 + 1.2
    assert isinstance(limiter.try_acquire(clock()), Permit)


def test_releasing_an_unknown_or_expired_permit_is_harmless() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=1, window=10, margin=0.2, worst=1))
    limiter.release(Permit("never-issued"), clock())

    assert isinstance(limiter.try_acquire(clock()), Permit)


def test_block_until_blocks_every_caller_until_then() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=10))
    limiter.block_until(T0 + 7)

    assert limiter.try_acquire(clock()) == Denied(T0 + 7)
    clock.now = T0 + 6.999
    assert limiter.try_acquire(clock()) == Denied(T0 + 7)
    clock.now = T0 + 7
    assert isinstance(limiter.try_acquire(clock()), Permit)


def test_block_until_never_shortens_an_earlier_block() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=10))
    limiter.block_until(T0 + 30)
    limiter.block_until(T0 + 5)

    assert limiter.try_acquire(clock()) == Denied(T0 + 30)


def test_wait_for_permit_sleeps_until_the_slot_opens_when_that_is_before_latest_start() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=1, window=60, margin=1.2, worst=13))
    first = limiter.try_acquire(clock())
    assert isinstance(first, Permit)
    limiter.release(first, clock())
    waits: list[float] = []

    permit = wait_for_permit(limiter, latest_start=T0 + 100, clock=clock, sleep=clock.sleep, on_wait=waits.append)

    assert isinstance(permit, Permit)
    assert clock.now == pytest.approx(T0 + 61.2)
    assert sum(clock.sleeps) == pytest.approx(61.2)
    assert waits == [pytest.approx(61.2)]


def test_wait_for_permit_returns_denied_without_sleeping_when_the_slot_opens_after_latest_start() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=1, window=60, margin=1.2, worst=13))
    first = limiter.try_acquire(clock())
    assert isinstance(first, Permit)
    limiter.release(first, clock())

    outcome = wait_for_permit(limiter, latest_start=T0 + 61, clock=clock, sleep=clock.sleep)

    assert outcome == Denied(T0 + 61.2)
    assert clock.sleeps == []
    assert clock.now == T0


def test_wait_for_permit_grants_a_free_slot_at_once() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=2))

    assert isinstance(wait_for_permit(limiter, latest_start=T0, clock=clock, sleep=clock.sleep), Permit)
    assert clock.sleeps == []


def test_wait_for_permit_never_grants_a_start_after_latest_start() -> None:
    # The caller is already past the last moment a call may start (an earlier call ran long): a call
    # started now could outlive the invocation, so no permit, even though a slot is free.
    clock = FakeClock(now=T0 + 50)
    limiter = InProcessRateLimiter(policy(limit=10))

    outcome = wait_for_permit(limiter, latest_start=T0 + 40, clock=clock, sleep=clock.sleep)

    assert isinstance(outcome, Denied)
    assert clock.sleeps == []
    # and no slot was consumed by asking
    assert all(isinstance(limiter.try_acquire(clock()), Permit) for _ in range(10))


def test_wait_for_permit_waits_out_a_block() -> None:
    clock = FakeClock()
    limiter = InProcessRateLimiter(policy(limit=10))
    limiter.block_until(T0 + 7)

    permit = wait_for_permit(limiter, latest_start=T0 + 30, clock=clock, sleep=clock.sleep)

    assert isinstance(permit, Permit)
    assert clock.now == T0 + 7


def test_live_slots_and_next_opening() -> None:
    slots = {"a": 10.0, "b": 20.0, "c": 5.0}

    assert live_slots(slots, now=10.0) == {"b": 20.0}
    assert next_opening({"b": 20.0}, blocked_until=0.0, now=10.0, limit=2) is None
    assert next_opening({"a": 15.0, "b": 20.0}, blocked_until=0.0, now=10.0, limit=2) == 15.0
    assert next_opening({}, blocked_until=12.0, now=10.0, limit=2) == 12.0


def test_window_policy_reservations() -> None:
    p = policy(limit=10, window=60, margin=1.2, worst=13)

    assert p.reserved_until(100.0) == pytest.approx(174.2)
    assert p.free_after(105.0) == pytest.approx(166.2)
    assert p.free_after(100.0 + 13) <= p.reserved_until(100.0)  # tightening never extends


# --- a permit is used by its start_by, or not at all ---------------------------------------------------------


def test_a_permit_given_back_unused_frees_its_slot_at_once() -> None:
    limiter = InProcessRateLimiter(policy(limit=1, window=60, margin=1.2, worst=13))
    permit = limiter.try_acquire(T0)
    assert isinstance(permit, Permit)
    assert isinstance(limiter.try_acquire(T0 + 5), Denied)

    limiter.give_back(permit)

    assert isinstance(limiter.try_acquire(T0 + 5), Permit), "no call was made on it: nothing to keep a window from"
    limiter.give_back(permit)  # twice, or after the slot was reused: harmless


def test_a_permit_says_until_when_its_call_may_start() -> None:
    p = replace(policy(limit=1, window=60, margin=1.2, worst=14), start_allowance_seconds=1.0)
    limiter = InProcessRateLimiter(p)

    permit = limiter.try_acquire(T0)

    assert isinstance(permit, Permit)
    assert permit.start_by == T0 + 1.0
    # a call started then and taking the rest of the worst case ends a window and the margin before the slot frees
    assert permit.start_by + (p.worst_case_call_seconds - 1.0) + p.window_seconds + p.margin_seconds == pytest.approx(
        p.reserved_until(T0)
    )
    assert Permit("not from a limiter").start_by == -math.inf, "a permit no limiter issued covers no call"


user_st = st.tuples(
    st.floats(min_value=0, max_value=3),  # when it wants to call, in windows from the start
    st.floats(min_value=0, max_value=3),  # how long after the limiter decided it could start: in allowances
    st.floats(min_value=0, max_value=1),  # how long its call takes, as a fraction of the call's worst case
    st.booleans(),  # whether its execution dies mid-call (never releases)
)


@settings(max_examples=300)
@given(
    users=st.lists(user_st, min_size=1, max_size=20),
    limit=st.integers(min_value=1, max_value=3),
    window=st.sampled_from([1.0, 60.0]),
    allowance=st.sampled_from([0.5, 1.0, 5.0]),
    call_worst_in_windows=st.sampled_from([0.0, 0.2, 1.5]),
)
def test_permits_used_only_by_their_start_by_never_exceed_the_limit(
    users: list[tuple[float, float, float, bool]],
    limit: int,
    window: float,
    allowance: float,
    call_worst_in_windows: float,
) -> None:
    """Each permit reaches its caller some time after the limiter decided (a slow acquire, a paused host). A
    caller starts its call only by `start_by`, else gives the permit back and asks again; any call then arrives
    within its start and its worst case, dead executions included: no window holds more than `limit`."""
    call_worst = call_worst_in_windows * window
    p = replace(
        policy(limit=limit, window=window, margin=window * 0.02, worst=call_worst + allowance),
        start_allowance_seconds=allowance,
    )
    limiter = InProcessRateLimiter(p)
    events: list[tuple[float, int, int]] = []  # (time, 0 = release / 1 = use the permit / 2 = try, user)
    for i, (wants_at, *_) in enumerate(users):
        heapq.heappush(events, (T0 + wants_at * window, 2, i))
    permits: dict[int, Permit] = {}
    calls: list[tuple[float, float]] = []
    while events:
        now, kind, i = heapq.heappop(events)
        _, late, fraction, dies = users[i]
        if kind == 0:
            limiter.release(permits[i], now)
        elif kind == 1:
            if now > permits[i].start_by:  # not covered any more: given back, asked again
                limiter.release(permits[i], now)
                users[i] = (0.0, late / 2, fraction, dies)  # the next acquire is quicker: everybody gets through
                heapq.heappush(events, (now, 2, i))
                continue
            calls.append((now, now + (call_worst if dies else fraction * call_worst)))
            if not dies:
                heapq.heappush(events, (now + fraction * call_worst, 0, i))
        else:
            outcome = limiter.try_acquire(now)
            if isinstance(outcome, Denied):
                heapq.heappush(events, (outcome.retry_at, 2, i))
                continue
            permits[i] = outcome
            heapq.heappush(events, (now + late * allowance, 1, i))

    assert violations(calls, limit, window) == []
