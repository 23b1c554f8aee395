"""Figure 9: IMSHOP calls for a one-text blast sent one recipient per message, vs the lower bound, per lane.

A CRM that sends one message per recipient must not cost one call per batch. Through the local stack with the
emulated poller (time-scaled, each lane's own event source settings from the template): the limiter is made busy
first with distinct texts, then BLAST_REQUESTS single-recipient requests of one text are published as fast as
the producer can (a few seconds); once both queues are drained, the calls that carried the text are counted, with
each recipient's deliveries (exactly once).

Both are published before the pollers start: with the pollers running, the emulator (one Python process on a
shared machine) takes a minute and a half for the 3,000 messages, 45 minutes at the stack's 1/30 time scale, which
is a trickle, not a blast. Queued first, the blast meets the busy requests in the first batches: its requests wait
for budget together, which is the case shared waiting is about.
"""

from __future__ import annotations

import collections
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer

from bench.common import Console, Figure
from bench.stack_runs import drain, stack_settings, start_consumers

BLAST_REQUESTS = 3_000
BLAST_MESSAGE = {"title": "Your bonus expires on Sunday", "summary": "One text, one recipient per message"}
# Distinct-text requests published first, one call each: four windows of the limit (10 calls per window), so the
# blast arrives while the limiter is busy and waits for budget.
BUSY_REQUESTS = 40
TARGET_RATIO = 1.33
DRAIN_TIMEOUT_SECONDS = 300.0


def _recipient(n: int) -> str:
    return f"7900{n:07d}"


def _run_lane(console: Console, moto: MotoServer, lane: str) -> dict[str, Any]:
    from imshop_push_local.stack import LocalStack

    with LocalStack(stack_settings(), moto=moto) as stack:
        queue_url = stack.aws.bulk_queue.url if lane == "bulk" else stack.aws.queue_url
        busy = [
            {"userIds": [_recipient(900_000 + n)], "message": {"title": f"Busy {n}", "summary": f"Busy {n}"}}
            for n in range(BUSY_REQUESTS)
        ]
        stack.publish(busy, queue_url=queue_url)
        started = time.monotonic()
        stack.publish(
            ({"userIds": [_recipient(n)], "message": BLAST_MESSAGE} for n in range(BLAST_REQUESTS)),
            queue_url=queue_url,
        )
        publish_seconds = time.monotonic() - started
        start_consumers(stack)
        drained = drain(stack, DRAIN_TIMEOUT_SECONDS)
        calls = [c for c in stack.sandbox.calls if c.body.get("message", {}).get("title") == BLAST_MESSAGE["title"]]
        return {
            "calls": len(calls),
            "sizes": [len(c.body.get("userIds", [])) for c in calls],
            "delivered": collections.Counter(u for c in calls if c.delivered for u in c.body.get("userIds", [])),
            "drained": drained,
            "violations": stack.sandbox.violations,
            "publish_seconds": publish_seconds,
            "window": stack.sandbox.rate_limit_window_seconds,
            "max_recipients": stack.sandbox.max_recipients,
            "batch_size": {m.queue_url: m.batch_size for m in stack.function.sqs_sources}[queue_url],
        }


def _figure(lane: str, run: dict[str, Any]) -> Figure:
    bound = math.ceil(BLAST_REQUESTS / run["max_recipients"])
    ratio = run["calls"] / bound
    delivered: collections.Counter[str] = run["delivered"]
    missing = BLAST_REQUESTS - sum(1 for n in range(BLAST_REQUESTS) if _recipient(n) in delivered)
    twice = sum(1 for count in delivered.values() if count > 1)
    exactly_once = not missing and not twice and len(delivered) == BLAST_REQUESTS
    problems = [
        *([f"{missing} recipients never delivered"] if missing else []),
        *([f"{twice} recipients delivered more than once"] if twice else []),
        *([f"{run['violations']} calls over the limit"] if run["violations"] else []),
        *([] if run["drained"] else ["the queues did not drain in time"]),
        *([] if ratio <= TARGET_RATIO else [f"{run['calls']} calls where {bound} would do"]),
    ]
    return Figure(
        name=f"one-text blast, 1 recipient/message, {lane} lane",
        value=run["calls"],
        value_text=f"{run['calls']} calls, each recipient once: {'yes' if exactly_once else 'NO'}",
        baseline_text=f"{bound} = ceil({BLAST_REQUESTS:,} / {run['max_recipients']})",
        ratio=ratio,
        target=f"≤ {TARGET_RATIO:.2f}x",
        passed=not problems,
        why="; ".join(problems),
        details=[
            f"{BUSY_REQUESTS} distinct-text requests first (limiter busy), then {BLAST_REQUESTS:,} published in"
            f" {run['publish_seconds']:.1f} s, both before the pollers started; window {run['window']:g} s,"
            f" BatchSize {run['batch_size']}",
            f"recipients per call: {' '.join(str(s) for s in run['sizes'])}",
        ],
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
