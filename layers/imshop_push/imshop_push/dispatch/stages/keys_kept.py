"""Keys kept: a request keyed by its SQS message id, once IMSHOP may have had part of it, must not reach the
DLQ through SQS's own redrive policy: SQS adds no attribute there, and the copy a redrive brings back has a new
message id, so it would be a new request and resend what IMSHOP already confirmed. Such a request is not
handed back for a retry: it goes back as a copy that carries its key as a message attribute, and from then on
it is keyed like any other."""

from __future__ import annotations

import math

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.fallback import carried
from imshop_push.dispatch.stages.supersede import order
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import Deferral
from imshop_push.domain.sqs_copies import SQS_MAX_DELAY_SECONDS


class KeysKept:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        retries = [
            t for t in batch.parsed() if t.req.key_is_message_id and t.fate is Fate.RETRY and _may_have_progress(t)
        ]
        if not retries:
            return
        delay = min(SQS_MAX_DELAY_SECONDS, max(1, math.ceil(self._ctx.limits.window_seconds)))
        now = self._ctx.clock()
        failed = self._ctx.backlog.requeue(
            [
                Deferral(t.message, delay, t.req.idempotency_key, True, order(t, now), fallback=carried(t, now))
                for t in retries
            ]
        )
        for t in retries:
            if t.message_id not in failed:
                t.requeue(f"retried as a keyed copy: {t.reason}")
        self._ctx.metric(m.RETRIES_REQUEUED, len(retries) - len(failed))


def _may_have_progress(track: Track) -> bool:
    if track.history is None:  # not claimed: its history is unknown unless this is its first receive
        return track.message.receive_count > 1
    return bool(track.history) or track.reached_imshop
