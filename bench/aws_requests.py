"""Figure 10: the AWS requests (SQS + DynamoDB) the function makes per 1,000 notification requests, beside the same
scenario run on another commit's template, layer and function code (--baseline-ref, default 9f1993d: main before
lanes, supersede, shared waiting and sendAt).

Both runs use this checkout's local stack (moto server, emulated poller, IMSHOP sandbox, time-scaled like the
demo); only the template and the code under test differ. The emulator counts requests by the caller's User-Agent:
the function's clients carry AWS_SDK_UA_APP_ID, so provisioning, publishing (done before the pollers start) and
the bench's draining are left out, and the poller's ReceiveMessage / DeleteMessageBatch are shown apart (Lambda's
event source mapping polls in its own way; the deleted messages still tell how many deliveries the run cost).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imshop_push_local.aws_emulator import MotoServer

from bench.common import Console, Figure
from bench.stack_runs import (
    FUNCTION_APP_ID,
    Requests,
    checkout,
    consumers,
    drain,
    function_requests,
    stack_settings,
)

BASELINE_REF = "9f1993d"
TARGET_RATIO = 1.5  # the new stages must not multiply the bill
DRAIN_TIMEOUT_SECONDS = 300.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    requests: int  # single-recipient requests, queued before the pollers start (see bench/blast.py for why)
    texts: int  # distinct texts, each sent to a run of consecutive requests (a producer publishes a text's users)


# Ten texts need about ten to twenty calls (batches of 100 hold one or two texts): two windows at most, little
# waiting. A hundred texts need a hundred calls, ten windows: requests wait for budget and are deferred.
SCENARIOS = (
    Scenario("1,000 requests of 10 texts", requests=1_000, texts=10),
    Scenario("1,000 requests of 100 texts (backlog)", requests=1_000, texts=100),
)


@dataclasses.dataclass(frozen=True)
class Run:
    function: Requests
    poller: Requests
    calls: int
    duplicates: int
    missing: int
    drained: bool


def _bodies(scenario: Scenario) -> list[dict[str, Any]]:
    return [
        {
            "userIds": [f"7911{n:07d}"],
            "message": {"title": f"Text {n * scenario.texts // scenario.requests}", "summary": "AWS requests"},
        }
        for n in range(scenario.requests)
    ]


def _run(moto: MotoServer, scenario: Scenario, template: Path | None) -> Run:
    from imshop_push_local.stack import LocalStack

    with LocalStack(stack_settings(template), moto=moto) as stack:
        bodies = _bodies(scenario)
        stack.publish(bodies)  # the transactional queue: the only queue a baseline before lanes has
        before = moto.requests.snapshot()
        with consumers(stack) as sources:
            drained = drain(sources, DRAIN_TIMEOUT_SECONDS)
            requests = moto.requests.snapshot() - before
        delivered = stack.sandbox.delivered()
        calls = sum(1 for c in stack.sandbox.calls if c.delivered)
    users = collections.Counter(recipient for (*_, recipient), n in delivered.items() for _ in range(n))
    function = function_requests(requests)
    ours = collections.Counter({k: n for k, n in requests.items() if k[0] == FUNCTION_APP_ID})
    return Run(
        function=function,
        poller=ours - function,
        calls=calls,
        duplicates=sum(1 for n in users.values() if n > 1),
        missing=sum(1 for b in bodies if b["userIds"][0] not in users),
        drained=drained,
    )


def _per_1000(requests: Requests, scenario: Scenario) -> float:
    billed = sum(n for (_, service, _), n in requests.items() if service in ("sqs", "dynamodb"))
    return billed * 1000 / scenario.requests


def _breakdown(label: str, run: Run, scenario: Scenario) -> list[str]:
    ops = " ".join(f"{service}:{op} {n}" for (_, service, op), n in sorted(run.function.items()))
    poll = " ".join(f"{op} {n}" for (_, _, op), n in sorted(run.poller.items()))
    return [
        f"{label}: {_per_1000(run.function, scenario):.0f} per 1,000; {ops}",
        f"{label}: poller {poll}; IMSHOP calls {run.calls}; drained {run.drained}",
    ]


def _figure(scenario: Scenario, now: Run, then: Run | None, ref: str | None) -> Figure:
    value = _per_1000(now.function, scenario)
    baseline = _per_1000(then.function, scenario) if then else math.nan
    problems = [
        f"{label}: {text}"
        for label, run in (("now", now), (ref, then))
        if run is not None
        for text in (
            *([f"{run.missing} recipients never delivered"] if run.missing else []),
            *([f"{run.duplicates} recipients delivered twice"] if run.duplicates else []),
            *([] if run.drained else ["not drained"]),
        )
    ]
    ratio = value / baseline if then else math.nan
    if then and ratio > TARGET_RATIO:
        problems.append(f"{ratio:.2f}x the requests of {ref}")
    details = _breakdown("now", now, scenario) + (_breakdown(str(ref), then, scenario) if then else [])
    return Figure(
        name=f"AWS requests per 1,000, {scenario.name}",
        value=value,
        value_text=f"{value:.0f} SQS + DynamoDB",
        baseline_text=f"{baseline:.0f} at {ref}" if then else "no baseline (--baseline-ref none)",
        ratio=ratio,
        target=f"≤ {TARGET_RATIO:g}x",
        passed=not problems,
        why="; ".join(problems),
        details=details,
    )


def aws_requests(console: Console, moto: MotoServer, baseline_ref: str | None) -> list[Figure]:
    figures = []
    for scenario in SCENARIOS:
        console.progress(f"AWS requests: {scenario.name}, this checkout")
        now = _run(moto, scenario, None)
        then = None
        if baseline_ref:
            console.progress(f"AWS requests: {scenario.name}, {baseline_ref}'s template and code")
            with checkout(baseline_ref) as tree:
                then = _run(moto, scenario, tree / "template.yaml")
        figures.append(_figure(scenario, now, then, baseline_ref))
    return figures
