"""Progress records of the calls of one attempt, and the rate-limit slot each call holds.

A call is recorded "pending" before it is sent, "sent" once IMSHOP confirmed it, "failed" when IMSHOP surely
did not deliver: a redelivery then knows what to skip and what is ambiguous.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from imshop_push.dispatch.ports import Context
from imshop_push.domain.batch import Attempt
from imshop_push.domain.model import StoreError
from imshop_push.domain.rate_limit import Permit
from imshop_push.domain.state import CallStatus

logger = logging.getLogger(__name__)

STORE_RETRY_DELAYS = (0.05, 0.2)  # seconds before the 2nd and 3rd try of a write that must not be lost


class CallRecords:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def pending(self, attempt: Attempt, index: int, cid: str, digests: bytes) -> None:
        """Raises StoreError: a call that cannot be recorded first is not sent."""
        state, clock = self._ctx.state, self._ctx.clock
        if attempt.recorded <= index:
            state.start_attempt(attempt.id, index + 1, now=clock())
            attempt.recorded = index + 1
        state.mark_call(cid, digests, status=CallStatus.PENDING, now=clock())

    def sent(self, attempt: Attempt, cid: str, digests: bytes) -> None:
        """The proof of a confirmed call is retried, and if the table still refuses it, carried to settle, which
        tries once more and marks fully delivered requests done either way: a DynamoDB hiccup alone must never
        make a confirmed call look ambiguous and be resent."""
        try:
            self._retrying(lambda: self._mark(cid, digests, CallStatus.SENT))
        except StoreError:
            logger.warning("delivered, but could not record it yet; settling tries again", exc_info=True)
            attempt.unrecorded_sent.append((cid, digests))

    def not_delivered(self, cid: str, digests: bytes) -> None:
        """IMSHOP surely did not deliver: a redelivery must not count these recipients as ambiguous."""
        try:
            self._mark(cid, digests, CallStatus.FAILED)
        except StoreError:
            logger.warning("could not record a failed call; a retry will count it as ambiguous", exc_info=True)

    def release(self, permit: Permit, finished_at: float) -> None:
        """Free the slot one window after the call ended. If that write fails, the pessimistic reservation
        taken with the permit still holds: only throughput suffers, never the limit."""
        try:
            self._ctx.limiter.release(permit, finished_at)
        except StoreError:
            logger.warning("could not release a rate-limit slot early; it frees itself later", exc_info=True)

    def give_back(self, permit: Permit) -> None:
        """No call was made on the permit: its slot is free at once. If that write fails, the reservation still
        holds: only throughput suffers, never the limit."""
        try:
            self._ctx.limiter.give_back(permit)
        except StoreError:
            logger.warning("could not give back an unused rate-limit slot; it frees itself later", exc_info=True)

    def _mark(self, cid: str, digests: bytes, status: CallStatus) -> None:
        self._ctx.state.mark_call(cid, digests, status=status, now=self._ctx.clock())

    def _retrying(self, write: Callable[[], None]) -> None:
        for delay in STORE_RETRY_DELAYS:
            try:
                write()
            except StoreError:
                self._ctx.sleep(delay)
            else:
                return
        write()
