"""The vendor's rate limit as a sliding window over arrival times. Pure: the caller passes the
time, so the window's verdicts can be tested at any instant without waiting for one."""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Arrival:
    at: float
    violation: bool
    retry_after: str | None


def format_retry_after(seconds: float, window_seconds: float) -> str:
    """Whole seconds, as HTTP defines the header, unless the window itself is shorter than a second
    (tests), where rounding up to 1 s would make clients wait several windows.

    Rounded to the microsecond before rounding up: ``(t + 60) - t`` is 60.000000000001 for some
    clock readings ``t``, which must still read "60".
    """
    seconds = round(seconds, 6)
    if window_seconds >= 1:
        return str(max(1, math.ceil(seconds)))
    return f"{max(0.001, math.ceil(seconds * 1000) / 1000):.3f}"


class RateMeter:
    """At most ``limit`` arrivals in any ``window_seconds``; rejected arrivals occupy a slot too
    (the vendor meters the integration, not the successes)."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = limit
        self.window_seconds = window_seconds
        self._arrivals: collections.deque[float] = collections.deque()

    def arrive(self, now: float) -> Arrival:
        window = self.window_seconds
        while self._arrivals and self._arrivals[0] <= now - window:
            self._arrivals.popleft()
        violation = len(self._arrivals) >= self.limit
        self._arrivals.append(now)
        if not violation:
            return Arrival(now, violation=False, retry_after=None)
        # This rejected call occupies a slot too, so the earliest moment a call can pass is when
        # enough arrivals have left that fewer than the limit remain, not when the oldest leaves.
        frees_at = self._arrivals[len(self._arrivals) - self.limit] + window
        return Arrival(now, violation=True, retry_after=format_retry_after(frees_at - now, window))

    def reset(self) -> None:
        self._arrivals.clear()
