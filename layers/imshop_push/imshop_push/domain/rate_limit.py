"""A sliding-window limit on calls that *arrive* at IMSHOP, shared by every execution.

Each of the `limit` slots holds the moment it may be reused. Taking a slot reserves it pessimistically
until `start + worst-case call time + window + margin`: if the execution dies mid-call, the slot stays
safe. When the call ends, the slot is tightened to `end + window + margin`. A call arrives at IMSHOP
somewhere between its start and its end, so the next call through the same slot starts (and arrives) at
least one window after it, whatever the network latency: no two calls more than `limit` apart within any
window. The margin covers only clock skew between executions and the vendor's own counting.

Priority of the transactional lane, work-conserving: a transactional caller that is denied a slot writes
"transactional demand until <its retry time + a grace>" into the same window state; while any such demand
is live, bulk callers are denied, so the next slot that frees goes to the transactional caller, who clears
its demand when it takes the slot. With no transactional demand, bulk takes every slot exactly as before.
A transactional caller therefore waits for at most the next opening (one window, when bulk holds every
slot), whatever the bulk backlog or its concurrency; the limit itself is the same one count of slots for
both lanes. A waiter that dies leaves demand that lapses by itself after the grace.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from imshop_push.domain.lanes import Lane
from imshop_push.domain.model import StoreError

PRE_CALL_ALLOWANCE_SECONDS = 1.0
"""What a slot's reservation covers between the instant it starts and the call: the rest of the acquire (its
write's round trip, throttled retries included), the last supersede and cancel checks, the call record. Part of
the worst case the limiter reserves for. A call not started by then is not sent on that permit
(`Permit.start_by`, checked in `stages/call.py`): it could arrive after the reservation ended."""


class RateLimiterError(StoreError):
    """The shared window cannot be read or written now (its adapter translates its client's errors into this)."""


@dataclass(frozen=True, slots=True)
class Permit:
    """The right to start one call, no later than `start_by` (epoch seconds).

    The slot's reservation starts at the instant the limiter decided, which may be well before the caller holds
    the permit (a slow acquire: conflicts, throttling, a paused host). It covers a worst-case call only if the
    call starts by `start_by`; a call started later could arrive after the reservation ended, so the caller
    checks its own clock right before the call and takes a slot again instead. The default covers no call."""

    token: str
    start_by: float = -math.inf


@dataclass(frozen=True, slots=True)
class Denied:
    """No slot before `retry_at` (epoch seconds)."""

    retry_at: float


class RateLimiter(Protocol):
    def try_acquire(self, now: float, lane: Lane = Lane.TRANSACTIONAL, waiter: str | None = None) -> Permit | Denied:
        """`waiter` names a transactional caller across its retries: only a named caller leaves demand behind."""
        ...

    def release(self, permit: Permit, finished_at: float) -> None: ...

    def give_back(self, permit: Permit) -> None:
        """No call was made on this permit (none will be): its slot is free at once."""
        ...

    def block_until(self, until: float) -> None: ...


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    limit: int
    window_seconds: float
    margin_seconds: float
    worst_case_call_seconds: float
    """What a slot is reserved for from the instant it is taken: `start_allowance_seconds`, then the call."""
    start_allowance_seconds: float = 0.0
    """How long after the slot was taken its call may still start (`Permit.start_by`). 0 only on a clock that
    stands still between a permit and its call (the tests' fake one): on a real one no permit would be used."""

    def reserved_until(self, now: float) -> float:
        return now + self.worst_case_call_seconds + self.window_seconds + self.margin_seconds

    def start_by(self, now: float) -> float:
        """The last start of a call a slot taken at `now` covers: the call's worst case ends by the reservation's
        end less one window (and the margin)."""
        return now + min(self.start_allowance_seconds, self.worst_case_call_seconds)

    def free_after(self, finished_at: float) -> float:
        return finished_at + self.window_seconds + self.margin_seconds

    @property
    def cycle_seconds(self) -> float:
        """How long a slot stays taken after its call ended."""
        return self.window_seconds + self.margin_seconds

    @property
    def demand_grace_seconds(self) -> float:
        """How long after its retry time a transactional waiter's demand still holds bulk back: enough for a
        woken execution to ask again (a DynamoDB round trip, a busy host), short against the slot spacing."""
        return max(self.margin_seconds, min(self.window_seconds / max(self.limit, 1), 1.0))


@dataclass(frozen=True, slots=True)
class WindowState:
    """What the one shared item holds: slot reuse times, a vendor-imposed block, live transactional demand."""

    slots: Mapping[str, float]
    blocked_until: float = 0.0
    demand: Mapping[str, float] = field(default_factory=dict)


def decide(
    state: WindowState, now: float, policy: WindowPolicy, lane: Lane, waiter: str | None
) -> tuple[Permit | Denied, WindowState | None]:
    """The answer to one acquire, and the state to write (None: nothing changes, so nothing is written)."""
    live = live_slots(state.slots, now)
    demand = live_slots(state.demand, now)
    opening = next_opening(live, state.blocked_until, now, policy.limit)
    poll = policy.demand_grace_seconds
    if lane is Lane.BULK and demand and state.blocked_until <= now:
        # As many slots as transactional callers wait for are theirs; bulk takes any slot beyond those, or asks
        # again at the first opening past them (or when a waiter's demand lapses, whichever comes first).
        openings = sorted(live.values())
        theirs = len(demand) - (policy.limit - len(live))
        if theirs >= 0:
            past_theirs = openings[theirs] if theirs < len(openings) else math.inf
            return Denied(min(past_theirs, *demand.values())), None
    if opening is not None:
        until = opening + policy.demand_grace_seconds
        retry_at = opening
        if waiter is not None and state.blocked_until <= now < opening - policy.cycle_seconds:
            # The earliest slot is a call still in flight, reserved for its worst case; it frees one window
            # after the call ends, which is usually much sooner: a transactional caller looks again shortly.
            retry_at = now + poll
        if lane is Lane.BULK or waiter is None or demand.get(waiter) == until:
            return Denied(retry_at), None
        return Denied(retry_at), WindowState(live, state.blocked_until, {**demand, waiter: until})
    token = new_token()
    live[token] = policy.reserved_until(now)
    if waiter is not None:
        demand.pop(waiter, None)
    return Permit(token, policy.start_by(now)), WindowState(live, state.blocked_until, demand)


def live_slots(slots: Mapping[str, float], now: float) -> dict[str, float]:
    """Slots still held at `now` (a slot whose reuse time has come is free again)."""
    return {token: free_at for token, free_at in slots.items() if free_at > now}


def next_opening(live: Mapping[str, float], blocked_until: float, now: float, limit: int) -> float | None:
    """None when a call may start at `now`; otherwise the earliest moment worth asking again."""
    if blocked_until > now:
        return blocked_until
    if len(live) < limit:
        return None
    return min(live.values())


def new_token() -> str:
    return uuid.uuid4().hex


class InProcessRateLimiter:
    """The same window held in memory: correct for one process only (local runs, `STATE_TABLE_NAME` unset)."""

    def __init__(self, policy: WindowPolicy) -> None:
        self._policy = policy
        self._slots: dict[str, float] = {}
        self._blocked_until = 0.0
        self._demand: dict[str, float] = {}
        self._lock = threading.Lock()

    def try_acquire(self, now: float, lane: Lane = Lane.TRANSACTIONAL, waiter: str | None = None) -> Permit | Denied:
        with self._lock:
            state = WindowState(self._slots, self._blocked_until, self._demand)
            outcome, changed = decide(state, now, self._policy, lane, waiter)
            if changed is not None:
                self._slots, self._demand = dict(changed.slots), dict(changed.demand)
            return outcome

    def release(self, permit: Permit, finished_at: float) -> None:
        with self._lock:
            if permit.token in self._slots:
                self._slots[permit.token] = self._policy.free_after(finished_at)

    def give_back(self, permit: Permit) -> None:
        with self._lock:
            self._slots.pop(permit.token, None)

    def block_until(self, until: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, until)


def wait_for_permit(
    limiter: RateLimiter,
    *,
    latest_start: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    on_wait: Callable[[float], None] | None = None,
    lane: Lane = Lane.TRANSACTIONAL,
) -> Permit | Denied:
    """Wait for a slot while one can still be had before `latest_start`; else say when one opens.

    A transactional wait is one named waiter for the limiter, so its demand holds bulk back while it sleeps."""
    waiter = new_token() if lane is Lane.TRANSACTIONAL else None
    while True:
        now = clock()
        if now > latest_start:  # too late to start a call that must end before the invocation does
            return Denied(now)
        outcome = limiter.try_acquire(now, lane, waiter)
        if isinstance(outcome, Permit) or outcome.retry_at > latest_start:
            return outcome
        if on_wait is not None:
            on_wait(outcome.retry_at - now)
        sleep(max(0.0, outcome.retry_at - now))
