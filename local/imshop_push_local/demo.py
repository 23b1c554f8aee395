"""`make demo`: the dispatcher's main job on this machine, with nothing to configure.

A loopback IMSHOP sandbox and moto server stand in for the vendor and AWS; the SQS event source runs the
real handler in worker processes. Each phase is a module of its own, run in the order of ``main``'s list,
one line each, with a fresh rate budget: the sample events of `events/` (`demo_samples.py`), a backlog far
above the rate limit draining at the configured rate with merged calls (`demo_backlog.py`), status updates
of one order superseding each other (`demo_supersede.py`), the in-app history IMSHOP's app reads through
the webhook (`demo_history.py`), an order status overtaking a bulk campaign (`demo_lanes.py`); then send
time on a stack of its own (`demo_schedule.py`). The vendor's 10 calls a minute are time-scaled to 10 calls
a second. Exits non-zero if anything unexpected happened.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from imshop_push_local.demo_backlog import backlog_phase
from imshop_push_local.demo_fallback import fallback_phase
from imshop_push_local.demo_history import history_phase
from imshop_push_local.demo_lanes import lanes_phase
from imshop_push_local.demo_samples import sample_events_phase
from imshop_push_local.demo_schedule import schedule_phase
from imshop_push_local.demo_status import status_phase
from imshop_push_local.demo_supersede import supersede_phase
from imshop_push_local.function_output import FunctionOutput
from imshop_push_local.stack import LocalStack, StackSettings

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


class Phase(Protocol):
    """A phase on the demo's shared stack: prints its part of the story, returns the problems it saw."""

    def __call__(self, stack: LocalStack, output: FunctionOutput, *, number: int) -> list[str]: ...


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backlog-notifications", type=int, default=40, help="distinct notifications")
    parser.add_argument("--recipients-per-request", type=int, default=30)
    parser.add_argument("--requests-per-notification", type=int, default=10)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    phases: list[Phase] = [  # one line per phase, in the order they run
        sample_events_phase,
        functools.partial(
            backlog_phase,
            notifications=args.backlog_notifications,
            requests_per_notification=args.requests_per_notification,
            recipients_per_request=args.recipients_per_request,
        ),
        supersede_phase,
        history_phase,
        lanes_phase,
    ]
    problems: list[str] = []
    # Outside the repository: nothing to ignore in git, nothing left behind in the working tree.
    output = FunctionOutput(Path(tempfile.mkdtemp(prefix="imshop-push-demo-")) / "function-output.jsonl")
    with LocalStack(DEMO_SETTINGS) as stack:
        _print_stack(stack)
        stack.start_consumers(output_path=output.path)
        for number, phase in enumerate(phases, 1):
            stack.sandbox.reset()  # a phase must not inherit the previous one's calls, budget or faults
            problems += phase(stack, output, number=number)
    # Its own stack: quiet hours are wall-clock minutes, set when the stack is provisioned.
    problems += schedule_phase(output_path=output.path, settings=DEMO_SETTINGS, number=len(phases) + 1)
    # Its own stack too: support's lookups of a sent, a superseded and a cancelled push, read-only.
    # Its own stack: a fresh window for a peak of personal pushes with a shared fallback text.
    problems += fallback_phase(output_path=output.path, settings=DEMO_SETTINGS, number=len(phases) + 2)
    problems += status_phase(output_path=output.path, settings=DEMO_SETTINGS, number=len(phases) + 3)
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


def _redacted(url: str) -> str:
    scheme_host, _, _ = url.partition("/api/")
    return f"{scheme_host}/api/…(secret token)"


if __name__ == "__main__":
    sys.exit(main())
