"""What more than one `make demo` phase checks and prints the same way: every recipient notified exactly
once, the function's metrics of the phase, the recipients of one call.

Kept apart from the phases so that each phase's module reads as its story, and a new phase checks
exactly-once with the same rule as the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.stack import LocalStack


def print_metrics(output: FunctionOutput) -> Counter[str]:
    """Print the function's metrics since the last read (this phase's), and return them for checks."""
    metrics, other_lines = output.metrics_since_last_read()
    shown = " · ".join(f"{name} {value:g}" for name, value in metrics.items() if value)
    print(f"   the function's metrics: {shown or 'none'}" + (f"; {other_lines} log line(s)" if other_lines else ""))
    return metrics


def exactly_once(stack: LocalStack, requests: Sequence[dict[str, Any]]) -> list[str]:
    """Compare what the sandbox delivered with the requests' recipients: none missing, none twice, no stranger."""
    expected = set()
    for r in requests:
        content = (r["message"]["title"], r["message"]["summary"], r.get("deeplink"))
        expected |= {(*content, "user", u) for u in r.get("userIds") or []}
        expected |= {(*content, "install", i) for i in r.get("installIds") or []}
    delivered = stack.sandbox.delivered()
    problems = []
    missing = expected - set(delivered)
    twice = [d for d, n in delivered.items() if n > 1]
    if missing:
        problems.append(f"{len(missing)} recipients never notified")
    if twice:
        problems.append(f"{len(twice)} recipients notified more than once")
    if set(delivered) - expected:
        problems.append("IMSHOP received recipients nobody asked for")
    print(
        f"   recipients notified: {sum(delivered.values())} of {len(expected)} expected, each exactly once"
        if not problems
        else f"   recipients: {len(delivered)} notified, {len(missing)} missing, {len(twice)} twice"
    )
    return problems


def recipients(body: Any) -> int:
    """Recipients of one call's body as the sandbox received it (0 for a body that is not a JSON object)."""
    return len(body.get("userIds", [])) + len(body.get("installIds", [])) if isinstance(body, dict) else 0
