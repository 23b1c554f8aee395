"""`make demo`: the dispatcher's main job on this machine, with nothing to configure.

A loopback IMSHOP sandbox and moto server stand in for the vendor and AWS; the SQS event source runs the
real handler in worker processes. Phases: the sample events of `events/` (valid requests in all three
body forms, and poison), then a backlog far above the rate limit draining at the configured rate with
merged calls, then status updates of one order superseding each other (`demo_supersede.py`), then the
in-app history IMSHOP's app reads through the webhook (`demo_history.py`), then an order status overtaking a
bulk campaign (`demo_lanes.py`). The vendor's 10 calls a minute are time-scaled to 10 calls a second. Exits
non-zero if anything unexpected happened.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imshop_push.domain.history import entry_id, user_key
from imshop_push.domain.masking import mask_recipients
from imshop_push.domain.parsing import PoisonMessageError, parse_body
from imshop_push_local.demo_history import history_phase
from imshop_push_local.demo_lanes import lanes_phase
from imshop_push_local.demo_schedule import schedule_phase
from imshop_push_local.demo_supersede import supersede_phase
from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.stack import REPO_ROOT, LocalStack, StackSettings

EVENTS_DIR = REPO_ROOT / "events"
# template.yaml's durations time-scaled 30x (StackSettings' default): window 60 s -> 2 s, function timeout 90 s
# -> 3 s (1.5 windows), visibility 570 s -> 19 s. The demo's own choices: batching window 0.2 s, call timeouts
# 0.2 + 0.3 s, 500-record batches, three receives before SQS dead-letters.
DEMO_SETTINGS = StackSettings(
    rate_limit_window_seconds=None,
    function_timeout_seconds=None,
    visibility_timeout_seconds=None,
    http_timeout_seconds=0.3,
    connect_timeout_seconds=0.2,
    sandbox_slow_seconds=0.6,
    max_receive_count=3,
    batch_size=500,
    batching_window_seconds=0.2,
    log_level="ERROR",
    history=True,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backlog-notifications", type=int, default=40, help="distinct notifications")
    parser.add_argument("--recipients-per-request", type=int, default=30)
    parser.add_argument("--requests-per-notification", type=int, default=10)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    problems: list[str] = []
    # Outside the repository: nothing to ignore in git, nothing left behind in the working tree.
    output = FunctionOutput(Path(tempfile.mkdtemp(prefix="imshop-push-demo-")) / "function-output.jsonl")
    with LocalStack(DEMO_SETTINGS) as stack:
        _print_stack(stack)
        stack.start_consumers(output_path=output.path)
        problems += sample_events_phase(stack, output)
        stack.sandbox.reset()
        problems += backlog_phase(
            stack,
            output,
            notifications=args.backlog_notifications,
            requests_per_notification=args.requests_per_notification,
            recipients_per_request=args.recipients_per_request,
        )
        stack.sandbox.reset()
        problems += supersede_phase(stack, output, number=3)
        stack.sandbox.reset()
        problems += history_phase(stack, output_path=output.path, number=4)
        stack.sandbox.reset()
        problems += lanes_phase(stack, output, number=5)
    problems += schedule_phase(output_path=output.path, settings=DEMO_SETTINGS, number=6)  # own stack: quiet hours
    print(f"\nThe function's own output (EMF metrics and logs, as CloudWatch would get them): {output.path}")
    print()
    if problems:
        print("UNEXPECTED:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(
        "OK: every valid recipient notified exactly once, poison dead-lettered with reasons, no call over the limit,"
        " and the history served from what IMSHOP confirmed."
    )
    return 0


def _print_stack(stack: LocalStack) -> None:
    aws, mapping, function = stack.aws, stack.mapping, stack.function
    print("imshop-push demo")
    print(f"  IMSHOP sandbox  {_redacted(stack.sandbox.url)}  (enforces the vendor contract and limits)")
    print(f"  AWS emulator    {aws.endpoint_url}  (moto server, provisioned from template.yaml)")
    print(f"  queue           {aws.queue.name} -> dead-letter queue {aws.dead_letter_queue.name}")
    print(f"  bulk queue      {aws.bulk_queue.name} -> dead-letter queue {aws.bulk_dead_letter_queue.name}")
    print(f"  state table     {aws.table_name}")
    print(
        f"  history table   {stack.history_function.environment['HISTORY_TABLE_NAME']}  (NotificationHistory=Enabled)"
    )
    print(
        f"  rate limit      {stack.sandbox.rate_limit_requests} calls per"
        f" {stack.sandbox.rate_limit_window_seconds:g} s window (the vendor's 10/min, time-scaled);"
        f" maxReceiveCount {stack.settings.max_receive_count}"
    )
    print(
        f"  event source    batches of up to {mapping.batch_size}, window {mapping.batching_window_seconds:g} s,"
        f" {mapping.concurrency} concurrent executions, function timeout {function.timeout_seconds:g} s"
    )


def _print_metrics(output: FunctionOutput) -> Counter[str]:
    metrics, other_lines = output.metrics_since_last_read()
    shown = " · ".join(f"{name} {value:g}" for name, value in metrics.items() if value)
    print(f"   the function's metrics: {shown or 'none'}" + (f"; {other_lines} log line(s)" if other_lines else ""))
    return metrics


def sample_events_phase(stack: LocalStack, output: FunctionOutput) -> list[str]:
    bodies, expected_valid, expected_poison = _sample_bodies()
    print(f"\n1) sample events ({len(bodies)} messages from {EVENTS_DIR.relative_to(REPO_ROOT)}/*.json)")
    ids = stack.publish(bodies)
    started = time.monotonic()
    if not stack.source.drain(timeout=60):
        return ["sample events did not drain within 60 s"]
    _print_calls(stack, started)
    reports = [r for r in stack.source.reports() if r.message_ids]
    failed = sum(len(r.failed_ids) for r in reports)
    print(f"   invocations: {len(reports)}; records returned to SQS for retry: {failed}")
    dead = stack.dead_letters()
    print(f"   dead-letter queue: {len(dead)} message(s)")
    for message in dead:
        attributes = message.get("MessageAttributes", {})
        source = attributes.get("sourceMessageId", {}).get("StringValue", "?")
        reason = attributes.get("error", {}).get("StringValue", "?")
        print(f"     - {source[:8]}…  {reason}")
    _print_metrics(output)
    problems = []
    poison_ids = {ids[i] for i in expected_poison}
    dead_ids = {m.get("MessageAttributes", {}).get("sourceMessageId", {}).get("StringValue") for m in dead}
    if dead_ids != poison_ids:
        problems.append(f"dead letters {len(dead_ids)} != poison {len(poison_ids)}")
    problems += _exactly_once(stack, expected_valid)
    return problems


def backlog_phase(
    stack: LocalStack,
    output: FunctionOutput,
    *,
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
        f"\n2) backlog: {len(requests)} requests = {notifications} distinct notifications"
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
    print(f"   recipients per call: {sorted(Counter(_recipients(c.body) for c in calls).items())}")
    print(f"   calls per {window:g} s window: {' '.join(map(str, per_window))}")
    print(
        f"   limit violations seen by the sandbox: {stack.sandbox.violations};"
        f" records handled incl. re-enqueued backlog: {handled}"
    )
    metrics = _print_metrics(output)
    print(
        f"   waiting for rate budget: {metrics['RequestsDeferred']:g} record(s), {metrics['RequestsPooled']:g} of them"
        " in the pending pool with others of their text, the rest re-enqueued with a delay (copies and wakes come"
        " back as new SQS messages, hence more records handled than requests)"
    )
    problems = _exactly_once(stack, requests)
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


def _sample_bodies() -> tuple[list[str], list[dict[str, Any]], list[int]]:
    bodies: list[str] = []
    valid: list[dict[str, Any]] = []
    poison: list[int] = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for record in document.get("Records", []) if isinstance(document, dict) else []:
            body = record["body"]
            try:
                request = parse_body(body, message_id=record["messageId"])
            except PoisonMessageError:
                poison.append(len(bodies))
            else:
                valid.append(
                    {
                        "userIds": [rid for field, rid in request.recipients if field == "userIds"],
                        "installIds": [rid for field, rid in request.recipients if field == "installIds"],
                        "message": {"title": request.content.title, "summary": request.content.summary},
                        "deeplink": request.content.deeplink,
                    }
                )
            bodies.append(body)
    return bodies, valid, poison


def _exactly_once(stack: LocalStack, requests: Sequence[dict[str, Any]]) -> list[str]:
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


def _print_calls(stack: LocalStack, started: float) -> None:
    calls = stack.sandbox.calls
    print(f"   IMSHOP received {len(calls)} call(s):")
    for number, call in enumerate(calls, 1):
        body = call.body if isinstance(call.body, dict) else {}
        message = body.get("message", {})
        ids = [*body.get("userIds", []), *body.get("installIds", [])]
        print(
            f"     #{number} {call.status} {message.get('title', '?')!r}"
            f" -> {_recipients(body)} recipient(s) {mask_recipients(ids)}"
            + (f" deeplink={body['deeplink']}" if "deeplink" in body else "")
        )


def _recipients(body: Any) -> int:
    return len(body.get("userIds", [])) + len(body.get("installIds", [])) if isinstance(body, dict) else 0


def _per_window(calls: Sequence[Any], window: float) -> list[int]:
    if not calls:
        return []
    first = calls[0].arrived_at
    counts = Counter(int((c.arrived_at - first) // window) for c in calls)
    return [counts.get(i, 0) for i in range(max(counts) + 1)]


def _redacted(url: str) -> str:
    scheme_host, _, _ = url.partition("/api/")
    return f"{scheme_host}/api/…(secret token)"


if __name__ == "__main__":
    sys.exit(main())
