"""Figure 11: how fast `make demo`'s backlog shape drains, and in how many calls, vs the vendor's limit.

40 texts x 10 requests x 30 recipients on the transactional queue, queued before the pollers start: the lower
bound is one call per text (40), and at 10 calls a window the limit lets them go in 4 windows. The target: the
lower bound's calls, first to last call within those windows + 2 (a wake's whole-second delay and a poll), and
the last call within that + 1.5 windows of the pollers' start (no long hold before the first call). Run at the
demo's BatchSize (500) and the template's transactional BatchSize (100), on a quiet machine, and once more each
with a core kept busy (printed, not judged: a loaded machine stretches every hop).

The demo's settings (function timeout 1.5 windows, as production's 90 s to 60 s, batching window 0.2 s) at a 6 s
window rather than the demo's 2 s: moto's round trips are not time-scaled. A request here costs two claims, a
settlement and a share of the pool's writes, ~25 ms each on this two-core machine, so at 2 s the function's own
AWS round trips for the 400 requests (about 10 s on their own) would be measured rather than the pacing of calls,
and the 3 s function timeout would hold ~60 claims. What `make demo` prints at 2 s is in docs/performance.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer

from bench.common import Console, Figure
from bench.stack_runs import consumers, drain

TEXTS = 40
REQUESTS_PER_TEXT = 10
RECIPIENTS_PER_REQUEST = 30
DEMO_BATCH_SIZE = 500
TEMPLATE_BATCH_SIZE = 100
DRAIN_TIMEOUT_SECONDS = 300.0
WINDOW_SECONDS = 6.0
SPARE_WINDOWS = 2.0  # a whole-second delay rounded up, a poll, a batching window
FIRST_CALL_WINDOWS = 1.5  # the hold before the first call: about a window to fill, and a poll


def backlog_requests() -> list[dict[str, Any]]:
    """The demo's backlog phase, in its order: every text is carried by several requests (mergeable)."""
    return [
        {
            "userIds": [f"7900{n:03d}{r:02d}{k:02d}" for k in range(RECIPIENTS_PER_REQUEST)],
            "message": {"title": f"Бонусы сгорают · сегмент {n}", "summary": "Потратьте бонусы до конца недели"},
            "deeplink": f"shop://bonus/{n}",
        }
        for n in range(TEXTS)
        for r in range(REQUESTS_PER_TEXT)
    ]


@contextlib.contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """A core kept busy by a spinning process, as CI's neighbours do."""
    if not on:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def _run(moto: MotoServer, batch_size: int, *, loaded: bool) -> dict[str, Any]:
    from imshop_push_local.demo import DEMO_SETTINGS
    from imshop_push_local.stack import LocalStack

    settings = dataclasses.replace(
        DEMO_SETTINGS,
        batch_size=batch_size,
        history=False,
        rate_limit_window_seconds=WINDOW_SECONDS,
        function_timeout_seconds=1.5 * WINDOW_SECONDS,
        visibility_timeout_seconds=int(9 * WINDOW_SECONDS),
    )
    requests = backlog_requests()
    with LocalStack(settings, moto=moto) as stack:
        stack.publish(requests)
        with busy_core(loaded), consumers(stack) as sources:
            started = time.monotonic()
            drained = drain(sources, DRAIN_TIMEOUT_SECONDS)
        calls = sorted(stack.sandbox.calls, key=lambda c: c.arrived_at)
        delivered = Counter(u for c in calls if c.delivered for u in c.body.get("userIds", []))
        wanted = Counter(u for r in requests for u in r["userIds"])
        return {
            "calls": len(calls),
            "first": calls[0].arrived_at - started if calls else math.nan,
            "last": calls[-1].arrived_at - started if calls else math.nan,
            "per_window": _per_window([c.arrived_at for c in calls], stack.sandbox.rate_limit_window_seconds),
            "exactly_once": delivered == wanted,
            "violations": stack.sandbox.violations,
            "dead": len(stack.dead_letters()),
            "drained": drained,
            "window": stack.sandbox.rate_limit_window_seconds,
            "limit": stack.sandbox.rate_limit_requests,
        }


def _per_window(arrivals: list[float], window: float) -> list[int]:
    if not arrivals:
        return []
    counts = Counter(int((a - arrivals[0]) // window) for a in arrivals)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


def _figure(batch_size: int, run: dict[str, Any], *, loaded: bool) -> Figure:
    window, bound = run["window"], TEXTS
    bound_windows = math.ceil(bound / run["limit"])
    drain_target = (bound_windows + SPARE_WINDOWS) * window
    last_target = drain_target + FIRST_CALL_WINDOWS * window
    drain_seconds = run["last"] - run["first"]
    problems = [
        *([] if run["calls"] == bound else [f"{run['calls']} calls where {bound} would do"]),
        *([] if drain_seconds <= drain_target else [f"drained in {drain_seconds:.1f} s"]),
        *([] if run["last"] <= last_target else [f"last call {run['last']:.1f} s after the pollers started"]),
        *([] if run["exactly_once"] else ["a recipient missed or reached twice"]),
        *([f"{run['violations']} calls over the limit"] if run["violations"] else []),
        *([f"{run['dead']} dead-lettered"] if run["dead"] else []),
        *([] if run["drained"] else ["the queues did not drain in time"]),
    ]
    load = "a core kept busy" if loaded else "quiet"
    return Figure(
        name=f"demo backlog drain, BatchSize {batch_size}, {load}",
        value=drain_seconds,
        value_text=f"{run['calls']} calls in {drain_seconds:.1f} s (first to last), last at {run['last']:.1f} s",
        baseline_text=f"{bound} calls in {bound_windows * window:g} s ({bound} at {run['limit']}/{window:g} s)",
        ratio=drain_seconds / (bound_windows * window),
        target=f"{bound} calls, ≤ {drain_target:g} s, last ≤ {last_target:g} s" + (" (printed only)" if loaded else ""),
        passed=loaded or not problems,
        why="; ".join(problems),
        details=[
            f"{TEXTS} texts x {REQUESTS_PER_TEXT} requests x {RECIPIENTS_PER_REQUEST} recipients queued before the"
            f" pollers started; first call at {run['first']:.1f} s",
            f"calls per {window:g} s window: {' '.join(map(str, run['per_window']))}",
            *([f"problems: {'; '.join(problems)}"] if problems and loaded else []),
        ],
    )


def backlog_drain(console: Console, moto: MotoServer) -> list[Figure]:
    figures = []
    for loaded in (False, True):
        for batch_size in (DEMO_BATCH_SIZE, TEMPLATE_BATCH_SIZE):
            console.progress(f"backlog drain: BatchSize {batch_size}, {'a core kept busy' if loaded else 'quiet'}")
            figures.append(_figure(batch_size, _run(moto, batch_size, loaded=loaded), loaded=loaded))
    return figures
