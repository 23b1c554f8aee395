"""Shared waiting through the emulated poller: a one-text blast on the bulk lane, sent one recipient per
message, arriving while every slot of the shared limiter is taken, leaves in the fewest calls, however many
batches it arrived in."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import pytest

from imshop_push_local.aws_emulator import MotoServer
from imshop_push_local.other_traffic import OtherTraffic
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


@pytest.mark.cpu_heavy
def test_a_one_text_blast_arriving_while_the_limiter_is_busy_costs_the_lower_bound(stack: LocalStack) -> None:
    users = [f"7999{n:07d}" for n in range(BLAST)]
    stack.start_consumers()
    with OtherTraffic(stack, limit=LIMIT, window=WINDOW):  # other executions take every slot
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
