"""The dispatcher in one execution environment, on the in-process fakes, and the records it is given.

Time is a fake clock; the fake IMSHOP records every payload with the moment it was sent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import (
    WORST_CASE,
    FakeBacklog,
    FakeDeadLetters,
    FakeHistory,
    FakeImshop,
    FlakyLimiter,
    FlakyPendingPool,
    FlakyStateStore,
)

from fake_clock import FakeClock
from imshop_push.dispatch.dispatcher import Deadline, Dispatcher, Disposition, RecordResult
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import CallOutcome, CallResult, Deferral
from imshop_push.domain.observability import METRIC_NAMES
from imshop_push.domain.rate_limit import InProcessRateLimiter, WindowPolicy
from imshop_push.domain.send_time import SendTime
from imshop_push.domain.sqs_copies import requeue_entry
from imshop_push.entrypoints.runtime import invocation_deadline

QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-requests"
SHIPPED = {"title": "Заказ отправлен", "summary": "Заказ передан в доставку"}
BONUS = {"title": "Бонусы сгорают", "summary": "Осталось 3 дня"}

FAILED = CallOutcome(CallResult.FAILED, "IMSHOP answered 503: no error text", 503)
AMBIGUOUS = CallOutcome(CallResult.AMBIGUOUS, "no answer within the read timeout")


class Harness:
    """One execution environment: the dispatcher and its fakes, surviving between invocations."""

    def __init__(
        self,
        *,
        limit: int = 10,
        window: float = 60.0,
        margin: float = 1.2,
        max_recipients: int = 1000,
        dead_letters: bool = True,
        limiter_class: type[InProcessRateLimiter] = InProcessRateLimiter,
        bulk_queue_arn: str | None = None,
        history: bool = False,
        pending: bool = False,
        pending_pool: FlakyPendingPool | None = None,
        send_time: SendTime | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.api = FakeImshop(self.clock)
        self.policy = WindowPolicy(limit, window, margin, WORST_CASE)
        self.limiter = limiter_class(self.policy)
        self.state = FlakyStateStore()
        self.dlq = FakeDeadLetters()
        self.backlog = FakeBacklog()
        self.metrics: Counter[str] = Counter()
        self.history = FakeHistory(self.clock)
        self.pool = pending_pool or FlakyPendingPool()
        self._collaborators: dict[str, Any] = {
            "api": self.api,
            "limiter": self.limiter,
            "state": self.state,
            "dead_letters": self.dlq if dead_letters else None,
            "backlog": self.backlog,
            "metric": self.metric,
            "max_recipients": max_recipients,
            "rate_limit_requests": limit,
            "rate_limit_window_seconds": window,
            "clock": self.clock,
            "sleep": self.clock.sleep,
            "bulk_queue_arn": bulk_queue_arn,
            "history": self.history if history else None,
            "pending": self.pool if pending or pending_pool else None,
            "send_time": send_time,
        }
        self.dispatcher = self.execution()
        self.deadlines: list[Deadline] = []

    def execution(self, **changes: Any) -> Dispatcher:
        """Another execution environment on the same IMSHOP, limiter, state, queues and pool (a redeploy, a
        concurrent execution), with `changes` to its collaborators or settings."""
        return Dispatcher(**(self._collaborators | changes))

    def metric(self, name: str, value: int) -> None:
        assert name in METRIC_NAMES, f"metric {name!r} is not in observability.METRIC_NAMES"
        assert isinstance(value, int)
        assert value >= 0
        self.metrics[name] += value

    def run(self, *messages: InboundMessage, seconds: float = 90.0) -> dict[str, Disposition]:
        """One invocation with `seconds` left, as Runtime computes the deadline."""
        return {mid: r.disposition for mid, r in self.results(*messages, seconds=seconds).items()}

    def results(self, *messages: InboundMessage, seconds: float = 90.0) -> dict[str, RecordResult]:
        now = self.clock()
        hard = now + seconds
        deadline = invocation_deadline(hard, seconds, records=len(messages), worst_case_call_seconds=WORST_CASE)
        self.deadlines.append(deadline)
        results = self.dispatcher.dispatch(list(messages), deadline=deadline)
        assert set(results) == {m.message_id for m in messages}, "one result per record, no more, no less"
        return results


def body(
    *,
    users: Sequence[str] = (),
    installs: Sequence[str] = (),
    message: dict[str, str] | None = None,
    deeplink: str | None = None,
    key: str | None = None,
    expires_at: float | None = None,
) -> str:
    document: dict[str, Any] = {}
    if users:
        document["userIds"] = list(users)
    if installs:
        document["installIds"] = list(installs)
    document["message"] = message or SHIPPED
    if deeplink is not None:
        document["deeplink"] = deeplink
    if key is not None:
        document["idempotencyKey"] = key
    if expires_at is not None:
        document["expiresAt"] = datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(document, ensure_ascii=False)


def msg(message_id: str, text: str, **attributes: str) -> InboundMessage:
    return InboundMessage(
        message_id=message_id,
        body=text,
        event_source_arn=QUEUE_ARN,
        message_attributes={name: {"dataType": "String", "stringValue": value} for name, value in attributes.items()},
    )


def phones(count: int, start: int = 0) -> list[str]:
    return [f"7999{n:07d}" for n in range(start, start + count)]


def requeued_copy(deferral: Deferral, new_id: str) -> InboundMessage:
    """What SQS hands back after the backlog sink re-enqueued a deferral, built by sqs_outbox itself."""
    entry = requeue_entry(deferral)
    return InboundMessage(new_id, entry["MessageBody"], deferral.message.event_source_arn, 1, lambda_attributes(entry))


def lambda_attributes(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """SendMessage's attribute shape as Lambda delivers it."""
    return {
        name: {"dataType": value["DataType"], "stringValue": value["StringValue"]}
        for name, value in entry.get("MessageAttributes", {}).items()
    }


def drain(h: Harness, messages: list[InboundMessage], *, seconds: float, rounds: int = 30) -> None:
    """Invoke until the backlog is empty: each deferral comes back as SQS would hand it back, after its delay."""
    pending = messages
    for round_ in range(rounds):
        before = len(h.backlog.received)
        results = h.results(*pending, seconds=seconds)
        assert not any(r.disposition.is_failure for r in results.values()), results
        deferred = h.backlog.received[before:]
        assert {d.message.message_id for d in deferred} == {
            mid for mid, r in results.items() if r.disposition is Disposition.DEFERRED
        }
        if not deferred:
            return
        pending = [requeued_copy(d, f"{d.message.message_id}/{round_}") for d in deferred]
        h.clock.now += max(d.delay_seconds for d in deferred)
    pytest.fail("the backlog never drained")


def flaky_limiter(h: Harness) -> FlakyLimiter:
    assert isinstance(h.limiter, FlakyLimiter)
    return h.limiter
