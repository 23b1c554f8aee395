"""Figure 4: IMSHOP calls for one batch vs the lower bound of calls per content."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imshop_push_local.sandbox import ImshopSandbox

from bench.common import Console, Figure
from bench.events import lower_bound_of, merge_event
from bench.peak_rss import _check_delivery, _handle_in_worker


def calls_per_batch(console: Console, sandbox: ImshopSandbox) -> Figure:
    event = merge_event(7)
    bound = lower_bound_of(event)
    console.progress(f"calls per batch: {len(event['Records'])} requests over 12 contents, overlapping recipients")
    result, calls = _handle_in_worker(console, sandbox, event)
    problems = _check_delivery(sandbox, event)
    if result["failures"]:
        problems.append(f"{result['failures']} records returned for retry")
    sizes = Counter(len(c.body.get("userIds", [])) + len(c.body.get("installIds", [])) for c in sandbox.calls)
    ratio = calls / bound
    return Figure(
        name="IMSHOP calls per batch",
        value=calls,
        value_text=f"{calls} calls",
        baseline_text=f"{bound} lower bound",
        ratio=ratio,
        target="= 1.00",
        passed=calls == bound and not problems,
        why="; ".join(problems) or f"{calls} calls for a lower bound of {bound}",
        details=[
            "recipients per call: "
            + " ".join(f"{size}x{n}" for size, n in sorted(sizes.items(), reverse=True)[:8])
            + (" ..." if len(sizes) > 8 else "")
            + ("" if not problems else f"; PROBLEM: {'; '.join(problems)}")
        ],
    )
