"""Figure 5: calls per window achieved under a sustained backlog vs the configured limit."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer

from bench.common import Console, Figure, _median
from bench.events import _content, _phone

BACKLOG_REQUESTS = 200


def steady_rate(arrivals: Sequence[float], limit: int, window: float) -> tuple[float, int, int]:
    """Calls per window in the steady part: from the first call after the first window's `limit` to the start
    of the last full group of `limit`, so the ramp-up and the tail are left out. Returns (rate, first, last)."""
    first = limit
    last = ((len(arrivals) - 1) // limit) * limit
    if last - first < limit:
        return math.nan, first, last
    return (last - first) / ((arrivals[last] - arrivals[first]) / window), first, last


def per_window(arrivals: Sequence[float], window: float) -> list[int]:
    counts = Counter(int((t - arrivals[0]) // window) for t in arrivals)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


def calls_per_window(console: Console, moto: MotoServer) -> Figure:
    from imshop_push_local.demo import DEMO_SETTINGS
    from imshop_push_local.stack import LocalStack

    rng = random.Random(5)
    requests = [{"userIds": [_phone(rng)], **_content(10_000 + n)} for n in range(BACKLOG_REQUESTS)]
    with LocalStack(DEMO_SETTINGS, moto=moto) as stack:
        # The demo's stack, as template.yaml and the demo's time scale define it.
        limit, window = stack.sandbox.rate_limit_requests, stack.sandbox.rate_limit_window_seconds
        console.progress(
            f"calls per window: {BACKLOG_REQUESTS} distinct requests through the event source, {limit} calls per "
            f"{window:g} s window, function timeout {stack.function.timeout_seconds:g} s,"
            f" concurrency {stack.mapping.concurrency}"
        )
        stack.start_consumers()
        stack.publish(requests)
        drained = stack.source.drain(timeout=BACKLOG_REQUESTS / limit * window * 2 + 30)
        calls = stack.sandbox.calls
        violations = stack.sandbox.violations
        dead = len(stack.dead_letters())
        delivered = stack.sandbox.delivered()
    arrivals = sorted(c.arrived_at for c in calls)
    rate, first, last = steady_rate(arrivals, limit, window)
    bins = per_window(arrivals, window) if arrivals else []
    problems = []
    if not drained:
        problems.append("the backlog did not drain in time")
    if len(delivered) != BACKLOG_REQUESTS or any(n > 1 for n in delivered.values()):
        problems.append(f"{len(delivered)} of {BACKLOG_REQUESTS} delivered (or some twice)")
    if dead:
        problems.append(f"{dead} dead-lettered")
    ratio = rate / limit
    gap = [round(arrivals[i + limit] - arrivals[i], 3) for i in range(first, last, limit)]
    return Figure(
        name="calls per window, sustained backlog",
        value=rate,
        value_text=f"{rate:.2f} calls/window, {violations} over",
        baseline_text=f"{limit} limit ({window:g} s)",
        ratio=ratio,
        target="≥ 0.95, 0 violations",
        passed=ratio >= 0.95 and violations == 0 and not problems,
        why=(
            f"the period between a call and the one {limit} calls later is {_median(gap) if gap else math.nan:.3f} s"
            f" for a {window:g} s window: window + margin ({window * 0.02:.3f} s) + call time"
            + (f"; {'; '.join(problems)}" if problems else "")
        ),
        details=[
            f"{len(calls)} calls in {arrivals[-1] - arrivals[0]:.1f} s; steady part = calls {first}..{last};"
            f" per {window:g} s bin from the first call: {' '.join(map(str, bins))}",
            f"time from a call to the one {limit} later (s): median {_median(gap) if gap else math.nan:.3f},"
            f" min {min(gap, default=math.nan):.3f}, max {max(gap, default=math.nan):.3f}"
            + (f"; PROBLEM: {'; '.join(problems)}" if problems else ""),
        ],
    )
