"""Hold: a request that is not due yet (its sendAt, or the bulk lane's quiet hours) goes back to its queue.

Held by chained delayed re-enqueues: each hop is a new SQS message (a fresh receive count, so waiting never
walks a request towards the DLQ) delayed by the whole seconds left, capped at SQS's 15 minutes. SQS delays
are whole seconds, so the last hop comes back up to a second early: less than `INLINE_WAIT_SECONDS` before
it is due, the execution waits the rest itself, so a request is sent to the millisecond of its sendAt, never
before, and never a second late for rounding. It runs before the claim: a held request holds no lease and
writes no progress, and DropExpired runs before it on every hop, so `expiresAt` still applies.
The copy carries what a deferral copy carries (the key when it was the SQS message id, the collapse order).

A held request with a collapseKey takes part in latest wins while it waits: before each hop it records its
version (`record_held`), so an older request of its key that arrives meanwhile is not sent to the recipients
they share. One whose cancel is known by then is dropped instead, without recording: a request cancelled
before it came takes no part, as at its claim. When neither can be asked (the state table unavailable), it
goes back to SQS rather than being held unrecorded.

When quiet hours end, the held bulk requests all come back at once; the shared limiter gives the transactional
lane the next free slot and the bulk lane's MaximumConcurrency bounds its executions, so the release does not
starve the transactional lane, and requests of one text arriving together share calls.
"""

from __future__ import annotations

import logging
import math

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.cancel import count_cancelled
from imshop_push.dispatch.stages.fallback import carried
from imshop_push.dispatch.stages.supersede import order, record_held
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.lanes import Lane
from imshop_push.domain.model import Deferral, StoreError
from imshop_push.domain.send_time import rfc3339
from imshop_push.domain.sqs_copies import SQS_MAX_DELAY_SECONDS, held_until_of
from imshop_push.domain.status_record import request_status, to_ms

logger = logging.getLogger(__name__)

INLINE_WAIT_SECONDS = 1.0  # SQS's delay granularity


class Hold:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        now = self._ctx.clock()
        not_due: list[tuple[Track, float]] = []
        soon = now
        for track in batch.parsed():
            if track.fate is not Fate.RECEIVED:
                continue
            if (problem := self._ctx.send_time.horizon_problem(now, track.req.send_at)) is not None:
                track.dead_letter(problem)
                continue
            due = self._due(track, now)
            if due - now >= INLINE_WAIT_SECONDS:
                not_due.append((track, due))
            else:
                soon = max(soon, due)
        self._take_part([t for t, _ in not_due if t.req.collapse_key is not None], now)
        held: list[Track] = []
        for track, due in not_due:
            reason = "not due before its sendAt" if due == _send_at(track) else "held for the quiet hours"
            track.hold(due, f"{reason}: {rfc3339(due)}")  # unless cancelled or sent back to SQS just now
            if track.fate is Fate.HELD:
                held.append(track)
        if held:
            self._requeue(held, now)
        if soon > now:  # less than a second: cheaper and more precise than another hop
            self._ctx.sleep(soon - now)

    def _take_part(self, collapsing: list[Track], now: float) -> None:
        """Latest wins for requests about to be held: cancelled ones are dropped, the others record their
        versions before their copies are written (a copy written unrecorded could let an older one through)."""
        if not collapsing:
            return
        try:
            cancelled = self._ctx.state.cancelled({t.req.idempotency_key for t in collapsing}, now=now)
            gone = [t for t in collapsing if t.req.idempotency_key in cancelled]
            record_held(self._ctx, [t for t in collapsing if t.req.idempotency_key not in cancelled], now)
        except StoreError:
            logger.exception("cannot record the collapseKey versions of held requests: they go back to SQS")
            for track in collapsing:
                track.retry("state store unavailable")
            return
        count_cancelled(self._ctx, gone)
        for track in gone:
            track.cancelled()

    def _due(self, track: Track, now: float) -> float:
        bulk = self._ctx.lanes.of(track.message.event_source_arn) is Lane.BULK
        return self._ctx.send_time.due(now, track.req.send_at, bulk=bulk)

    def _requeue(self, held: list[Track], now: float) -> None:
        recorded = self._record(held, now)
        deferrals = [
            Deferral(
                t.message,
                min(SQS_MAX_DELAY_SECONDS, max(1, math.floor((t.retry_at or now) - now))),
                t.req.idempotency_key,
                t.req.key_is_message_id,
                order(t, now),
                held_until_ms=to_ms(t.retry_at or now) if t.message_id in recorded else None,
                fallback=carried(t, now),
            )
            for t in held
        ]
        failed = self._ctx.backlog.requeue(deferrals)
        for track in held:
            if track.message_id in failed:
                track.give_back("could not re-enqueue a held request")
        self._ctx.metric(m.REQUESTS_HELD, len(held) - len(failed))

    def _record(self, held: list[Track], now: float) -> set[str]:
        """The status item of each request held for the first time (or until another time): its copy carries the
        due time, so its later hops write nothing. Not written, the copy carries none, and the next hop tries
        again; holding never waits for it."""
        first = [t for t in held if held_until_of(t.message) != to_ms(t.retry_at or now)]
        records = [request_status(t.req, now=now, held_until=t.retry_at or now) for t in first]
        try:
            self._ctx.state.record_status(records, now=now)
        except StoreError:
            logger.exception("cannot record that requests are held: their next hop tries again")
            return {t.message_id for t in held if t not in first}
        return {t.message_id for t in held}


def _send_at(track: Track) -> float | None:
    send_at = track.req.send_at
    return send_at.timestamp() if send_at is not None else None
