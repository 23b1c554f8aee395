"""Two lanes, one limit (docs/contract.md#lanes), on a fake clock: executions are simulated one event at a
time, and whenever a transactional caller and bulk callers ask in the same instant, bulk asks first (the
order least favourable to the guarantee).

Guarantee: while bulk saturates the limit, a transactional call starts within one window (plus the margin
and the call time a slot is held for) of asking; with no transactional traffic bulk gets every slot it got
before lanes existed; and the limit holds for both lanes together.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st
from test_rate_limit import policy, violations

from fake_clock import T0, FakeClock
from imshop_push.domain.lanes import Lane, Lanes
from imshop_push.domain.rate_limit import Denied, InProcessRateLimiter, Permit, WindowPolicy, new_token, wait_for_permit

RELEASE, BULK, TRANSACTIONAL = 0, 1, 2  # order of events in one instant: bulk before transactional


@dataclass
class Run:
    """What a simulated stretch of time produced: every call's (start, end), and each transactional wait."""

    calls: list[tuple[float, float]] = field(default_factory=list)
    transactional_waits: list[float] = field(default_factory=list)


def simulate(
    p: WindowPolicy,
    *,
    bulk_executions: int,
    transactional_arrivals: list[float],
    call_seconds: float,
    until: float,
    lane_of_bulk: Lane = Lane.BULK,
) -> Run:
    """Bulk executions with an endless backlog, each sending one call after another; transactional callers
    arriving at the given moments, each with one call, named waiters as `wait_for_permit` makes them."""
    limiter = InProcessRateLimiter(p)
    run = Run()
    seq = itertools.count()
    events: list[tuple[float, int, int, object]] = []

    def at(t: float, kind: int, what: object) -> None:
        heapq.heappush(events, (t, kind, next(seq), what))

    for n in range(bulk_executions):
        at(T0, BULK, n)
    for arrival in transactional_arrivals:
        at(arrival, TRANSACTIONAL, (arrival, new_token()))
    while events:
        t, kind, _, what = heapq.heappop(events)
        if t > until:
            break
        if kind == RELEASE:
            assert isinstance(what, Permit)
            limiter.release(what, t)
            continue
        lane, waiter = (lane_of_bulk, None) if kind == BULK else (Lane.TRANSACTIONAL, what[1])  # type: ignore[index]
        outcome = limiter.try_acquire(t, lane, waiter)
        if not isinstance(outcome, Permit):
            at(outcome.retry_at, kind, what)
            continue
        run.calls.append((t, t + call_seconds))
        at(t + call_seconds, RELEASE, outcome)
        if kind == BULK:
            at(t + call_seconds, BULK, what)  # the execution's next call
        else:
            run.transactional_waits.append(t - what[0])  # type: ignore[index]
    return run


def bound(p: WindowPolicy, call_seconds: float) -> float:
    """The next opening is at most one window (plus margin) after the end of the call holding the slot."""
    return p.window_seconds + p.margin_seconds + call_seconds


def test_a_transactional_call_waits_at_most_one_window_behind_a_saturated_bulk_backlog() -> None:
    p = policy(limit=10, window=60, margin=1.2, worst=13)
    arrivals = [T0 + 600 + 37.3 * k for k in range(20)]  # long after bulk has filled every slot
    run = simulate(p, bulk_executions=8, transactional_arrivals=arrivals, call_seconds=0.4, until=T0 + 3000)
    assert len(run.transactional_waits) == len(arrivals)
    assert max(run.transactional_waits) <= bound(p, 0.4)
    assert violations(run.calls, p.limit, p.window_seconds) == []


def test_bulk_alone_gets_every_slot_it_got_before_lanes() -> None:
    p = policy(limit=10, window=60, margin=1.2, worst=13)
    as_bulk = simulate(p, bulk_executions=4, transactional_arrivals=[], call_seconds=0.4, until=T0 + 3600)
    before_lanes = simulate(
        p,
        bulk_executions=4,
        transactional_arrivals=[],
        call_seconds=0.4,
        until=T0 + 3600,
        lane_of_bulk=Lane.TRANSACTIONAL,
    )
    assert len(as_bulk.calls) == len(before_lanes.calls)
    # The limit, used to the full: 10 calls per (window + margin + call time) slot cycle.
    assert len(as_bulk.calls) >= 0.99 * 10 * 3600 / bound(p, 0.4)


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    bulk_executions=st.integers(min_value=1, max_value=6),
    call_seconds=st.sampled_from([0.01, 0.4, 2.0, 9.0]),
    offsets=st.lists(st.floats(min_value=0, max_value=1), max_size=6),
    start=st.floats(min_value=0, max_value=5),
)
def test_the_limit_holds_for_both_lanes_and_transactional_waits_one_window(
    limit: int, bulk_executions: int, call_seconds: float, offsets: list[float], start: float
) -> None:
    """Transactional demand below the limit (at most `limit` arrivals in one window), at any moment of a
    saturated bulk backlog; bulk loses to it only the slots transactional takes."""
    p = policy(limit=limit, window=10.0, margin=0.2, worst=10.0)
    arrivals = [T0 + (start + o) * p.window_seconds for o in offsets[:limit]]
    until = T0 + 30 * p.window_seconds
    kwargs = {"bulk_executions": bulk_executions, "call_seconds": call_seconds, "until": until}
    both = simulate(p, transactional_arrivals=arrivals, **kwargs)  # type: ignore[arg-type]
    bulk_only = simulate(p, transactional_arrivals=[], **kwargs)  # type: ignore[arg-type]
    assert violations(both.calls, p.limit, p.window_seconds) == []
    assert len(both.transactional_waits) == len(arrivals)
    assert all(w <= bound(p, call_seconds) + 1e-5 for w in both.transactional_waits), both.transactional_waits
    # Work-conserving: transactional takes slots from bulk, it does not leave them idle for long.
    assert len(both.calls) >= 0.95 * len(bulk_only.calls) - 1


def test_a_lapsed_transactional_demand_no_longer_holds_bulk_back() -> None:
    """A transactional waiter that died (crash, deadline) holds bulk back only until its demand lapses."""
    p = policy(limit=1, window=60, margin=1.2, worst=13)
    limiter = InProcessRateLimiter(p)
    held = limiter.try_acquire(T0, Lane.BULK)
    assert isinstance(held, Permit)
    limiter.release(held, T0 + 1)
    denied = limiter.try_acquire(T0 + 2, Lane.TRANSACTIONAL, "waiter-that-dies")
    opening = T0 + 1 + 60 + 1.2
    assert isinstance(denied, Denied)
    assert denied.retry_at == opening
    held_back = limiter.try_acquire(opening, Lane.BULK)
    assert isinstance(held_back, Denied)
    assert held_back.retry_at == opening + p.demand_grace_seconds
    assert isinstance(limiter.try_acquire(opening + p.demand_grace_seconds, Lane.BULK), Permit)


def test_wait_for_permit_names_one_waiter_for_its_whole_wait() -> None:
    """The waiter's demand is cleared by its own permit: bulk is not held back after it got its slot."""
    p = policy(limit=1, window=60, margin=1.2, worst=13)
    clock = FakeClock()
    limiter = InProcessRateLimiter(p)
    first = limiter.try_acquire(clock(), Lane.BULK)
    assert isinstance(first, Permit)
    limiter.release(first, clock() + 1)
    permit = wait_for_permit(limiter, latest_start=clock() + 300, clock=clock, sleep=clock.sleep)
    assert isinstance(permit, Permit)
    limiter.release(permit, clock())
    after = clock() + 61.2
    assert isinstance(limiter.try_acquire(after, Lane.BULK), Permit)


def test_a_record_is_bulk_only_when_it_comes_from_the_bulk_queue() -> None:
    bulk = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-bulk"
    lanes = Lanes(bulk)
    assert lanes.of(bulk) is Lane.BULK
    assert lanes.of("arn:aws:sqs:eu-central-1:123456789012:imshop-push-requests") is Lane.TRANSACTIONAL
    assert lanes.of("") is Lane.TRANSACTIONAL
    assert Lanes().of(bulk) is Lane.TRANSACTIONAL  # unset: nothing is demoted
    assert lanes.of_call([bulk, bulk]) is Lane.BULK
    assert lanes.of_call([bulk, "arn:aws:sqs:eu-central-1:123456789012:other"]) is Lane.TRANSACTIONAL
