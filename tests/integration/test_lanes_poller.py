"""Two lanes, one limit, through the emulated poller: both event sources of the template, time-scaled, feed one
limiter in the state table. A bulk backlog far above the limit drains while order statuses arrive one at a
time in the transactional queue; each takes the next slot, whatever the bulk executions ask meanwhile.

The guarantee is about waiting for budget, so it is judged in slots rather than seconds (a busy machine
stretches both the poller and the calls): the bulk calls that reached IMSHOP between a transactional request's
publication and its arrival are the slots it waited for. One window's worth (the limit) for >= 90 % of them,
never more than two windows' worth. A limit of one call per window makes every slot count: without the
priority, each transactional caller would race the bulk executions for every opening, and lose most.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from imshop_push_local.aws_emulator import MotoServer
from imshop_push_local.demo_lanes import (
    BULK_TITLE,
    Overtaking,
    bulk_backlog,
    is_bulk,
    order_status,
    overtaking,
    push_through,
)
from imshop_push_local.stack import LocalStack, StackSettings

LIMIT = 1
WINDOW = 2.0
BULK_WINDOWS = 14  # the bulk backlog, in windows at the limit: it outlasts the transactional requests
TRANSACTIONAL = 10
POISON = "{not json"

# The template's own per-lane event sources (batch size, batching window, concurrency), time-scaled; a function
# timeout in production's ratio to the window (90 s / 60 s), plus room for one window of waiting in-process.
SETTINGS = StackSettings(
    rate_limit_requests=LIMIT,
    rate_limit_window_seconds=WINDOW,
    batch_size=None,
    batching_window_seconds=None,
    function_timeout_seconds=6.0,
    visibility_timeout_seconds=36,
    http_timeout_seconds=0.3,
    connect_timeout_seconds=0.2,
)


@pytest.fixture
def stack(moto_server: MotoServer) -> Iterator[LocalStack]:
    with LocalStack(SETTINGS, moto=moto_server) as s:
        yield s


def test_transactional_requests_take_the_next_slots_while_a_bulk_backlog_drains(stack: LocalStack) -> None:
    backlog = bulk_backlog(BULK_WINDOWS * LIMIT)
    stack.publish([*backlog, POISON], queue_url=stack.aws.bulk_queue.url)
    stack.start_consumers()
    assert stack.sandbox.wait_for_calls(LIMIT, timeout=60), "the bulk backlog never started"

    published: dict[str, tuple[float, float | None]] = {}
    for n in range(TRANSACTIONAL):
        status = order_status(n)
        published[status["message"]["title"]] = push_through(stack, status, timeout=20 * WINDOW)
        # Transactional demand well below the limit, at a different phase of the bulk slots each time.
        threading.Event().wait(WINDOW * (0.5 + 0.25 * (n % 3)))
    assert all(source.drain(timeout=BULK_WINDOWS * WINDOW * 3 + 60) for source in stack.sources)

    calls = stack.sandbox.calls
    seen: list[Overtaking] = [overtaking(calls, title, p, a) for title, (p, a) in published.items()]
    story = [(o.title[:10], o.bulk_between, None if o.latency is None else round(o.latency, 2)) for o in seen]
    assert all(o.arrived_at is not None for o in seen), story
    assert all(o.bulk_after for o in seen[: TRANSACTIONAL // 2]), f"the backlog drained too soon: {story}"
    waited_long = [o for o in seen if o.bulk_between > LIMIT]
    assert len(waited_long) <= TRANSACTIONAL // 10, f"more than one window's worth of bulk slots: {story}"
    assert max(o.bulk_between for o in seen) <= 2 * LIMIT, f"more than two windows' worth of bulk slots: {story}"

    assert stack.sandbox.violations == 0, "the limit holds for both lanes together"
    delivered = stack.sandbox.delivered()
    bulk_delivered = [n for (title, *_), n in delivered.items() if title.startswith(BULK_TITLE)]
    assert bulk_delivered == [1] * len(backlog), "every bulk recipient exactly once: the backlog never dead-letters"
    assert sum(is_bulk(c) for c in calls if c.delivered) == len(backlog)
    assert len(delivered) == len(backlog) + TRANSACTIONAL
    assert stack.dead_letters() == [], "nothing valid is dead-lettered, nothing bulk goes to the transactional DLQ"
    [dead] = _receive_all(stack, stack.aws.bulk_dead_letter_queue.url)
    assert dead["Body"] == POISON, "poison from the bulk lane goes to the bulk lane's DLQ"


def _receive_all(stack: LocalStack, queue_url: str) -> list[dict[str, object]]:
    sqs = stack.aws.client("sqs")
    found: list[dict[str, object]] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    ):
        found += messages
    return found
