"""Intake: parse and validate every record, then drop the expired ones, before any budget is spent."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from imshop_push.dispatch.ports import Context
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.masking import mask_recipients
from imshop_push.domain.model import Cancel, StoreError
from imshop_push.domain.parsing import PoisonMessageError, parse_message
from imshop_push.domain.pending import is_virtual
from imshop_push.domain.sqs_copies import KEY_ATTRIBUTE
from imshop_push.domain.status_record import request_status

logger = logging.getLogger(__name__)


class Parse:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        fresh = [t for t in batch.tracks if t.fate is Fate.RECEIVED]  # not the wakes of the pending pool
        self._ctx.metric(m.REQUESTS_RECEIVED, sum(not is_virtual(t.message) for t in fresh))
        for track in fresh:
            message = track.message
            try:
                key = message.message_attributes.get(KEY_ATTRIBUTE, {}).get("stringValue")
                parsed = parse_message(message.body, message_id=message.message_id, key_attribute=key)
            except PoisonMessageError as e:
                self._ctx.metric(m.REQUESTS_INVALID, 1)
                logger.warning("invalid request", extra={"message_id": message.message_id, "reason": e.reason})
                track.dead_letter(e.reason)
                continue
            if isinstance(parsed, Cancel):
                track.cancel_key = parsed.idempotency_key
            else:
                track.request = parsed


class DropExpired:
    """First, before keys: a live copy of an expired request is then the one sent."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        now = datetime.fromtimestamp(self._ctx.clock(), UTC)
        expired = [t for t in batch.parsed() if t.fate is Fate.RECEIVED and t.expire_if_due(now)]
        for track in expired:
            count_expired(self._ctx, track)
        if expired:
            self._record(expired, now.timestamp())

    def _record(self, expired: list[Track], now: float) -> None:
        """For a status lookup: a request that expired before any claim left nothing else saying so. One that was
        held or claimed before has its status item already, with its expiresAt: the lookup tells from that."""
        records = [request_status(t.req, now=now, expired=True) for t in expired]
        try:
            self._ctx.state.record_status(records, now=now, only_new=True)
        except StoreError:
            logger.exception("expired, but a status lookup will not find it")


def count_expired(ctx: Context, track: Track) -> None:
    request = track.req
    ctx.metric(m.REQUESTS_EXPIRED, 1)
    logger.info(
        "request expired, not sent",
        extra={
            "message_id": track.message_id,
            "expires_at": request.expires_at.isoformat() if request.expires_at else None,
            "recipients": mask_recipients(rid for _, rid in request.recipients),
        },
    )
