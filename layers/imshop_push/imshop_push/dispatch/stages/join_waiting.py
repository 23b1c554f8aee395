"""Join waiting: a partial merged call waits with its content in the pending pool rather than on its own
(`pending.py`, `stages/pending.py`)."""

from __future__ import annotations

import logging

from imshop_push.dispatch.ports import Context
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Track
from imshop_push.domain.model import StoreError
from imshop_push.domain.pending import group_of

logger = logging.getLogger(__name__)


class JoinWaiting:
    """A partial merged call waits with its content in the pool rather than on its own: it joins a wake due
    within about a window, and it never waits in-process for a slot (it would then spend that slot on a few
    recipients while more of them gather behind it). A personal text has no one to wait with: never asked, so
    an order status is never held back. A transactional call in the pool has its lane's priority again once
    its wake waits for a slot: it may take up to a window longer than a transactional call that waited on its
    own, the price of sharing the call."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def group(self, batch: Batch, index: int) -> str | None:
        """The pending group of call `index` if it may wait in the pool; None if it is sent as planned."""
        ctx, call = self._ctx, batch.attempt.calls[index]
        owners = batch.owners(call)
        if ctx.pending is None or len(owners) < 2 or len(call.recipients) >= ctx.limits.max_recipients:
            return None
        arn = owners[0].message.event_source_arn
        if any(_stays(t, batch, index, arn) for t in owners):
            return None
        return group_of(arn, call.content)

    def joins(self, batch: Batch, index: int, group: str) -> bool:
        """Joined a wake armed for within about a window (one read)."""
        assert self._ctx.pending is not None
        try:
            wake_at = self._ctx.pending.armed(group)
        except StoreError:
            logger.exception("cannot tell whether the content waits in the pool: the call goes on")
            return False
        now, window = self._ctx.clock(), self._ctx.limits.window_seconds
        if wake_at is None or not now - window <= wake_at <= now + window:
            return False
        self.wait(batch, index, max(now, wake_at))
        return True

    def wait(self, batch: Batch, index: int, turn: float) -> None:
        for track in batch.owners(batch.attempt.calls[index]):
            track.defer(turn)


def _stays(track: Track, batch: Batch, index: int, arn: str) -> bool:
    """The wake's own requests are sent; a request other calls carry too goes with them; one call, one queue."""
    return track.message_id in batch.taken or track.pending != {index} or track.message.event_source_arn != arn
