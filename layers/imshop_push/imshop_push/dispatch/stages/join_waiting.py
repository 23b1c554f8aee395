"""Fill before you spend: a partial call of a content that is still arriving waits with it in the pending pool
(`pending.py`, `stages/pending.py`) rather than spending a slot on the few recipients it holds."""

from __future__ import annotations

import logging

from imshop_push.dispatch.ports import Context
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import StoreError
from imshop_push.domain.pending import group_of

logger = logging.getLogger(__name__)


class AnnounceArriving:
    """Before the claims: a content this batch carries more than once in what would be a partial call is still
    arriving. Its requests wait in the pending pool for the rest of it, unclaimed (the wake's execution claims
    them: a claim here would be written, settled and written again there), and the content is announced in the
    pool as arriving for as long as this invocation may run (`PendingPool.announce`): a concurrent batch that
    holds a lone request of it would otherwise send that request on its own before this batch pools the rest.
    A request with a fallback is left to Send: a free slot is never to cost it its own text."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        ctx = self._ctx
        if ctx.pending is None or not ctx.pending.shared:
            return
        by_group: dict[str, list[Track]] = {}
        for track in batch.parsed():
            if track.fate is Fate.RECEIVED and track.message_id not in batch.taken:
                by_group.setdefault(group_of(track.message.event_source_arn, track.text), []).append(track)
        partial = {
            group: tracks
            for group, tracks in by_group.items()
            if len(tracks) > 1 and sum(len(t.req.recipients) for t in tracks) < ctx.limits.max_recipients
        }
        if not partial:
            return
        now = ctx.clock()
        try:
            ctx.pending.announce(list(partial), until=batch.deadline.hard, now=now)
        except StoreError:
            logger.warning("cannot announce what this batch carries: a lone request of it may go alone", exc_info=True)
        for group, tracks in partial.items():
            waiting = [t for t in tracks if t.req.fallback is None and not t.switched]
            if len(waiting) > 1:
                batch.joining.add(group)
                for track in waiting:
                    track.wait_to_fill(now + ctx.limits.window_seconds)  # or the written wake due before it


class JoinWaiting:
    """A content is *still arriving* when more than one request of the batch carries it, or when a wake of its
    group is due within about a window (earlier batches of it wait in the pool). Its partial call then waits for the
    rest, whether or not a slot is free: it joins that wake, or opens the group with a wake one window away, in
    which later batches gather. A request nothing else carries and whose content waits nowhere (an order status)
    is sent as planned, and so is a full call: neither would gain from waiting. A transactional call in the pool
    has its lane's priority again once its wake waits for a slot: it may take up to a window longer than one that
    waited on its own, the price of sharing the call."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def holds(self, batch: Batch, index: int) -> bool:
        """Call `index` waits in the pool (its requests are deferred to the group's wake); False: send it."""
        ctx, call = self._ctx, batch.attempt.calls[index]
        owners = batch.owners(call)
        if ctx.pending is None or not ctx.pending.shared:  # no one else could fill it
            return False
        if not owners or len(call.recipients) >= ctx.limits.max_recipients:
            return False  # a call every owner left (switched to a fallback's text) is dropped by the sender
        if _left_over(batch, index, owners):  # what a cut claim leaves beyond full calls: taken again at once
            for track in owners:
                track.defer(ctx.clock())
            return True
        arn = owners[0].message.event_source_arn
        if any(_stays(t, batch, index, arn) for t in owners):
            return False
        group = group_of(arn, call.content)
        try:
            wake_at, arriving_until = ctx.pending.state(group)  # one read: a later batch finds the earlier ones
        except StoreError:
            logger.exception("cannot tell whether the content waits in the pool: the call goes on")
            return False
        now, window = ctx.clock(), ctx.limits.window_seconds
        # A wake overdue by less than two windows is live, as for deferrals (`ensure_wake`): an execution busy with
        # other groups may have written it again for a later window.
        if wake_at is not None and now - 2 * window <= wake_at <= now + window:
            turn = max(now, wake_at)
        elif any(t.switched for t in owners):  # asks for its slot first, then waits for it ahead of the opening
            return False  # (`FallbackSwitch.wake_turn`): the switched are late already, and their text is shared
        elif len(owners) > 1:
            turn = now + window  # about a window for the rest of the stream to arrive
        elif arriving_until is not None and now <= arriving_until:
            turn = min(arriving_until, now + window)  # a concurrent batch carries more of it, not pooled yet
        else:
            return False
        batch.joining.add(group)
        for track in owners:
            track.defer(turn)
        return True


def _left_over(batch: Batch, index: int, owners: list[Track]) -> bool:
    """The partial call of a group a wake took more of than it had time to claim (`stages/claim.py`), beside a
    full call of it: its requests wait with the rest of the group, which a wake takes again at once, rather than
    spend a slot on the remainder of what the claims reached. Alone, it is sent: a wake always makes progress."""
    call = batch.attempt.calls[index]
    taken = [batch.taken.get(t.message_id) for t in owners]
    if not batch.left_in_pool or any(t is None or t.group not in batch.left_in_pool for t in taken):
        return False
    if any(t.pending != {index} for t in owners):
        return False
    return any(other.content == call.content for n, other in enumerate(batch.attempt.calls) if n != index)


def _stays(track: Track, batch: Batch, index: int, arn: str) -> bool:
    """The wake's own requests are sent; a request other calls carry too goes with them; one call, one queue."""
    return track.message_id in batch.taken or track.pending != {index} or track.message.event_source_arn != arn
