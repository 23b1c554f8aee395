"""Two lanes into one vendor limit: transactional (what a customer waits for) and bulk (marketing, reminders).

A record's lane is the queue it came from: the queue whose ARN is `BULK_QUEUE_ARN` is bulk, every other
queue is transactional, so an unset or mistyped variable can only make bulk traffic *more* urgent, never
delay an order status behind a campaign. Both lanes share the one rate limiter; the limiter itself gives
the transactional lane the next free slot (`rate_limit.decide`). Each lane has its own dead-letter queue, so
redriving one sends its poison back to the lane it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imshop_push.model import Poison
    from imshop_push.ports import DeadLetterSink


class Lane(StrEnum):
    TRANSACTIONAL = "transactional"
    BULK = "bulk"

    @property
    def metric_prefix(self) -> str:
        return "Transactional" if self is Lane.TRANSACTIONAL else "Bulk"


@dataclass(frozen=True, slots=True)
class Lanes:
    """Which queue is which lane, parsed once per execution environment."""

    bulk_queue_arn: str | None = None

    def of(self, event_source_arn: str) -> Lane:
        if self.bulk_queue_arn is not None and event_source_arn == self.bulk_queue_arn:
            return Lane.BULK
        return Lane.TRANSACTIONAL

    def of_call(self, event_source_arns: Iterable[str]) -> Lane:
        """A call that carries any transactional request is transactional: it must not wait behind bulk."""
        arns = list(event_source_arns)
        return Lane.BULK if arns and all(self.of(arn) is Lane.BULK for arn in arns) else Lane.TRANSACTIONAL


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
