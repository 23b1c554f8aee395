"""Keys: resolve idempotency keys inside the batch, then claim each key in the state store. Duplicates of
delivered requests stop here; a live execution elsewhere keeps its request."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

from imshop_push.dispatch.ports import Context
from imshop_push.dispatch.stages.cancel import count_cancelled
from imshop_push.domain import observability as m
from imshop_push.domain.batch import Batch
from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.model import NotificationRequest, StoreError
from imshop_push.domain.state import Claim as StoredClaim
from imshop_push.domain.state import ClaimStatus
from imshop_push.domain.threads import AWS_THREADS

logger = logging.getLogger(__name__)

KEY_REUSED = "idempotencyKey: key reused with different content (it was already used for another notification)"
LEFT_IN_POOL = "no time left to claim it before this invocation's calls: it waits in the pending pool for its wake"
TAKEN_CLAIM_CHUNK = 2 * AWS_THREADS
"""Pooled requests claimed side by side before the clock is read again."""
NOT_CLAIMED_REASONS = {
    ClaimStatus.BUSY: "another execution is delivering this request",
    ClaimStatus.UNAVAILABLE: "state store unavailable for this request",
}


class Variant(NamedTuple):
    """One content under one key in a batch: the copy that carries it, and the other copies it answers for."""

    carrier: Track
    copies: tuple[Track, ...]

    @property
    def tracks(self) -> tuple[Track, ...]:
        return (self.carrier, *self.copies)


class Claim:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __call__(self, batch: Batch) -> None:
        """Claim one content per key: SQS's records all, then the requests a wake took from the pending pool, a
        chunk at a time while the time until the first call allows (`_claim_taken`)."""
        contenders = variants_by_key([t for t in batch.parsed() if t.fate is Fate.RECEIVED])
        taken = {
            key: vs for key, vs in contenders.items() if all(t.message_id in batch.taken for v in vs for t in v.tracks)
        }
        self._claim({key: vs for key, vs in contenders.items() if key not in taken}, batch)
        if taken:
            self._claim_taken(taken, batch)

    def _claim_taken(self, contenders: dict[str, list[Variant]], batch: Batch) -> None:
        """A wake's requests are claimed until half the time to the first call is spent; the rest stay in the
        pool, their wake written again at once. However slow the state table (an emulator, a throttled table, a
        busy host), a wake then always makes calls of what it claimed: one that claimed everything it took
        would reach the last moment a call may start and defer them all, every time. The first chunk is
        always claimed unless no call can start any more."""
        clock, last_call_start = self._ctx.clock, batch.deadline.last_call_start
        start = clock()
        cutoff = start + (last_call_start - start) / 2
        keys = list(contenders)
        for first in range(0, len(keys), TAKEN_CLAIM_CHUNK):
            now = clock()
            if now >= last_call_start or (first and now >= cutoff):
                for key in keys[first:]:
                    for track in (t for v in contenders[key] for t in v.tracks):
                        track.retry(LEFT_IN_POOL)
                        batch.left_in_pool.add(batch.taken[track.message_id].group)
                return
            self._claim({key: contenders[key] for key in keys[first : first + TAKEN_CLAIM_CHUNK]}, batch)

    def _claim(self, contenders: dict[str, list[Variant]], batch: Batch) -> None:
        """A content the store refuses as conflicting is poison, and the next content under that key (if the
        batch has one) gets its turn; whatever content wins, the others are poison."""
        while contenders:
            turn = {key: vs[0] for key, vs in contenders.items()}
            try:
                claims = self._ctx.state.claim_many(
                    [(key, v.carrier.req.fingerprint) for key, v in turn.items()],
                    attempt_id=batch.attempt.id,
                    now=self._ctx.clock(),
                    lease_until=batch.deadline.hard,
                )
            except StoreError:
                logger.exception("state store unavailable: the batch's requests go back to SQS")
                for track in (t for vs in contenders.values() for v in vs for t in v.tracks):
                    track.retry("state store unavailable")
                return
            waiting: dict[str, list[Variant]] = {}
            for key, v in turn.items():
                claim, rest = claims[key], contenders[key][1:]
                if claim.status is ClaimStatus.CONFLICT and rest:
                    _poison(v)  # the store holds another content: perhaps the next one
                    waiting[key] = rest
                else:
                    for loser in rest:
                        _poison(loser)
                    self._take(batch, v, claim)
            contenders = waiting

    def _take(self, batch: Batch, v: Variant, claim: StoredClaim) -> None:
        carrier = v.carrier
        if claim.status is ClaimStatus.CONFLICT:
            _poison(v)
            return
        if claim.status is ClaimStatus.CLAIMED:
            carrier.claim(claim.attempts)
            carrier.so_far = claim.so_far
            batch.claimed[carrier.message_id] = carrier
        elif claim.status is ClaimStatus.DUPLICATE:
            self._ctx.metric(m.DUPLICATES_SKIPPED, 1)
            carrier.duplicate("already delivered")
        elif claim.status is ClaimStatus.CANCELLED:
            count_cancelled(self._ctx, v.tracks)
            for track in v.tracks:
                track.cancelled()
            return
        else:
            carrier.retry(NOT_CLAIMED_REASONS[claim.status])
        for copy in v.copies:
            self._ctx.metric(m.DUPLICATES_SKIPPED, 1)
            copy.duplicate(f"same key as {carrier.message_id}")


def variants_by_key(tracks: list[Track]) -> dict[str, list[Variant]]:
    """Group by key, then by content. Copies of one content travel as one, carried by the copy that expires
    last, so no copy is acknowledged on the strength of one that then expires. Which of two contents under one
    key is the request is left to the claim: the stored content wins, and only a key the store has never seen
    goes to the first content in the batch."""
    by_key: dict[str, list[Track]] = {}
    for track in tracks:
        by_key.setdefault(track.req.idempotency_key, []).append(track)
    variants: dict[str, list[Variant]] = {}
    for key, same_key in by_key.items():
        if len(same_key) == 1:  # nearly every key of a batch: no grouping to do
            variants[key] = [Variant(same_key[0], ())]
            continue
        by_content: dict[str, list[Track]] = {}
        for track in same_key:
            by_content.setdefault(track.req.fingerprint, []).append(track)
        variants[key] = []
        for copies in by_content.values():
            carrier = max(copies, key=lambda copy: _expiry_order(copy.req))
            variants[key].append(Variant(carrier, tuple(c for c in copies if c is not carrier)))
    return variants


def _poison(variant: Variant) -> None:
    for track in variant.tracks:
        track.dead_letter(KEY_REUSED)


def _expiry_order(request: NotificationRequest) -> float:
    return request.expires_at.timestamp() if request.expires_at is not None else math.inf
