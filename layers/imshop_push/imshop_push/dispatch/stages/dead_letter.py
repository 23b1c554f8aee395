"""Dead letters: every record whose fate is poison goes to the DLQ with its reason; one the DLQ does not take
goes back to SQS instead (a later receive tries again)."""

from __future__ import annotations

import logging

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.claim import KEY_REUSED
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import Poison, StoreError
from imshop_push.domain.parsing import poison_key
from imshop_push.domain.sqs_copies import KEY_ATTRIBUTE, held_until_of
from imshop_push.domain.status_record import StatusRecord, request_status, to_ms

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
        self._record([t for t in poison if t.message_id not in failed])

    def _record(self, poison: list[Track]) -> None:
        """Under its key, for a status lookup: a request never claimed has no settlement to say so (a claimed one's
        says it). A key reused with other content names the other request, so its status stays that one's; a
        key whose status item exists already does too, unless that item is this held request's own."""
        now = self._ctx.clock()
        unclaimed = [t for t in poison if t.history is None and t.reason != KEY_REUSED]
        own = [_record(t, now) for t in unclaimed if held_until_of(t.message) is not None]
        new = [_record(t, now) for t in unclaimed if held_until_of(t.message) is None]
        try:
            self._ctx.state.record_status(own, now=now)
            self._ctx.state.record_status(new, now=now, only_new=True)
        except StoreError:
            logger.exception("dead-lettered, but a status lookup will not find why: the DLQ has the reason")


def _record(track: Track, now: float) -> StatusRecord:
    request = track.request
    if request is None:
        message = track.message
        key = message.message_attributes.get(KEY_ATTRIBUTE, {}).get("stringValue")
        stored = poison_key(message.body, message_id=track.message_id, key_attribute=key)
        return StatusRecord(stored, to_ms(now), None, b"", 0, dead_letter=track.reason)
    return request_status(request, now=now, dead_letter=track.reason)


def _poison(track: Track) -> Poison:
    """A claimed request keyed by its SQS message id carries that key: a redriven copy (new message id) then
    resumes where it stopped instead of resending what IMSHOP already confirmed."""
    request = track.request
    claimed = track.history is not None
    key = request.idempotency_key if claimed and request is not None and request.key_is_message_id else None
    return Poison(track.message, track.reason, idempotency_key=key)
