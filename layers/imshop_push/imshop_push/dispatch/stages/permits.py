"""The slot a call goes out on: one that covers the call from the moment it starts, and for a bulk call never one
inside the quiet hours.

A permit's reservation starts when the limiter decided, which may be well before the call starts (a slow acquire, a
stalled host); it covers a worst-case call only if the call starts by `Permit.start_by`. Right before the call the
caller asks `covering`: the permit, or a slot taken again at once (the late one given back unused), or none (the
call goes the whole way again: a slot, the checks, the record). A bulk call neither waits for a slot past the start
of the quiet hours nor is deferred to a moment inside them, and `quiet_until` is asked again right before it starts:
a request due when it was received may have waited for its slot until they began.
"""

from __future__ import annotations

import logging
import math

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.records import CallRecords
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.lanes import Lane
from imshop_push.domain.model import StoreError
from imshop_push.domain.rate_limit import Denied, Permit, wait_for_permit

logger = logging.getLogger(__name__)


class Permits:
    def __init__(self, ctx: Context, records: CallRecords) -> None:
        self._ctx = ctx
        self._records = records

    def take(self, batch: Batch, lane: Lane, *, wait: bool, until: float | None = None) -> Permit | Denied:
        """A permit, or when to try again. A bulk call neither waits into the quiet hours nor is deferred to a
        moment inside them: it is deferred to their end. `until`: no wait for a slot past it (a fallback's
        deadline, `stages/fallback.py`)."""
        ctx = self._ctx
        bulk = lane is Lane.BULK
        now = ctx.clock()
        if (quiet_until := self.quiet_until(lane, now)) is not None:
            return Denied(quiet_until)
        quiet_from = ctx.send_time.quiet_from(now) if bulk else math.inf  # inside them from that very instant
        latest_start = min(batch.deadline.last_call_start, math.nextafter(quiet_from, -math.inf), until or math.inf)
        if not wait:  # a slot now, or none
            outcome = Denied(now) if now > latest_start else ctx.limiter.try_acquire(now, lane)
        else:
            outcome = wait_for_permit(
                ctx.limiter,
                latest_start=latest_start,
                clock=ctx.clock,
                sleep=ctx.sleep,
                on_wait=lambda _s: ctx.metric(m.RATE_LIMIT_WAITS, 1),
                lane=lane,
            )
        if isinstance(outcome, Denied):
            return Denied(ctx.send_time.due(outcome.retry_at, None, bulk=bulk))
        return outcome

    def covering(self, permit: Permit, batch: Batch, lane: Lane) -> Permit | Denied:
        """A permit that covers a call started now: this one, or (a slow acquire, a stalled host: its reservation no
        longer covers a worst-case call from now) a slot taken again at once, without waiting, the checks just
        made being as fresh as the allowance asks. Denied: none at once; a permit not used was given back."""
        ctx = self._ctx
        now = ctx.clock()
        if now > batch.deadline.last_call_start:  # the checks ran into the time kept for history and settling
            self._records.give_back(permit)
            return Denied(now)
        if now <= permit.start_by:
            return permit
        logger.warning(
            "a rate-limit permit came %.3f s too late to cover a call: taking a slot again", now - permit.start_by
        )
        self._records.give_back(permit)
        if now > batch.deadline.last_call_start:
            return Denied(now)
        try:
            retaken = ctx.limiter.try_acquire(now, lane)
        except StoreError:
            logger.warning("cannot take a slot again now", exc_info=True)
            return Denied(now)
        if isinstance(retaken, Permit) and ctx.clock() > retaken.start_by:  # this acquire was slow too
            self._records.give_back(retaken)
            return Denied(now)
        return retaken

    def quiet_until(self, lane: Lane, at: float) -> float | None:
        """The end of the quiet hours a bulk call starting `at` would fall in; None when it may start."""
        quiet_hours = self._ctx.send_time.quiet_hours
        if lane is not Lane.BULK or quiet_hours is None:
            return None
        return quiet_hours.release(at)
