"""Cancel: `{"cancel": {"idempotencyKey": ...}}` stops whatever of that request is not yet sent.

The cancel is remembered in the state store under the request's key (for the state TTL), whether or not the
request has come yet, so it is seen where every request passes anyway: its claim (`stages/claim.py`) answers
`CANCELLED`, and the request is acknowledged without a call. A request already claimed by a live execution
learns of it right before each of its calls (`NotCancelled`), even after one of its calls failed or went
unanswered. A request held for its sendAt or the quiet hours is not claimed while it waits: it is dropped
when it becomes due (one with a collapseKey at its next hop, `stages/hold.py`, before it records its
version). A cancel of a request that was fully sent changes nothing (its claim says it was delivered).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import StoreError

logger = logging.getLogger(__name__)

_STILL_SENDING = frozenset({Fate.PLANNED, Fate.RETRY})  # what a later call of the attempt still sends


class RecordCancels:
    """Before anything is claimed: a request in the same batch as its cancel is then cancelled at its claim."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        cancels = [t for t in batch.tracks if t.cancel_key is not None and t.fate is Fate.RECEIVED]
        if not cancels:
            return
        keys = {t.cancel_key for t in cancels if t.cancel_key is not None}
        try:
            self._ctx.state.cancel(keys, now=self._ctx.clock())
        except StoreError:
            logger.exception("cannot record cancels: they (and their requests in this batch) go back to SQS")
            for track in cancels:
                track.retry("state store unavailable")
            for track in batch.parsed():
                if track.req.idempotency_key in keys:
                    track.retry("its cancel could not be recorded")
            return
        self._ctx.metric(m.CANCELS_RECEIVED, len(cancels))
        for track in cancels:
            track.cancel_recorded()
            logger.info("cancel recorded", extra={"message_id": track.message_id})


class NotCancelled:
    """The check right before a call: a cancel may have come while the request waited for budget."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def drop(self, owners: Sequence[Track]) -> None:
        """Marks the owners whose request a cancel names; raises StoreError. An owner an earlier call of this
        attempt failed (RETRY: it would go back to SQS) still has its later calls sent here, so it is asked too:
        what was not sent is never sent, and an unanswered call's recipients are not sent again."""
        live = [t for t in owners if t.fate in _STILL_SENDING]
        if not live:
            return
        cancelled = self._ctx.state.cancelled({t.req.idempotency_key for t in live}, now=self._ctx.clock())
        gone = [t for t in live if t.req.idempotency_key in cancelled]
        count_cancelled(self._ctx, gone)
        for track in gone:
            track.cancelled()


def count_cancelled(ctx: Context, tracks: Iterable[Track]) -> None:
    tracks = list(tracks)
    if not tracks:
        return
    ctx.metric(m.REQUESTS_CANCELLED, len(tracks))
    for track in tracks:
        logger.info("request cancelled: what was not sent is never sent", extra={"message_id": track.message_id})
