"""Two lanes into one vendor limit: transactional (what a customer waits for) and bulk (marketing, reminders).

A record's lane is the queue it came from: the queue whose ARN is `BULK_QUEUE_ARN` is bulk, every other
queue is transactional, so an unset or mistyped variable can only make bulk traffic *more* urgent, never
delay an order status behind a campaign. Both lanes share the one rate limiter; the limiter itself gives
the transactional lane the next free slot (`rate_limit.decide`). Each lane has its own dead-letter queue, so
redriving one sends its poison back to the lane it came from (`dead_letters_by_lane.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


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
