"""Shared waiting through the emulated poller: a one-text blast on the bulk lane, sent one recipient per
message, arriving while every slot of the shared limiter is taken, leaves in the fewest calls, however many
batches it arrived in."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from imshop_push.adapters.rate_limit_dynamodb import LIMITER_ITEM_ID, DynamoDBRateLimiter
from imshop_push.domain.rate_limit import Permit, WindowPolicy
from imshop_push_local.aws_emulator import MotoServer
from imshop_push_local.stack import LocalStack, StackSettings

LIMIT = 2
WINDOW = 12.0  # far longer than publishing the blast takes here, as a minute is for a real producer
BLAST = 300
BATCH = 25  # twelve batches: without shared waiting, about one call each
TEXT = {"title": "Бонусы сгорают в воскресенье", "summary": "Потратьте их до конца недели"}


@pytest.fixture
def stack(moto_server: MotoServer) -> Iterator[LocalStack]:
    settings = StackSettings(
        rate_limit_requests=LIMIT,
        rate_limit_window_seconds=WINDOW,
        batch_size=BATCH,
        batching_window_seconds=0.3,
        function_timeout_seconds=WINDOW * 1.5,  # production's ratio
        visibility_timeout_seconds=int(WINDOW * 9),
    )
    with LocalStack(settings, moto=moto_server) as s:
        yield s


class OtherExecutions:
    """Executions of other contents that take every slot as soon as it frees, until the blast is published: the
    limiter stays busy however long publishing takes on this machine."""

    def __init__(self, stack: LocalStack) -> None:
        self._limiter = DynamoDBRateLimiter(
            stack.aws.client("dynamodb"),
            stack.aws.table_name,
            LIMITER_ITEM_ID,
            WindowPolicy(limit=LIMIT, window_seconds=WINDOW, margin_seconds=0.0, worst_case_call_seconds=1.0),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OtherExecutions:
        for _ in range(LIMIT):  # the window is full before the first request of the blast arrives
            self._take(time.time())
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            outcome = self._limiter.try_acquire(time.time())
            if isinstance(outcome, Permit):
                self._limiter.release(outcome, time.time())
            else:
                self._stop.wait(max(0.0, outcome.retry_at - time.time()))

    def _take(self, now: float) -> None:
        permit = self._limiter.try_acquire(now)
        assert isinstance(permit, Permit)
        self._limiter.release(permit, time.time())


@pytest.mark.cpu_heavy
def test_a_one_text_blast_arriving_while_the_limiter_is_busy_costs_the_lower_bound(stack: LocalStack) -> None:
    users = [f"7999{n:07d}" for n in range(BLAST)]
    stack.start_consumers()
    with OtherExecutions(stack):
        stack.publish([{"userIds": [u], "message": TEXT} for u in users], queue_url=stack.aws.bulk_queue.url)
    assert all(source.drain(timeout=120) for source in stack.sources)

    calls = [c for c in stack.sandbox.calls if c.body["message"]["title"] == TEXT["title"]]
    received = Counter(u for c in calls for u in c.body["userIds"])
    assert received == Counter(users), "every recipient exactly once"
    lower_bound = math.ceil(BLAST / 1000)
    # Typically the lower bound; a batch the machine delayed until a slot was free may still send its own share
    # before any wake is armed. One call per batch (12) is what waiting apart costs.
    assert len(calls) <= lower_bound + 1, [len(c.body["userIds"]) for c in calls]
    assert stack.dead_letters() == []
    assert stack.sandbox.violations == 0
