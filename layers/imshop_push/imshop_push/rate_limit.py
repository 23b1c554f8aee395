"""A sliding-window limit on calls that *arrive* at IMSHOP, shared by every execution.

Each of the `limit` slots holds the moment it may be reused. Taking a slot reserves it pessimistically
until `start + worst-case call time + window + margin`: if the execution dies mid-call, the slot stays
safe. When the call ends, the slot is tightened to `end + window + margin`. A call arrives at IMSHOP
somewhere between its start and its end, so the next call through the same slot starts (and arrives) at
least one window after it, whatever the network latency: no two calls more than `limit` apart within any
window. The margin covers only clock skew between executions and the vendor's own counting.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from imshop_push.model import StoreError


class RateLimiterError(StoreError):
    """The shared window cannot be read or written now (its adapter translates its client's errors into this)."""


@dataclass(frozen=True, slots=True)
class Permit:
    """The right to start one call now."""

    token: str


@dataclass(frozen=True, slots=True)
class Denied:
    """No slot before `retry_at` (epoch seconds)."""

    retry_at: float


class RateLimiter(Protocol):
    def try_acquire(self, now: float) -> Permit | Denied: ...

    def release(self, permit: Permit, finished_at: float) -> None: ...

    def block_until(self, until: float) -> None: ...


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    limit: int
    window_seconds: float
    margin_seconds: float
    worst_case_call_seconds: float

    def reserved_until(self, now: float) -> float:
        return now + self.worst_case_call_seconds + self.window_seconds + self.margin_seconds

    def free_after(self, finished_at: float) -> float:
        return finished_at + self.window_seconds + self.margin_seconds


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
        self._lock = threading.Lock()

    def try_acquire(self, now: float) -> Permit | Denied:
        with self._lock:
            self._slots = live_slots(self._slots, now)
            retry_at = next_opening(self._slots, self._blocked_until, now, self._policy.limit)
            if retry_at is not None:
                return Denied(retry_at)
            token = new_token()
            self._slots[token] = self._policy.reserved_until(now)
            return Permit(token)

    def release(self, permit: Permit, finished_at: float) -> None:
        with self._lock:
            if permit.token in self._slots:
                self._slots[permit.token] = self._policy.free_after(finished_at)

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
) -> Permit | Denied:
    """Wait for a slot while one can still be had before `latest_start`; else say when one opens."""
    while True:
        now = clock()
        if now > latest_start:  # too late to start a call that must end before the invocation does
            return Denied(now)
        outcome = limiter.try_acquire(now)
        if isinstance(outcome, Permit) or outcome.retry_at > latest_start:
            return outcome
        if on_wait is not None:
            on_wait(outcome.retry_at - now)
        sleep(max(0.0, outcome.retry_at - now))
