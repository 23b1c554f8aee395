"""Send: the planned calls one by one, each through the shared rate limiter, until they are done or the
budget of this invocation is spent (then the rest waits in the backlog). A partial call of a content that is
still arriving waits with it in the pending pool instead (`stages/join_waiting.py`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.call import CallSender
from imshop_push.dispatch.stages.fallback import FallbackSwitch
from imshop_push.dispatch.stages.join_waiting import JoinWaiting
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.model import StoreError
from imshop_push.domain.planning import PlannedCall
from imshop_push.domain.rate_limit import Denied
from imshop_push.domain.sqs_copies import SQS_MAX_DELAY_SECONDS

logger = logging.getLogger(__name__)


class Send:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._sender = CallSender(ctx)
        self._join = JoinWaiting(ctx)
        self._fallback = FallbackSwitch(ctx)

    def __call__(self, batch: Batch) -> None:
        calls = batch.attempt.calls
        index = 0
        while index < len(calls):
            if self._join.holds(batch, index):
                index += 1
                continue
            try:
                outcome = self._send(batch, index)
            except StoreError:
                logger.exception("the state table is unavailable: the rest goes back to SQS")
                for rest in calls[index:]:
                    for track in batch.owners(rest):
                        track.retry("state store unavailable")
                return
            if isinstance(outcome, Denied) and self._pooled_fallback(batch, index):
                owners = batch.owners(calls[index])
                for track in owners:  # in its fallback's group, woken ahead of the opening: one call a window
                    track.defer(self._fallback.wake_turn(owners, outcome.retry_at))
                index += 1
                continue
            if isinstance(outcome, Denied):
                self._defer_rest(batch, calls[index:], outcome)
                return
            if outcome:
                batch.replace_call(index, outcome)
            index += 1

    def _send(self, batch: Batch, index: int) -> Denied | list[PlannedCall]:
        """A call that may switch to a fallback first asks for a slot without waiting: denied, the requests whose
        turn comes too late are switched (`stages/fallback.py`), and what is left of the call waits for a slot,
        until its requests' deadline at most when each of them has a fallback."""
        if self._fallback.may_switch(batch, index):
            outcome = self._sender.send(batch, index, wait=False)
            if not isinstance(outcome, Denied):
                return outcome
            self._fallback.switch_late(batch, index, outcome.retry_at)
            # Estimated in time: it waits for its slot until its deadline at most, then it is late for sure.
            if (until := self._fallback.wait_until(batch, index)) is not None:
                outcome = self._sender.send(batch, index, until=until)
                if not isinstance(outcome, Denied) or outcome.retry_at <= until:
                    return outcome
                self._fallback.switch_late(batch, index, outcome.retry_at)
        return self._sender.send(batch, index, wait=not self._pooled_fallback(batch, index))

    def _pooled_fallback(self, batch: Batch, index: int) -> bool:
        """A call of requests switched to their fallback's text in this batch: a free slot now, or it waits with
        the rest of that text in the pool rather than in process (each batch's would cost a call). A wake's are
        sent as any call; without a shared pool, it waits in process."""
        pool = self._ctx.pending
        if pool is None or not pool.shared:
            return False
        owners = batch.owners(batch.attempt.calls[index])
        return bool(owners) and all(t.switched and t.message_id not in batch.taken for t in owners)

    def _defer_rest(self, batch: Batch, calls: Sequence[PlannedCall], denied: Denied) -> None:
        """Out of budget for this invocation: spread the rest over the windows in which their turn comes.

        The n-th call still waiting cannot start before `retry_at + (n // limit) windows`; delaying its
        requests until then keeps them from being received again (and re-enqueued again) for nothing.
        """
        limit = max(1, self._ctx.limits.rate_limit_requests)
        now = self._ctx.clock()
        for position, call in enumerate(calls):
            turn = denied.retry_at + (position // limit) * self._ctx.limits.window_seconds
            owners = batch.owners(call)
            for track in owners:
                track.defer(self._fallback.wake_turn(owners, turn))
            lane = self._ctx.lanes.of_call(t.message.event_source_arn for t in owners)
            self._ctx.metric(m.per_lane(m.LANE_CALLS_DEFERRED, lane), 1)
            # As long as SQS will hold it before it is received again (its delay is capped).
            waits_ms = round(min(max(0.0, turn - now), SQS_MAX_DELAY_SECONDS) * 1000)
            self._ctx.metric(m.per_lane(m.LANE_DEFERRED_CALL_MS, lane), waits_ms)


def _switched_fresh(batch: Batch, index: int) -> bool:
    """A call of requests switched to their fallback's text in this batch: a free slot now, or it waits with the
    rest of that text rather than in process (each batch's would cost a call). A wake's are sent as any."""
    owners = batch.owners(batch.attempt.calls[index])
    return bool(owners) and all(t.switched and t.message_id not in batch.taken for t in owners)
