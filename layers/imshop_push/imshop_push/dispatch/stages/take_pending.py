"""Take pending, the first stage: a wake of the pending pool (`pending.py`, `stages/pending.py`) brings its group's
requests into the batch, where they are parsed, claimed, merged and sent like any other record. An execution takes
no more groups than one window's limit of calls; the other wakes go back, each delayed to its turn."""

from __future__ import annotations

import logging
from dataclasses import replace

from imshop_push.dispatch.ports import Context
from imshop_push.domain.batch import Batch, Taken
from imshop_push.domain.fate import Track
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import FINISH_RESERVE_FRACTION, FINISH_RESERVE_PER_RECORD_SECONDS, StoreError
from imshop_push.domain.pending import (
    TAKE_MAX_ITEMS,
    TAKE_MIN_ITEMS,
    TAKE_SECONDS_PER_ITEM,
    VIRTUAL_PREFIX,
    PendingCopy,
    inbound_of,
    wake_body,
    wake_token,
    wakes_of,
)
from imshop_push.domain.threads import map_in_threads

logger = logging.getLogger(__name__)


OWN_WAKE_PREFIX = f"{VIRTUAL_PREFIX}own-wake:"


def is_own_wake(message: InboundMessage) -> bool:
    return message.message_id.startswith(OWN_WAKE_PREFIX)


class TakePending:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        wakes = wakes_of(batch.tracks)  # one a group
        pool = self._ctx.pending
        if pool is None:
            for wake, _ in wakes:
                wake.wake("no pending pool is configured: nothing waits in it")
            return
        wakes = self._ration(batch, wakes)
        wakes += self._open_groups_due([g for _, g in wakes], rationed=len(batch.later_wakes) > 0)
        limit = self._take_limit(len(wakes), batch)

        def take(wake: tuple[Track, str]) -> list[PendingCopy] | None:
            track, group = wake
            try:
                # Before reading: what is pooled after this has a wake of its own.
                own = is_own_wake(track.message)
                if not pool.disarm(group, None if own else wake_token(track.message), if_armed=own):
                    return []  # obsolete, or another take has the group already
                return pool.take(group, limit=limit)
            except StoreError:
                logger.exception("the pending pool is unavailable: the wake goes back to SQS")
                return None

        known = {t.message_id for t in batch.tracks}
        # Side by side: the round trips of several wakes must leave time for their calls in this invocation.
        for (wake, group), copies in zip(wakes, map_in_threads(take, wakes), strict=True):
            if copies is None:
                wake.retry("pending pool unavailable")
                continue
            wake.wake(f"took {len(copies)} pending requests")
            if len(copies) >= limit:  # more wait: the next take comes at once, as for a cut claim
                batch.left_in_pool.add(group)
            for copy in copies:
                message = inbound_of(copy)
                if message.message_id not in known:
                    known.add(message.message_id)
                    batch.tracks.append(Track(message))
                    batch.taken[message.message_id] = Taken(group, copy.key, wake, len(copies) >= limit, copy)
        if batch.taken:
            self._reserve_time(batch)

    def _ration(self, batch: Batch, wakes: list[tuple[Track, str]]) -> list[tuple[Track, str]]:
        """The wakes whose groups this invocation takes: half a window's calls' worth (a group is at least a call),
        since an event source runs at least two executions side by side (SQS's minimum concurrency): together they
        fill a window. Taking more would only claim requests the limit cannot send before the invocation ends,
        and write them back to the pool, and a short function timeout would not hold the calls. Each of the others
        is written again once the calls are made (`ReleasePending`), delayed to the window in which its turn comes,
        so that the backlog leaves at the vendor's rate, window after window. Their groups stay armed: the wake
        written again is the one deferrals rely on."""
        ctx = self._ctx
        per_window, take = max(1, ctx.limits.rate_limit_requests), self._per_execution()
        now, window = ctx.clock(), ctx.limits.window_seconds
        for position, (wake, group) in enumerate(wakes[take:]):
            wake.wake("its turn comes in a later window: written again, delayed to it")
            batch.later_wakes.append((wake, group, now + (1 + position // per_window) * window))
        return wakes[:take]

    def _open_groups_due(self, woken: list[str], *, rationed: bool) -> list[tuple[Track, str]]:
        """This environment's own groups that are due (`OpenGroups`), up to the rest of the ration: taken as if
        their wake had come, by a wake of this stage's making outside the batch (no SQS message to answer for).
        It disarms the group, so that what arrives after it opens the group again for a window, and takes it only
        if a wake was armed (another environment that pooled in it, or the wake message, may have taken it). The
        wake message still comes: obsolete once the group is armed again and written (`PendingPool.disarm`), else
        it takes what is left, which covers what this take could not give back (it has no message to give back)."""
        groups = self._ctx.open_groups
        for group in woken:
            groups.taken(group)
        room = 0 if rationed else self._per_execution() - len(woken)
        own: list[tuple[Track, str]] = []
        for group, arn in groups.due(self._ctx.clock())[: max(0, room)]:
            groups.taken(group)
            own.append((Track(InboundMessage(f"{OWN_WAKE_PREFIX}{group}", wake_body(group), arn)), group))
        return own

    def _per_execution(self) -> int:
        return max(1, self._ctx.limits.rate_limit_requests // 2)

    def _take_limit(self, wakes: int, batch: Batch) -> int:
        """Each wake's share of what the time until the first call can claim."""
        seconds = batch.deadline.last_call_start - self._ctx.clock()
        claimable = min(TAKE_MAX_ITEMS, int(seconds / TAKE_SECONDS_PER_ITEM)) // max(1, wakes)
        return max(TAKE_MIN_ITEMS, claimable)

    def _reserve_time(self, batch: Batch) -> None:
        """The taken requests are settled in this invocation too: their share of the reserve comes off the
        time left for calls, as the runtime reserves it for the records SQS delivered."""
        deadline = batch.deadline
        room = max(0.0, deadline.hard - self._ctx.clock()) * FINISH_RESERVE_FRACTION
        extra = min(room, FINISH_RESERVE_PER_RECORD_SECONDS * len(batch.taken))
        batch.deadline = replace(deadline, last_call_start=deadline.last_call_start - extra)
