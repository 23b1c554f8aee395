"""Shared waiting, both ends of the pending pool (`pending.py`).

`TakePending`, first (`stages/take_pending.py`): a wake message brings its group's pooled requests into the batch.
`Pooling`, inside Settle: a deferred group goes to the pool with one wake, instead of a copy per request (and a
partial call of a content still arriving waits with it rather than spend a slot: `stages/join_waiting.py`).
`ReleasePending`, last: what the batch finished leaves the pool; what it did not keeps a wake armed, or the wake
message goes back to SQS.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch, Taken
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import (
    Content,
    Deferral,
    StoreError,
)
from imshop_push.domain.pending import (
    PendingCopy,
    group_of,
    pending_copy,
    wake_token,
)
from imshop_push.domain.sqs_copies import EntryTooLargeError, delay_until, requeue_entry

logger = logging.getLogger(__name__)

STILL_WAITING = frozenset({Fate.DEFERRED, Fate.RETRY, Fate.REQUEUED})
"""A taken request in one of these fates stays in the pool; any other fate finished it."""


class Pooling:
    """Settle's way to re-enqueue: groups of one content wait in the pool; lone requests as copies."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def route(self, batch: Batch, deferrals: Sequence[tuple[Track, Deferral]]) -> list[tuple[Track, Deferral]]:
        """Pool what shares a content with another deferred request (or already waits in the pool); return the
        rest, to be re-enqueued as copies. A request taken from the pool goes back to the group it was taken
        from, whatever group its content would get now: that group's next wake must find it."""
        pool = self._ctx.pending
        if pool is None:
            return list(deferrals)
        pooled: dict[str, list[tuple[Track, Deferral]]] = {}
        fresh: dict[tuple[str, Content], list[tuple[Track, Deferral]]] = {}
        for pair in deferrals:
            taken = batch.taken.get(pair[0].message_id)
            if taken is not None:
                pooled.setdefault(taken.group, []).append(pair)
            else:  # a switched request waits with its fallback's text
                fresh.setdefault((pair[0].message.event_source_arn, pair[0].text), []).append(pair)
        rest: list[tuple[Track, Deferral]] = []
        for (arn, content), pairs in fresh.items():
            # A lone personal text: no digest. A lone request that joined its content's stream waits with it, and
            # a fallback's text is shared.
            shared = len(pairs) > 1 or pairs[0][0].switched
            group = group_of(arn, content) if shared or pooled or batch.joining else None
            if group is None or (not shared and group not in pooled and group not in batch.joining):
                rest.extend(pairs)
                continue
            pooled.setdefault(group, []).extend(pairs)
        for group, pairs in pooled.items():
            rest.extend(self._pool(batch, group, pairs))
        return rest

    def _pool(self, batch: Batch, group: str, pairs: list[tuple[Track, Deferral]]) -> list[tuple[Track, Deferral]]:
        pool = self._ctx.pending
        assert pool is not None
        copies: list[PendingCopy] = []
        unfit: list[tuple[Track, Deferral]] = []
        for track, deferral in pairs:
            taken = batch.taken.get(track.message_id)
            if taken is not None:
                copies.append(taken.copy)  # written again: its expiration is renewed while it waits
                continue
            try:
                entry = requeue_entry(deferral)
            except EntryTooLargeError:
                unfit.append((track, deferral))  # the copy path reports it and gives it back
                continue
            copies.append(pending_copy(deferral.idempotency_key, track.message, entry))
        try:
            pool.put(group, copies, now=self._ctx.clock())
        except StoreError:
            logger.exception("the pending pool refused a deferred group: its requests wait as copies")
            for track, _ in pairs:
                if track.message_id in batch.taken:
                    give_back_waiting(batch, track, "the pending pool is unavailable")
            return [pair for pair in pairs if pair[0].message_id not in batch.taken]
        batch.pooled.update((group, copy.key) for copy in copies)
        wake_at = min(t.retry_at if t.retry_at is not None else self._ctx.clock() for t, _ in pairs)
        arn = pairs[0][0].message.event_source_arn
        if ensure_wake(self._ctx, group, arn, wake_at):
            self._ctx.open_groups.opened(group, arn, wake_at)
        else:
            for track, _ in pairs:
                give_back_waiting(batch, track, "could not write the wake of its pending group")
        fresh = [t for t, _ in pairs if t.message_id not in batch.taken and all(t is not u for u, _ in unfit)]
        self._ctx.metric(m.REQUESTS_POOLED, sum(t.fate is Fate.DEFERRED for t in fresh))  # pooled and woken
        return unfit


class ReleasePending:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        self._write_later_wakes(batch)
        pool = self._ctx.pending
        if pool is None or not batch.taken:
            return
        finished: dict[str, list[str]] = {}
        unwoken: dict[str, Track] = {}  # groups with requests left in the pool that no wake is armed for yet
        waiting: dict[str, list[Taken]] = {}  # left in the pool as they were: written again to renew them
        tracks = {t.message_id: t for t in batch.tracks if t.message_id in batch.taken}
        woken: set[str] = set()  # groups a deferral of this batch armed a wake for (`Pooling`)
        # A taken request that finished as the duplicate of a record that carried its key on: when that record
        # was deferred into the same group, its copy went to the pool under the same key, and must stay there.
        for message_id, taken in batch.taken.items():
            fate = tracks[message_id].fate
            if fate is Fate.DEFERRED:
                woken.add(taken.group)
            elif fate in STILL_WAITING:
                unwoken[taken.group] = taken.wake
                waiting.setdefault(taken.group, []).append(taken)
            elif (taken.group, taken.key) not in batch.pooled:
                finished.setdefault(taken.group, []).append(taken.key)
        for taken in batch.taken.values():
            if taken.more:  # the pool may hold more than one wake takes
                unwoken.setdefault(taken.group, taken.wake)
        for group in woken:
            unwoken.pop(group, None)
        for group, keys in finished.items():
            try:
                pool.remove(group, keys)
            except StoreError:
                logger.exception("finished requests stay in the pending pool: the next wake finds them done")
                unwoken.setdefault(group, next(t.wake for t in batch.taken.values() if t.group == group))
        self._renew(waiting)
        self._wake_again(unwoken, batch.left_in_pool)

    def _write_later_wakes(self, batch: Batch) -> None:
        """After the calls: each wake this batch left for a later window, delayed to its turn (a new message)."""
        now = self._ctx.clock()
        later = batch.later_wakes
        if not later:
            return
        failed = self._ctx.backlog.write_wakes(
            [(w.message.event_source_arn, g, delay_until(t, now)) for w, g, t in later],
            [wake_token(w.message) for w, _, _ in later],  # its group is still armed with this token
        )
        for position in failed:
            later[position][0].give_back("could not write the wake again for its turn")

    def _renew(self, waiting: dict[str, list[Taken]]) -> None:
        """Left waiting is waiting still: written again, each item's expiration starts over."""
        pool = self._ctx.pending
        assert pool is not None
        for group, left in waiting.items():
            try:
                pool.put(group, [t.copy for t in left], now=self._ctx.clock())
            except StoreError:
                logger.exception("cannot renew requests left in the pending pool: their wake goes back to SQS")
                for taken in left:
                    taken.wake.give_back("could not renew the requests it left in the pending pool")

    def _wake_again(self, unwoken: dict[str, Track], left: set[str]) -> None:
        """A window from now: what failed transiently, or did not fit in one take, is taken again then. At once:
        what there was no time to claim (`stages/claim.py`), while this invocation's calls go."""
        now = self._ctx.clock()
        for group, wake in unwoken.items():
            arn = wake.message.event_source_arn
            retry_at = now if group in left else now + self._ctx.limits.window_seconds
            if ensure_wake(self._ctx, group, arn, retry_at):
                self._ctx.open_groups.opened(group, arn, retry_at)
            else:
                wake.give_back("could not write the next wake of its pending group")


def ensure_wake(ctx: Context, group: str, event_source_arn: str, wake_at: float) -> bool:
    """Arm a wake for `wake_at` and write its message, unless a written one armed earlier will do. False: no
    wake could be written (the caller hands its requests back to SQS, which tries again later).

    A wake armed by another execution and not yet written is no reason to write none: its SendMessage may still
    fail, and that execution then gives back only its own requests."""
    pool = ctx.pending
    assert pool is not None
    now = ctx.clock()
    token: str | None
    try:
        token = pool.arm(group, wake_at=wake_at, stale_before=now - 2 * ctx.limits.window_seconds, now=now)
        if token is None:
            return True
    except StoreError:
        logger.exception("cannot arm a wake: one is written anyway (two wakes only cost a read)")
        token = None
    written = ctx.backlog.wake(event_source_arn, group, delay_until(wake_at, now), token)
    if token is not None:
        try:
            if written:
                pool.written(group, token)  # from now on other deferrals may rely on it
            else:
                pool.abandon(group, token)  # so the next deferral arms (and writes) one
        except StoreError:
            logger.exception("cannot record the outcome of a wake: other deferrals write their own until it is stale")
    return written


def give_back_waiting(batch: Batch, track: Track, reason: str) -> None:
    """A request SQS delivered goes back to SQS; one taken from the pool stays there, and its wake goes back."""
    taken = batch.taken.get(track.message_id)
    if taken is None:
        track.give_back(reason)
    else:
        taken.wake.give_back(reason)
