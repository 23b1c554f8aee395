"""Dead letters: every record whose fate is poison goes to the DLQ with its reason; one the DLQ does not take
goes back to SQS instead (a later receive tries again)."""

from __future__ import annotations

import logging

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import Poison

logger = logging.getLogger(__name__)


class DeadLetter:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        poison = [t for t in batch.tracks if t.fate is Fate.DEAD_LETTERED]
        if not poison:
            return
        if self._ctx.dead_letters is None:
            for t in poison:
                logger.warning(
                    "no DEAD_LETTER_QUEUE_URL: poison request dropped",
                    extra={"message_id": t.message_id, "reason": t.reason},
                )
            return
        failed = self._ctx.dead_letters.send([_poison(t) for t in poison])
        for t in poison:
            if t.message_id in failed:
                t.give_back("could not write to the DLQ")
        # Counted once the DLQ holds them: a record it refused comes back and is counted when it is written.
        self._ctx.metric(m.DEAD_LETTERED, sum(t.message_id not in failed for t in poison))


def _poison(track: Track) -> Poison:
    """A claimed request keyed by its SQS message id carries that key: a redriven copy (new message id) then
    resumes where it stopped instead of resending what IMSHOP already confirmed."""
    request = track.request
    claimed = track.history is not None
    key = request.idempotency_key if claimed and request is not None and request.key_is_message_id else None
    return Poison(track.message, track.reason, idempotency_key=key)
