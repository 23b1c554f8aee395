"""One IMSHOP call: wait for a slot, record it, send it, and say what its answer means for its requests.

Right before the call, with nothing slow left between the look and the call, the slot is looked at again
(`stages/permits.py`): it must cover a worst-case call started now, and a bulk call must not start inside the
quiet hours."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.cancel import NotCancelled
from imshop_push.dispatch.stages.fallback import call_digests, count_fallen_back
from imshop_push.dispatch.stages.permits import Permits
from imshop_push.dispatch.stages.records import CallRecords
from imshop_push.dispatch.stages.supersede import LatestOnly
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Attempt, Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.masking import mask_recipients
from imshop_push.domain.model import CallOutcome, CallResult, StoreError
from imshop_push.domain.planning import PlannedCall
from imshop_push.domain.rate_limit import Denied, Permit
from imshop_push.domain.state import call_id, pack_digests

logger = logging.getLogger(__name__)

MAX_RATE_LIMITED_RETRIES = 3

CALL_METRIC = {
    CallResult.SENT: m.IMSHOP_CALLS_SENT,
    CallResult.FAILED: m.IMSHOP_CALLS_FAILED,
    CallResult.REJECTED: m.IMSHOP_CALLS_REJECTED,
    CallResult.AMBIGUOUS: m.IMSHOP_CALLS_AMBIGUOUS,
    CallResult.RATE_LIMITED: m.IMSHOP_CALLS_RATE_LIMITED,
}


class CallSender:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._records = CallRecords(ctx)
        self._permits = Permits(ctx, self._records)
        self._latest = LatestOnly(ctx)
        self._not_cancelled = NotCancelled(ctx)

    def send(
        self, batch: Batch, index: int, *, wait: bool = True, until: float | None = None
    ) -> Denied | list[PlannedCall]:
        """Send call `index`. Denied when out of budget; calls to send in its place (a rejected merged call,
        one request at a time); or [] when its requests know their fate. Without `wait`, Denied as soon as no
        slot is free; with `until`, when none is by then. Raises StoreError when the limiter cannot be asked."""
        ctx, attempt = self._ctx, batch.attempt
        call = attempt.calls[index]
        cid = call_id(attempt.id, index)
        owners = batch.owners(call)
        lane = ctx.lanes.of_call(t.message.event_source_arn for t in owners)
        for _ in range(MAX_RATE_LIMITED_RETRIES + 1):
            if (live_call := self._live_part(call, owners, attempt)) is None:
                _done(owners, index)
                return []
            permit = self._permits.take(batch, lane, wait=wait, until=until)
            if isinstance(permit, Denied):
                return permit
            if (live_call := self._still_wanted(call, owners, attempt, permit)) is None:
                _done(owners, index)
                return []
            call = live_call
            digests = pack_digests(call_digests(call, owners))
            try:
                self._records.pending(attempt, index, cid, digests)
            except StoreError:
                self._records.release(permit, ctx.clock())
                logger.exception("cannot record the call before sending: not sent")
                _retry(owners, "state store unavailable")
                return []
            for t in owners:
                t.recorded_in_attempt = True
            permit = self._permits.covering(permit, batch, lane)  # the last look: nothing slow comes after it
            starts_at = ctx.clock()
            if isinstance(permit, Denied):  # no slot covers the call now: the whole way again (slot, checks, record)
                blocked_until = permit.retry_at
                self._records.not_delivered(cid, digests)
                continue
            if (quiet_until := self._permits.quiet_until(lane, starts_at)) is not None:
                self._records.give_back(permit)
                self._records.not_delivered(cid, digests)
                return Denied(quiet_until)
            outcome = ctx.api.send(call.payload())
            finished_at = ctx.clock()
            ctx.metric(CALL_METRIC[outcome.result], 1)
            ctx.metric(m.per_lane(m.LANE_CALLS, lane), 1)
            _log_call(call, outcome)
            if outcome.result is CallResult.RATE_LIMITED:
                retry_after = outcome.retry_after_seconds
                blocked_until = finished_at + (retry_after if retry_after is not None else ctx.limits.window_seconds)
                self._records.release(permit, finished_at)
                self._records.not_delivered(cid, digests)
                ctx.limiter.block_until(blocked_until)
                continue
            # Proof of delivery first: the slot can wait, the record of what was sent cannot.
            splits = self._answer(owners, call, outcome, attempt=attempt, cid=cid, digests=digests, index=index)
            self._records.release(permit, finished_at)
            return splits
        # IMSHOP keeps throttling: that is waiting for budget, not a failure; the requests wait in the queue.
        return Denied(blocked_until)

    def _still_wanted(
        self, call: PlannedCall, owners: list[Track], attempt: Attempt, permit: Permit
    ) -> PlannedCall | None:
        """What is left of the call once its slot came: a newer request may have superseded some recipients,
        the wait may have outlived some requests, or a cancel may have come. Nothing left (or the store failing):
        the slot goes back."""
        try:
            self._latest.trim(call, owners)
            self._not_cancelled.drop(owners)
        except StoreError:
            self._records.release(permit, self._ctx.clock())
            raise
        live_call = self._live_part(call, owners, attempt)
        if live_call is None:
            self._records.release(permit, self._ctx.clock())
        return live_call

    def _answer(
        self,
        owners: list[Track],
        call: PlannedCall,
        outcome: CallOutcome,
        *,
        attempt: Attempt,
        cid: str,
        digests: bytes,
        index: int,
    ) -> list[PlannedCall]:
        if outcome.result is CallResult.SENT:
            self._ctx.metric(m.RECIPIENTS_SENT, len(call.recipients))
            self._records.sent(attempt, cid, digests)
            confirmed_at = self._ctx.clock()
            attempt.confirmed.append((call, confirmed_at))
            count_fallen_back(self._ctx, call, owners)
            in_call = set(call.recipients)
            for t in owners:
                t.reached_imshop = True
                t.confirmed.append((sum(r in in_call for r in t.remaining), confirmed_at))
            if call.isolated:
                attempt.isolation_sent.update((call.content, r) for r in call.recipients)
            _done(owners, index)
            return []
        if outcome.result is CallResult.AMBIGUOUS:
            _retry(owners, outcome.reason)  # the call record stays pending: a redelivery counts it
            for t in owners:
                t.reached_imshop = True
            return []
        self._records.not_delivered(cid, digests)
        if outcome.result is not CallResult.REJECTED:
            _retry(owners, outcome.reason)
            return []
        if len(owners) == 1:
            owners[0].dead_letter(outcome.reason)
            return []
        # A merged call refused: which request IMSHOP objects to cannot be told from one answer, and the others
        # must not share its fate. Each request gets its own call; a recipient delivered by one of them is not
        # sent again by the next (isolation_sent).
        wanted = {t.message_id: set(t.req.recipients) for t in owners}
        return [
            PlannedCall(
                call.content,
                tuple(r for r in call.recipients if r in wanted[t.message_id]),
                frozenset({t.message_id}),
                isolated=True,
            )
            for t in sorted(owners, key=lambda t: t.message_id)
        ]

    def _live_part(self, call: PlannedCall, owners: list[Track], attempt: Attempt) -> PlannedCall | None:
        """Drop recipients whose every requester expired while waiting (never sent late), was superseded or was
        cancelled, and, for a call split off a rejected merged call, recipients an earlier split already
        delivered."""
        now = datetime.fromtimestamp(self._ctx.clock(), UTC)
        live = [t for t in owners if t.fate is not Fate.CANCELLED and not t.expire_if_due(now)]
        if not live:
            return None
        recipients = call.recipients
        if len(live) < len(owners) or any(t.superseded for t in live):
            wanted = {r for t in live for r in t.req.recipients if r not in t.superseded}
            recipients = tuple(r for r in recipients if r in wanted)
        if call.isolated:
            recipients = tuple(r for r in recipients if (call.content, r) not in attempt.isolation_sent)
        if not recipients:
            return None
        if recipients is call.recipients:
            return call
        return PlannedCall(call.content, recipients, frozenset(t.message_id for t in live), call.isolated)


def _done(owners: list[Track], index: int) -> None:
    for t in owners:
        t.call_done(index)


def _retry(owners: list[Track], reason: str) -> None:
    for t in owners:
        t.retry(reason)


def _log_call(call: PlannedCall, outcome: CallOutcome) -> None:
    level = logging.INFO if outcome.result is CallResult.SENT else logging.WARNING
    logger.log(
        level,
        "IMSHOP call",
        extra={
            "outcome": outcome.result.value,
            "reason": outcome.reason,
            "status": outcome.status,
            "recipients": len(call.recipients),
            "requests": len(call.message_ids),
            "sample": mask_recipients(rid for _, rid in call.recipients),
        },
    )
