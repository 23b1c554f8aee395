"""`make demo`'s lanes phase: an order-status push published while a bonus campaign far above the rate limit
waits in the bulk queue reaches IMSHOP within about a window, ahead of the campaign's remaining calls.

The integration test of the lanes (tests/integration/test_lanes_poller.py) measures with the same helpers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.sandbox.models import ReceivedCall
from imshop_push_local.stack import LocalStack

BULK_TITLE = "Бонусы сгорают"
BACKLOG_WINDOWS = 4  # the campaign: this many windows' worth of calls at the vendor's limit


def bulk_backlog(count: int) -> list[dict[str, Any]]:
    """A campaign of distinct texts (one call each): nothing merges, so the backlog is `count` calls."""
    return [
        {
            "userIds": [f"7902{n:07d}"],
            "message": {"title": f"{BULK_TITLE} · {n}", "summary": "Потратьте бонусы до конца недели"},
        }
        for n in range(count)
    ]


def order_status(n: int) -> dict[str, Any]:
    return {
        "userIds": [f"7903{n:07d}"],
        "message": {"title": f"Заказ {1200 + n} передан в доставку", "summary": "Подробности в приложении"},
    }


def is_bulk(call: ReceivedCall) -> bool:
    return _title(call).startswith(BULK_TITLE)


@dataclass(frozen=True)
class Overtaking:
    """One transactional push through a bulk backlog, on the sandbox's clock (time.monotonic)."""

    title: str
    published_at: float
    arrived_at: float | None
    bulk_between: int
    """Bulk calls that reached IMSHOP after the push was published and before it arrived: the slots it waited."""
    bulk_after: int
    """Bulk calls that reached IMSHOP after it: the backlog it overtook (0 until the backlog has drained)."""

    @property
    def latency(self) -> float | None:
        return None if self.arrived_at is None else self.arrived_at - self.published_at


def push_through(stack: LocalStack, body: dict[str, Any], *, timeout: float) -> tuple[float, float | None]:
    """Publish one transactional request; when SQS accepted it, and when it reached IMSHOP (None: not in time)."""
    stack.publish([body])
    published = time.monotonic()
    return published, arrival(stack, body["message"]["title"], timeout=timeout)


def arrival(stack: LocalStack, title: str, *, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        calls = stack.sandbox.calls
        for call in calls[seen:]:
            if call.delivered and _title(call) == title:
                return call.arrived_at
        seen = len(calls)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not stack.sandbox.wait_for_calls(seen + 1, remaining):
            return None


def overtaking(calls: Sequence[ReceivedCall], title: str, published_at: float, arrived_at: float | None) -> Overtaking:
    bulk = [c.arrived_at for c in calls if c.delivered and is_bulk(c)]
    end = arrived_at if arrived_at is not None else float("inf")
    return Overtaking(
        title=title,
        published_at=published_at,
        arrived_at=arrived_at,
        bulk_between=sum(published_at < t < end for t in bulk),
        bulk_after=sum(t > end for t in bulk),
    )


def lanes_phase(stack: LocalStack, output: FunctionOutput, *, number: int) -> list[str]:
    limit, window = stack.sandbox.rate_limit_requests, stack.sandbox.rate_limit_window_seconds
    backlog = bulk_backlog(BACKLOG_WINDOWS * limit)
    print(
        f"\n{number}) two lanes: a bonus campaign of {len(backlog)} distinct pushes ({BACKLOG_WINDOWS} windows at the"
        " limit) in the bulk queue, then an order status in the transactional queue"
    )
    output.metrics_since_last_read()  # this phase's metrics only
    started = time.monotonic()
    stack.publish(backlog, queue_url=stack.aws.bulk_queue.url)
    if not stack.sandbox.wait_for_calls(limit, timeout=30):
        return ["the bulk backlog did not start within 30 s"]
    status = order_status(0)
    published, arrived = push_through(stack, status, timeout=10 * window)
    drained = all(source.drain(timeout=BACKLOG_WINDOWS * window * 3 + 30) for source in stack.sources)
    calls = stack.sandbox.calls
    seen = overtaking(calls, status["message"]["title"], published, arrived)
    sent_before = sum(c.arrived_at < published for c in calls if is_bulk(c))
    print(f"   bulk calls before the order status was published: {sent_before} of {len(backlog)}")
    print(f"   order status published at {published - started:.2f} s", end="")
    if arrived is None:
        print(", never arrived")
        return ["the order status did not reach IMSHOP"]
    print(
        f", arrived at {arrived - started:.2f} s ({arrived - published:.2f} s later; window {window:g} s);"
        f" bulk calls still waiting when it arrived: {seen.bulk_after}"
    )
    metrics, _ = output.metrics_since_last_read()
    print(
        f"   the function's metrics: TransactionalCalls {metrics['TransactionalCalls']:g}"
        f" · BulkCalls {metrics['BulkCalls']:g} · BulkCallsDeferred {metrics['BulkCallsDeferred']:g}"
    )
    problems = []
    if not seen.bulk_after:
        problems.append("the order status did not overtake the bulk backlog")
    if seen.bulk_between > 2 * limit:
        problems.append(f"the order status waited behind {seen.bulk_between} bulk calls (more than two windows)")
    if not drained:
        problems.append("the bulk backlog did not drain")
    if stack.sandbox.violations:
        problems.append(f"{stack.sandbox.violations} calls over the limit")
    delivered = stack.sandbox.delivered()
    if any(n > 1 for n in delivered.values()) or len(delivered) != len(backlog) + 1:
        problems.append(f"{len(delivered)} recipients notified, expected each of {len(backlog) + 1} exactly once")
    return problems


def _title(call: ReceivedCall) -> str:
    body = call.body if isinstance(call.body, dict) else {}
    message = body.get("message")
    return str(message.get("title", "")) if isinstance(message, dict) else ""
