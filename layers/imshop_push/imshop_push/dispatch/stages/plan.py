"""Plan: the fewest calls for what the claimed requests still have to send (merge equal content, split at the
recipient limit). Pure: `planning.plan_calls` does the work; this stage only hands the calls to the batch."""

from __future__ import annotations

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.fallback import adopt_carried
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate
from imshop_push.domain.planning import Delivery, plan_calls


class Plan:
    def __init__(self, ctx: Context) -> None:
        self._max_recipients = ctx.limits.max_recipients
        self._clock = ctx.clock

    def __call__(self, batch: Batch) -> None:
        waiting = [t for t in batch.claimed.values() if t.fate is Fate.CLAIMED]
        adopt_carried(waiting, self._clock())  # a switched request is planned under its fallback's text
        deliveries = [Delivery(t.message_id, t.text, t.remaining) for t in waiting]
        for track in waiting:
            track.plan()
        batch.add_calls(plan_calls(deliveries, max_recipients=self._max_recipients))
