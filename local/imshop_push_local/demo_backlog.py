"""`make demo`'s backlog phase: far more requests than the rate limit lets through at once, drained at the
configured rate with requests of one text merged into few calls, each recipient notified once and each
confirmed push written to the in-app history.

The figures it prints (calls, recipients per call, calls per window, history entries) are the ones a
reader compares between runs: the lower bound on calls is one per distinct notification.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from imshop_push.domain.history import entry_id, user_key
from imshop_push_local.demo_checks import exactly_once, print_metrics, recipients
from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.stack import LocalStack


def backlog_phase(
    stack: LocalStack,
    output: FunctionOutput,
    *,
    number: int,
    notifications: int,
    requests_per_notification: int,
    recipients_per_request: int,
) -> list[str]:
    requests = [
        {
            "userIds": [f"7900{n:03d}{r:02d}{k:02d}" for k in range(recipients_per_request)],
            "message": {"title": f"Бонусы сгорают · сегмент {n}", "summary": "Потратьте бонусы до конца недели"},
            "deeplink": f"shop://bonus/{n}",
        }
        for n in range(notifications)
        for r in range(requests_per_notification)
    ]
    window = stack.sandbox.rate_limit_window_seconds
    print(
        f"\n{number}) backlog: {len(requests)} requests = {notifications} distinct notifications"
        f" x {requests_per_notification} requests x {recipients_per_request} recipients"
    )
    ids = stack.publish(requests)
    started = time.monotonic()
    if not stack.source.drain(timeout=300):
        return ["the backlog did not drain within 300 s"]
    elapsed = time.monotonic() - started
    calls = stack.sandbox.calls
    per_window = _per_window(calls, window)
    handled = sum(len(r.message_ids) for r in stack.source.reports())
    print(
        f"   drained in {elapsed:.1f} s; IMSHOP calls: {len(calls)}"
        f" (lower bound {notifications}: one per notification; requests of one text merge within a batch, and"
        " across batches while they wait for budget)"
    )
    print(f"   recipients per call: {sorted(Counter(recipients(c.body) for c in calls).items())}")
    print(f"   calls per {window:g} s window: {' '.join(map(str, per_window))}")
    print(
        f"   limit violations seen by the sandbox: {stack.sandbox.violations};"
        f" records handled incl. re-enqueued backlog: {handled}"
    )
    metrics = print_metrics(output)
    print(
        f"   waiting for rate budget: {metrics['RequestsDeferred']:g} record(s), {metrics['RequestsPooled']:g} of them"
        " in the pending pool with others of their text, the rest re-enqueued with a delay (copies and wakes come"
        " back as new SQS messages, hence more records handled than requests)"
    )
    problems = exactly_once(stack, requests)
    expected = {(user_key(u), entry_id(mid)) for mid, r in zip(ids, requests, strict=True) for u in r["userIds"]}
    problems += _history_of_backlog(stack, metrics, expected)
    dead = stack.dead_letters()
    print(f"   dead-letter queue: {len(dead)} message(s)")
    if dead:
        problems.append(f"{len(dead)} backlog requests were dead-lettered")
    if stack.sandbox.violations:
        problems.append(f"{stack.sandbox.violations} calls over the limit")
    return problems


def _history_of_backlog(stack: LocalStack, metrics: Counter[str], expected: set[tuple[str, str]]) -> list[str]:
    """Every confirmed push has its entry in the table, written in its invocation or, kept, by a later one."""
    written, kept, lost = (metrics[f"HistoryEntries{n}"] for n in ("Written", "Kept", "NotWritten"))
    present = expected & _history_keys(stack)
    print(
        f"   history: {len(present)} of {len(expected)} entries in the table · HistoryEntriesWritten {written:g}"
        f" ({kept:g} kept by their invocation and written by a later one) · HistoryEntriesNotWritten {lost:g}"
    )
    problems = []
    if lost:
        problems.append(f"{lost:g} history entries of the backlog were not written")
    if len(present) < len(expected):
        problems.append(f"{len(expected) - len(present)} history entries of the backlog are missing")
    return problems


def _history_keys(stack: LocalStack) -> set[tuple[str, str]]:
    client = stack.aws.client("dynamodb")
    table = stack.history_function.environment["HISTORY_TABLE_NAME"]
    keys: set[tuple[str, str]] = set()
    scan: dict[str, Any] = {"TableName": table, "ProjectionExpression": "#u, #i"}
    scan["ExpressionAttributeNames"] = {"#u": "user", "#i": "id"}
    while True:
        page = client.scan(**scan)
        keys.update((item["user"]["S"], item["id"]["S"]) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return keys
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _per_window(calls: Sequence[Any], window: float) -> list[int]:
    """Calls per rate window counted from the first call: the shape of the drain at the vendor's limit."""
    if not calls:
        return []
    first = calls[0].arrived_at
    counts = Counter(int((c.arrived_at - first) // window) for c in calls)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]
