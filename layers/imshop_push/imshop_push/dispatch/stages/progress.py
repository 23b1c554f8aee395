"""Earlier progress: each claimed request minus what the calls of *its own* earlier attempts delivered.

Another request's calls never count: two keys are two notifications, even with equal content. Recipients of
a call whose outcome is unknown are sent again (at least once beats lost) and counted.

A request with a fallback also reads the switch digests its calls in the fallback's text recorded
(`fallback.py`): a recipient either text reached is done, one either text may have reached is resent in that
text. A switch digest in any record, even of a failed call, says the request is switched; an unknown outcome of
its own text keeps it from ever being switched.
"""

from __future__ import annotations

import logging

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fallback import switch_digests
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import Recipient, StoreError
from imshop_push.domain.state import CallStatus, delivery_digests

logger = logging.getLogger(__name__)

type Progress = dict[str, tuple[set[bytes], set[bytes], set[bytes]]]
"""attempt id -> (digests of confirmed calls, of calls whose outcome is unknown, of calls that surely failed)."""
NO_PROGRESS: tuple[set[bytes], set[bytes], set[bytes]] = (set(), set(), set())


class EarlierProgress:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        progress = self._load(list(batch.claimed.values()))
        for track in batch.claimed.values():
            if track.fate is not Fate.CLAIMED:
                continue
            track.remaining = self._remaining(track, progress)
            if not track.remaining:
                track.sent_earlier()

    def _remaining(self, track: Track, progress: Progress) -> tuple[Recipient, ...]:
        request = track.req
        recipients = request.recipients
        if not track.history:
            return recipients
        sent = set().union(*(progress.get(a, NO_PROGRESS)[0] for a in track.history))
        unknown = set().union(*(progress.get(a, NO_PROGRESS)[1] for a in track.history))
        digests = dict(zip(recipients, delivery_digests(request.content, recipients), strict=True))
        if request.fallback is not None:
            switched = dict(zip(recipients, switch_digests(request, recipients), strict=True))
            failed = set().union(*(progress.get(a, NO_PROGRESS)[2] for a in track.history))
            if any(d in sent or d in unknown or d in failed for d in switched.values()):
                track.switched = True
            if any(digests[r] in unknown for r in recipients if digests[r] not in sent):
                track.keeps_own_text = True
            recipients = tuple(r for r in recipients if switched[r] not in sent)
            unknown = unknown | {digests[r] for r in recipients if switched[r] in unknown}
        recipients = tuple(r for r in recipients if digests[r] not in sent)
        track.reached_earlier = len(request.recipients) - len(recipients)
        ambiguous = sum(1 for r in recipients if digests[r] in unknown)
        if ambiguous:
            self._ctx.metric(m.AMBIGUOUS_REDELIVERIES, ambiguous)
            logger.warning(
                "resending recipients whose earlier call's outcome is unknown",
                extra={"message_id": track.message_id, "recipients": ambiguous},
            )
        return recipients

    def _load(self, tracks: list[Track]) -> Progress:
        progress: Progress = {}
        earlier = {a for t in tracks for a in t.history or ()}
        if not earlier:
            return progress
        try:
            for record in self._ctx.state.load_calls(earlier, now=self._ctx.clock()):
                sent, unknown, failed = progress.setdefault(record.attempt_id, (set(), set(), set()))
                if record.status is CallStatus.SENT:
                    sent.update(record.digests)
                elif record.status is CallStatus.PENDING:
                    unknown.update(record.digests)
                else:
                    failed.update(record.digests)
        except StoreError:
            logger.exception("cannot read earlier progress: those requests go back to SQS")
            for t in tracks:
                if t.history:
                    t.retry("state store unavailable")
        return progress
