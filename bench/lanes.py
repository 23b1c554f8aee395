"""Figures 7 and 8: two lanes, one limit, through the emulated poller (both event sources of the template).

7. transactional latency (publish -> arrival at the IMSHOP sandbox) while a bulk backlog saturates the limit:
   p50 / p95 / max beside the bound one window + the transactional batching window + call time;
8. utilisation (calls per window in the steady part / the limit) with bulk only and with both lanes,
   with the sandbox's count of calls over the limit.

Time-scaled (the demo's 1/30: a 2 s window) so that the whole module runs in about a minute.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer
    from imshop_push_local.stack import LocalStack

from bench.calls_per_window import steady_rate
from bench.common import Console, Figure, _median

BULK_REQUESTS = 150
TRANSACTIONAL_REQUESTS = 12
TRANSACTIONAL_GAP_SECONDS = 1.1  # about 2 a window: transactional demand well below the limit
FUNCTION_TIMEOUT_SECONDS = 6.0  # 90 s / 60 s window in production: time enough to wait one window in-process


def _bodies(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {"userIds": [f"7999{n:07d}"], "message": {"title": f"{prefix} {n}", "summary": f"{prefix} {n}"}}
        for n in range(count)
    ]


def _settings() -> Any:
    from imshop_push_local.demo import DEMO_SETTINGS

    # The template's own per-lane batch settings, time-scaled (no uniform override), and a function timeout in
    # production's ratio to the window.
    return dataclasses.replace(
        DEMO_SETTINGS,
        batch_size=None,
        batching_window_seconds=None,
        function_timeout_seconds=FUNCTION_TIMEOUT_SECONDS,
        visibility_timeout_seconds=int(6 * FUNCTION_TIMEOUT_SECONDS),
    )


def _run(console: Console, moto: MotoServer, *, transactional: bool) -> dict[str, Any]:
    from imshop_push_local.stack import LocalStack

    with LocalStack(_settings(), moto=moto) as stack:
        limit, window = stack.sandbox.rate_limit_requests, stack.sandbox.rate_limit_window_seconds
        stack.start_consumers()
        stack.publish(_bodies("bulk", BULK_REQUESTS), queue_url=stack.aws.bulk_queue.url)
        published: dict[str, float] = {}
        if transactional:
            _publish_transactional_while_bulk_waits(stack, published, window)
        drained = all(s.drain(timeout=BULK_REQUESTS / limit * window * 2 + 30) for s in stack.sources)
        calls = list(stack.sandbox.calls)
        violations = stack.sandbox.violations
        batching = {m.queue_arn: m.batching_window_seconds for m in stack.function.sqs_sources}
        transactional_window = batching[stack.aws.queue.arn]
        call_timeout = float(stack.function.environment.get("HTTP_TIMEOUT_SECONDS", "0.3"))
    arrivals = sorted(c.arrived_at for c in calls if c.delivered)
    rate, _, _ = steady_rate(arrivals, limit, window)
    arrived = {c.body["message"]["title"]: c.arrived_at for c in calls if c.delivered}
    latencies = sorted(arrived[t] - p for t, p in published.items() if t in arrived)
    return {
        "limit": limit,
        "window": window,
        "rate": rate,
        "violations": violations,
        "drained": drained,
        "latencies": latencies,
        "missing": len(published) - len(latencies),
        "bound": window + transactional_window + call_timeout,
        "batching": transactional_window,
        "call_timeout": call_timeout,
    }


def _publish_transactional_while_bulk_waits(stack: LocalStack, published: dict[str, float], window: float) -> None:
    """After a window, bulk holds every slot and a backlog waits; then one transactional request at a time."""
    time.sleep(window * 1.5)
    for body in _bodies("transactional", TRANSACTIONAL_REQUESTS):
        published[body["message"]["title"]] = time.monotonic()
        stack.publish([body])
        threading.Event().wait(TRANSACTIONAL_GAP_SECONDS)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def lanes(console: Console, moto: MotoServer) -> list[Figure]:
    console.progress(
        f"lanes: {BULK_REQUESTS} bulk requests alone, then again with {TRANSACTIONAL_REQUESTS} transactional"
    )
    alone = _run(console, moto, transactional=False)
    both = _run(console, moto, transactional=True)
    lat = both["latencies"]
    p50, p95, worst = _median(lat) if lat else math.nan, _percentile(lat, 0.95), max(lat, default=math.nan)
    bound = both["bound"]
    latency = Figure(
        name="transactional latency, bulk backlog saturating",
        value=p95,
        value_text=f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {worst:.2f} s ({len(lat)} requests)",
        baseline_text=(
            f"{bound:.2f} s = window {both['window']:g} + batching {both['batching']:.3f}"
            f" + call {both['call_timeout']:g}"
        ),
        ratio=p95 / bound,
        target="p95 ≤ 1.00x, max ≤ 2 windows",
        passed=p95 <= bound
        and worst <= 2 * both["window"] + both["batching"] + both["call_timeout"]
        and not both["missing"],
        why=f"{both['missing']} transactional requests never arrived" if both["missing"] else "",
    )
    figures = [latency]
    for name, run in (("bulk only", alone), ("both lanes", both)):
        ratio = run["rate"] / run["limit"]
        figures.append(
            Figure(
                name=f"utilisation, {name}",
                value=run["rate"],
                value_text=f"{run['rate']:.2f} calls/window, {run['violations']} over",
                baseline_text=f"{run['limit']} limit ({run['window']:g} s)",
                ratio=ratio,
                target="≥ 0.95, 0 violations",
                passed=ratio >= 0.95 and run["violations"] == 0 and run["drained"],
                why="" if run["drained"] else "the backlog did not drain in time",
            )
        )
    return figures
