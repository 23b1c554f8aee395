"""Figure 6: message sent -> IMSHOP call with an idle queue vs the batching window."""

from __future__ import annotations

import dataclasses
import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer

from bench.common import Console, Figure, _median
from bench.events import _content, _phone

LATENCY_SAMPLES = 10


LATENCY_WINDOW_SECONDS = 0.5


def idle_latency(console: Console, moto: MotoServer) -> Figure:
    from imshop_push_local.demo import DEMO_SETTINGS
    from imshop_push_local.stack import LocalStack

    s = dataclasses.replace(DEMO_SETTINGS, batching_window_seconds=LATENCY_WINDOW_SECONDS)
    console.progress(
        f"idle latency: {LATENCY_SAMPLES} single messages to an idle queue, batching window"
        f" {LATENCY_WINDOW_SECONDS:g} s"
    )
    rng = random.Random(6)
    samples: list[float] = []
    with LocalStack(s, moto=moto) as stack:
        stack.start_consumers()
        for n in range(3 + LATENCY_SAMPLES):  # the first three warm the workers (Runtime, boto3 clients)
            seen = len(stack.sandbox.calls)
            sent = time.monotonic()
            stack.publish([{"userIds": [_phone(rng)], **_content(20_000 + n)}])
            if not stack.sandbox.wait_for_calls(seen + 1, timeout=30):
                raise RuntimeError("no IMSHOP call within 30 s of an idle-queue message")
            if n >= 3:
                samples.append(stack.sandbox.calls[seen].arrived_at - sent)
            time.sleep(0.25 + rng.random() * 0.5)  # idle again; never near the rate limit
        violations = stack.sandbox.violations
    latency = _median(samples)
    window = LATENCY_WINDOW_SECONDS
    return Figure(
        name="idle-queue latency, send → call",
        value=latency,
        value_text=f"{latency:.2f} s (max {max(samples):.2f})",
        baseline_text=f"{window:g} s batching window",
        ratio=latency / window,
        target=f"≤ window + 1 s ({window + 1:g} s)",
        passed=latency <= window + 1 and violations == 0,
        why=f"median {latency:.2f} s",
        details=[f"samples (s): {' '.join(f'{x:.2f}' for x in samples)}"],
    )
