"""Each lane's poison to its own dead-letter queue: the sink the dispatcher writes to, built from one per lane."""

from __future__ import annotations

from collections.abc import Sequence

from imshop_push.dispatch.ports import DeadLetterSink
from imshop_push.domain.lanes import Lane, Lanes
from imshop_push.domain.model import Poison


class DeadLettersByLane:
    """Poison the dispatcher itself dead-letters goes to its own lane's DLQ, as SQS's redrive policy sends what
    exceeds maxReceiveCount: a redrive of the bulk DLQ then returns campaigns to the bulk lane, never ahead of
    the order statuses waiting in the transactional one."""

    def __init__(self, lanes: Lanes, *, transactional: DeadLetterSink, bulk: DeadLetterSink) -> None:
        self._lanes = lanes
        self._sinks = {Lane.TRANSACTIONAL: transactional, Lane.BULK: bulk}

    def send(self, poison: Sequence[Poison]) -> set[str]:
        by_lane: dict[Lane, list[Poison]] = {}
        for p in poison:
            by_lane.setdefault(self._lanes.of(p.message.event_source_arn), []).append(p)
        return set().union(*(self._sinks[lane].send(items) for lane, items in by_lane.items()))


def dead_letters_by_lane(
    lanes: Lanes, *, transactional: DeadLetterSink | None, bulk: DeadLetterSink | None
) -> DeadLetterSink | None:
    """A lane without a DLQ of its own shares the other lane's (the stack before lanes had one DLQ)."""
    if transactional is None or bulk is None:
        return transactional or bulk
    return DeadLettersByLane(lanes, transactional=transactional, bulk=bulk)
