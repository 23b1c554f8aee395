"""Figure 9: IMSHOP calls for a one-text blast sent one recipient per message, vs the lower bound, per lane.

A CRM that sends one message per recipient must not cost one call per batch. The issue's case: 3,000
single-recipient requests of one text arrive over a few seconds while the limiter is busy; at most 1,000 recipients
a call, so the lower bound is 3 calls, the target at most 4 (1.33x), and BatchSize 100 costs about 30 today.

Run through the local stack with the emulated poller (a 20 s window, see WINDOW_SECONDS) as a model divided by
SCALE: requests, recipients per call and each lane's BatchSize alike, so every ratio of the issue's case holds
(lower bound 3, about 30 calls at the transactional BatchSize). moto cannot carry the full size: on a busy two-core
machine it takes 50 s to accept 3,000 messages and up to a second per ReceiveMessage of a queue that deep.

The limiter is made busy first (BUSY_REQUESTS distinct texts, a call each), then the blast is published; both are
queued before the pollers start, so the blast arrives at once, not as the trickle moto would make of it. Once the
queues are drained, the calls that carried the text are counted, with each recipient's deliveries (exactly once).
"""

from __future__ import annotations

import collections
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer
    from imshop_push_local.stack import LocalStack

from bench.common import Console, Figure
from bench.stack_runs import consumers, drain, stack_settings

SCALE = 10
BLAST_REQUESTS = 3_000 // SCALE
MAX_RECIPIENTS = 1_000 // SCALE
BLAST_MESSAGE = {"title": "Your bonus expires on Sunday", "summary": "One text, one recipient per message"}
# moto hands the blast to the function a batch at a time, a few hundred ms each: over many seconds. A window of
# 20 s keeps that within about one window, as a producer's few seconds are within the vendor's minute.
WINDOW_SECONDS = 20.0
# Distinct texts, a call each: two windows of the limit (10 calls per window), so the blast waits for budget.
BUSY_REQUESTS = 20
TARGET_RATIO = 4 / 3  # the "at most 4 calls" for a lower bound of 3
DRAIN_TIMEOUT_SECONDS = 300.0


def recipient(n: int) -> str:
    return f"7900{n:07d}"


def _run_lane(console: Console, moto: MotoServer, lane: str) -> dict[str, Any]:
    from imshop_push_local.stack import LocalStack

    settings = stack_settings(window_seconds=WINDOW_SECONDS, max_recipients=MAX_RECIPIENTS)
    with LocalStack(settings, moto=moto) as stack:
        queue_url = stack.aws.bulk_queue.url if lane == "bulk" else stack.aws.queue_url
        busy = [
            {"userIds": [recipient(900_000 + n)], "message": {"title": f"Busy {n}", "summary": f"Busy {n}"}}
            for n in range(BUSY_REQUESTS)
        ]
        stack.publish(busy, queue_url=queue_url)
        started = time.monotonic()
        stack.publish(
            ({"userIds": [recipient(n)], "message": BLAST_MESSAGE} for n in range(BLAST_REQUESTS)),
            queue_url=queue_url,
        )
        publish_seconds = time.monotonic() - started
        with consumers(stack, batch_divisor=SCALE) as sources:
            drained = drain(sources, DRAIN_TIMEOUT_SECONDS)
            [config] = [s.config for s in sources if s.config.queue_url == queue_url]
        return {
            **blast_run(stack, BLAST_MESSAGE["title"], drained),
            "publish_seconds": publish_seconds,
            "config": config,
        }


def blast_run(stack: LocalStack, title: str, drained: bool) -> dict[str, Any]:
    """What the sandbox saw of the blast's text, and the limits it enforced."""
    calls = [c for c in stack.sandbox.calls if c.body.get("message", {}).get("title") == title]
    return {
        "calls": len(calls),
        "sizes": [len(c.body.get("userIds", [])) for c in calls],
        "delivered": collections.Counter(u for c in calls if c.delivered for u in c.body.get("userIds", [])),
        "drained": drained,
        "violations": stack.sandbox.violations,
        "window": stack.sandbox.rate_limit_window_seconds,
        "max_recipients": stack.sandbox.max_recipients,
    }


def _figure(lane: str, run: dict[str, Any]) -> Figure:
    return blast_figure(
        f"one-text blast, 1 recipient/message, {lane} lane (1/{SCALE} model)",
        run,
        f"{BUSY_REQUESTS} distinct-text requests first (limiter busy), then {BLAST_REQUESTS:,} published in"
        f" {run['publish_seconds']:.1f} s, both before the pollers started; window {run['window']:g} s,"
        f" BatchSize {run['config'].batch_size}, batching window {run['config'].batching_window_seconds:g} s",
    )


def blast_figure(name: str, run: dict[str, Any], how: str) -> Figure:
    """Calls of a blast of BLAST_REQUESTS recipients (`recipient(n)`) vs its lower bound, each recipient once."""
    bound = math.ceil(BLAST_REQUESTS / run["max_recipients"])
    ratio = run["calls"] / bound
    delivered: collections.Counter[str] = run["delivered"]
    missing = BLAST_REQUESTS - sum(1 for n in range(BLAST_REQUESTS) if recipient(n) in delivered)
    twice = sum(1 for count in delivered.values() if count > 1)
    exactly_once = not missing and not twice and len(delivered) == BLAST_REQUESTS
    problems = [
        *([f"{missing} recipients never delivered"] if missing else []),
        *([f"{twice} recipients delivered more than once"] if twice else []),
        *([f"{run['violations']} calls over the limit"] if run["violations"] else []),
        *([] if run["drained"] else ["the queues did not drain in time"]),
        *([] if run["calls"] <= math.floor(bound * TARGET_RATIO) else [f"{run['calls']} calls where {bound} would do"]),
    ]
    return Figure(
        name=name,
        value=run["calls"],
        value_text=f"{run['calls']} calls, each recipient once: {'yes' if exactly_once else 'NO'}",
        baseline_text=f"{bound} = ceil({BLAST_REQUESTS:,} / {run['max_recipients']}) calls",
        ratio=ratio,
        target=f"≤ {TARGET_RATIO:.2f}x ({math.floor(bound * TARGET_RATIO)} calls)",
        passed=not problems,
        why="; ".join(problems),
        details=[how, f"recipients per call: {' '.join(str(s) for s in run['sizes'])}"],
    )


def blast(console: Console, moto: MotoServer) -> list[Figure]:
    figures = []
    for lane in ("bulk", "transactional"):
        console.progress(
            f"blast ({lane}): {BUSY_REQUESTS} busy requests, then {BLAST_REQUESTS:,} single-recipient requests of"
            " one text"
        )
        figures.append(_figure(lane, _run_lane(console, moto, lane)))
    return figures
