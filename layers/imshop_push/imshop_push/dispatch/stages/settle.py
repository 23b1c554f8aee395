"""Settle: write where every claimed request stands (done, or its attempts so far), then hand the deferred
ones to the backlog (a group of one content to the pending pool, `stages/pending.py`). Whatever cannot be
written goes back to SQS, so nothing is dropped silently."""

from __future__ import annotations

import logging

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.fallback import FallbackSwitch, carried
from imshop_push.dispatch.stages.intake import count_expired
from imshop_push.dispatch.stages.pending import Pooling
from imshop_push.dispatch.stages.supersede import order
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Attempt, Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import Deferral, StoreError
from imshop_push.domain.sqs_copies import delay_until, held_until_of
from imshop_push.domain.state import CallStatus, Settlement
from imshop_push.domain.status_record import Outcome, Report, SoFar, request_status, to_ms

logger = logging.getLogger(__name__)


class Settle:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._pooling = Pooling(ctx)
        self._fallback = FallbackSwitch(ctx)

    def __call__(self, batch: Batch) -> None:
        unclaimed = [t for t in batch.tracks if t.fate is Fate.DEFERRED and t.message_id not in batch.claimed]
        if not batch.claimed:
            self._requeue(batch, unclaimed)  # waiting to fill, unclaimed: nothing of them to settle
            return
        self._record_unrecorded(batch.attempt)
        tracks = list(batch.claimed.values())
        for track in tracks:
            if track.fate is Fate.PLANNED:  # no call left it anything to do: the safest answer is to wait
                track.defer(self._ctx.clock())
            elif track.fate is Fate.EXPIRED:
                count_expired(self._ctx, track)
        try:
            now = self._ctx.clock()
            self._ctx.state.settle([_settlement(t, batch.attempt.id, now) for t in tracks], now=now)
        except StoreError:
            logger.exception("cannot settle state: requests go back to SQS (progress is kept)")
            for track in tracks:
                track.give_back("state store unavailable")
            self._requeue(batch, unclaimed)
            return
        self._requeue(batch, [*unclaimed, *(t for t in tracks if t.fate is Fate.DEFERRED)])

    def _record_unrecorded(self, attempt: Attempt) -> None:
        for cid, digests in attempt.unrecorded_sent:
            try:
                self._ctx.state.mark_call(cid, digests, status=CallStatus.SENT, now=self._ctx.clock())
            except StoreError:
                logger.exception("a confirmed call stays unrecorded: a retry of an unfinished request resends it")

    def _requeue(self, batch: Batch, deferred: list[Track]) -> None:
        if not deferred:
            return
        now = self._ctx.clock()
        self._fallback.switch_deferred(batch, deferred)
        deferrals = []
        for track in deferred:
            retry_at = track.retry_at if track.retry_at is not None else now
            request = track.req
            deferral = Deferral(
                track.message,
                delay_until(retry_at, now),
                request.idempotency_key,
                request.key_is_message_id,
                order(track, now),
                fallback=carried(track, now),
            )
            deferrals.append((track, deferral))
        copies = self._pooling.route(batch, deferrals)
        failed = self._ctx.backlog.requeue([d for _, d in copies])
        for track, _ in copies:
            if track.message_id in failed:
                track.give_back("could not re-enqueue backlog")
        # Counted once written (a copy in the queue or an item in the pool): what went back to SQS instead is
        # counted when a later receive defers it.
        self._ctx.metric(m.REQUESTS_DEFERRED, sum(t.fate is Fate.DEFERRED for t in deferred))


_OUTCOMES = {
    Fate.SENT: Outcome.SENT,
    Fate.SUPERSEDED: Outcome.SUPERSEDED,
    Fate.DEFERRED: Outcome.WAITING,
    Fate.EXPIRED: Outcome.EXPIRED,
    Fate.DEAD_LETTERED: Outcome.DEAD_LETTERED,
    Fate.CANCELLED: Outcome.CANCELLED,
}


def _settlement(track: Track, attempt_id: str, now: float) -> Settlement:
    """Expired is not done: a producer's retry with a later expiresAt may still send it. A done request keeps
    its attempts: a status lookup finds its calls through them."""
    request = track.req
    done = track.fate in (Fate.SENT, Fate.SUPERSEDED)  # superseded: nothing of it is ever to be sent
    attempts = (*(track.history or ()), attempt_id) if track.recorded_in_attempt else track.history or ()
    record = None
    if track.so_far is None and held_until_of(track.message) is None:  # first settlement; a held one has its item
        record = request_status(request, now=now)
    return Settlement(request.idempotency_key, request.fingerprint, done, attempts, _report(track, now), record)


def _report(track: Track, now: float) -> Report:
    so_far = track.so_far or SoFar()
    outcome = _OUTCOMES.get(track.fate, Outcome.RETRY)
    last_sent = max((to_ms(at) for _, at in track.confirmed), default=so_far.last_sent_ms)
    waiting_since = (so_far.waiting_since_ms or to_ms(now)) if outcome is Outcome.WAITING else None
    expires_at = track.req.expires_at
    return Report(
        outcome,
        to_ms(now),
        so_far.calls + len(track.confirmed),
        track.reached_earlier + sum(n for n, _ in track.confirmed),
        len(track.req.recipients),
        last_sent,
        waiting_since,
        to_ms(expires_at.timestamp()) if expires_at is not None else None,
        track.reason if outcome is Outcome.DEAD_LETTERED else None,
    )
