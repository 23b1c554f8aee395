"""One SQS batch in, one disposition per record out: the dispatcher's whole job, I/O behind interfaces.

Order of work, and why:
1. parse and validate every record (poison is known before any budget is spent);
2. resolve idempotency keys inside the batch, then claim each key in the state store (duplicates of
   delivered requests stop here; a live execution elsewhere keeps its request);
3. subtract what earlier attempts already delivered;
4. plan the fewest calls (merge equal content, split at the recipient limit);
5. send call by call, each through the shared rate limiter, recording progress before and after;
6. settle state, then re-enqueue backlog and dead-letter poison; whatever could not be written goes back to
   SQS as a batch item failure, so nothing is dropped silently.
"""

from __future__ import annotations

import enum
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push import observability as m
from imshop_push.imshop_client import CallOutcome, CallResult
from imshop_push.inbound import InboundMessage
from imshop_push.masking import mask_recipients
from imshop_push.model import Content, NotificationRequest, Recipient
from imshop_push.observability import MetricSink
from imshop_push.parsing import PoisonMessageError, parse_body
from imshop_push.planning import Delivery, PlannedCall, plan_calls
from imshop_push.rate_limit import Denied, Permit, RateLimiter, wait_for_permit
from imshop_push.sqs_outbox import KEY_ATTRIBUTE, SQS_MAX_DELAY_SECONDS, Deferral, Poison
from imshop_push.state import (
    CallStatus,
    Claim,
    ClaimStatus,
    Settlement,
    StateStore,
    StateStoreError,
    call_id,
    delivery_digests,
    pack_digests,
)

logger = logging.getLogger(__name__)

MAX_RATE_LIMITED_RETRIES = 3
STORE_RETRY_DELAYS = (0.05, 0.2)  # seconds before the 2nd and 3rd try of a write that must not be lost
STORE_ERRORS = (ClientError, BotoCoreError, StateStoreError)


class Disposition(enum.StrEnum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    EXPIRED = "expired"
    DEAD_LETTERED = "dead_lettered"
    DEFERRED = "deferred"  # re-enqueued with a delay: waiting for rate budget is not a failure
    REQUEUED = "requeued"  # a transient failure, retried as a copy that carries the request's idempotency key
    RETRY = "retry"  # returned to SQS as a batch item failure

    @property
    def is_failure(self) -> bool:
        return self is Disposition.RETRY


class RecordResult(NamedTuple):
    disposition: Disposition
    reason: str = ""


class PushApi(Protocol):
    @property
    def worst_case_seconds(self) -> float: ...

    def send(self, payload: dict[str, object]) -> CallOutcome: ...


class DeadLetterSink(Protocol):
    def send(self, poison: Sequence[Poison]) -> set[str]: ...


class BacklogSink(Protocol):
    def requeue(self, deferrals: Sequence[Deferral]) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Deadline:
    """Wall-clock limits of one invocation (epoch seconds)."""

    hard: float  # the function times out here; leases end here
    last_call_start: float  # a call started later could outlive the invocation


@dataclass(slots=True)
class _Work:
    """A claimed request on its way through the calls of this attempt."""

    request: NotificationRequest
    message: InboundMessage
    attempts: tuple[str, ...]  # earlier attempts, whose calls may have delivered some recipients
    attempt_id: str  # this one
    pending_calls: set[int] = field(default_factory=set)
    failed: str | None = None
    poisoned: str | None = None
    expired: bool = False
    deferred_until: float | None = None
    recorded_in_attempt: bool = False  # a call carrying it was recorded: this attempt belongs to its history
    reached_imshop: bool = False  # a call carrying it was confirmed, or its outcome is unknown


class _Variant(NamedTuple):
    """One content under one key in a batch: the copy that carries it, and the other copies it answers for."""

    message: InboundMessage
    request: NotificationRequest
    copies: tuple[InboundMessage, ...]

    @property
    def messages(self) -> tuple[InboundMessage, ...]:
        return (self.message, *self.copies)


@dataclass(slots=True)
class _Attempt:
    """The calls of one invocation. `recorded` is how many have call records (the attempt item says so), so a
    redelivery reads the calls that were started, not every call that was planned."""

    id: str
    calls: list[PlannedCall] = field(default_factory=list)
    recorded: int = 0
    isolation_sent: set[tuple[Content, Recipient]] = field(default_factory=set)
    unrecorded_sent: list[tuple[str, bytes]] = field(default_factory=list)
    """Confirmed calls whose "sent" record the table refused, even after retries: settle tries once more."""


class Dispatcher:
    def __init__(
        self,
        *,
        api: PushApi,
        limiter: RateLimiter,
        state: StateStore,
        dead_letters: DeadLetterSink | None,
        backlog: BacklogSink,
        metric: MetricSink,
        max_recipients: int,
        rate_limit_requests: int,
        rate_limit_window_seconds: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = api
        self._limiter = limiter
        self._state = state
        self._dead_letters = dead_letters
        self._backlog = backlog
        self._metric = metric
        self._max_recipients = max_recipients
        self._rate_limit_requests = rate_limit_requests
        self._window = rate_limit_window_seconds
        self._clock = clock
        self._sleep = sleep

    def dispatch(self, messages: Sequence[InboundMessage], *, deadline: Deadline) -> dict[str, RecordResult]:
        results: dict[str, RecordResult] = {}
        poison: list[Poison] = []
        messages = _first_of_each_id(messages)
        self._metric(m.REQUESTS_RECEIVED, len(messages))

        parsed = self._parse(messages, poison)
        requests = self._drop_expired(parsed, results)  # first: a live copy of an expired request is sent
        variants = self._resolve_keys_in_batch(requests)
        attempt = _Attempt(uuid.uuid4().hex, [])
        work = self._claim(variants, attempt.id, deadline, results, poison)
        if work:
            deliveries = self._remaining_deliveries(work, results)
            self._send(work, deliveries, attempt, deadline)
            self._settle(work, attempt, results)
        self._dead_letter(poison, results)
        self._retry_keyless_as_keyed_copies(parsed, work, results)
        return results

    # 1. parse -------------------------------------------------------------------------------------------
    def _parse(
        self, messages: Sequence[InboundMessage], poison: list[Poison]
    ) -> list[tuple[InboundMessage, NotificationRequest]]:
        parsed = []
        for message in messages:
            try:
                key = message.message_attributes.get(KEY_ATTRIBUTE, {}).get("stringValue")
                parsed.append((message, parse_body(message.body, message_id=message.message_id, key_attribute=key)))
            except PoisonMessageError as e:
                self._metric(m.REQUESTS_INVALID, 1)
                logger.warning("invalid request", extra={"message_id": message.message_id, "reason": e.reason})
                poison.append(Poison(message, e.reason))
        return parsed

    # 2. keys --------------------------------------------------------------------------------------------
    def _resolve_keys_in_batch(
        self, requests: list[tuple[InboundMessage, NotificationRequest]]
    ) -> dict[str, list[_Variant]]:
        """Group the batch by key, then by content. Copies of one content travel as one, carried by the copy
        that expires last, so no copy is acknowledged on the strength of one that then expires. Which of two
        contents under one key is the request is left to the claim: the stored content wins, and only a key
        the store has never seen goes to the first content in the batch."""
        by_key: dict[str, dict[str, list[tuple[InboundMessage, NotificationRequest]]]] = {}
        for message, request in requests:
            by_key.setdefault(request.idempotency_key, {}).setdefault(request.fingerprint, []).append(
                (message, request)
            )
        variants: dict[str, list[_Variant]] = {}
        for key, by_content in by_key.items():
            variants[key] = []
            for copies in by_content.values():
                carrier = max(copies, key=lambda copy: _expiry_order(copy[1]))
                variants[key].append(_Variant(*carrier, tuple(m for m, _ in copies if m is not carrier[0])))
        return variants

    def _drop_expired(
        self, requests: list[tuple[InboundMessage, NotificationRequest]], results: dict[str, RecordResult]
    ) -> list[tuple[InboundMessage, NotificationRequest]]:
        now = datetime.fromtimestamp(self._clock(), UTC)
        live = []
        for message, request in requests:
            if request.is_expired(now):
                self._expire(message.message_id, request, results)
            else:
                live.append((message, request))
        return live

    def _expire(self, message_id: str, request: NotificationRequest, results: dict[str, RecordResult]) -> None:
        self._metric(m.REQUESTS_EXPIRED, 1)
        logger.info(
            "request expired, not sent",
            extra={
                "message_id": message_id,
                "expires_at": request.expires_at.isoformat() if request.expires_at else None,
                "recipients": mask_recipients(rid for _, rid in request.recipients),
            },
        )
        results[message_id] = RecordResult(Disposition.EXPIRED, "expiresAt has passed")

    def _claim(
        self,
        variants: dict[str, list[_Variant]],
        attempt_id: str,
        deadline: Deadline,
        results: dict[str, RecordResult],
        poison: list[Poison],
    ) -> dict[str, _Work]:
        """Claim one content per key. A content the store refuses as conflicting is poison, and the next content
        under that key (if the batch has one) gets its turn; whatever content wins, the others are poison."""
        work: dict[str, _Work] = {}
        contenders = {key: list(vs) for key, vs in variants.items()}
        while contenders:
            turn = {key: vs[0] for key, vs in contenders.items()}
            try:
                claims = self._state.claim_many(
                    [(key, v.request.fingerprint) for key, v in turn.items()],
                    attempt_id=attempt_id,
                    now=self._clock(),
                    lease_until=deadline.hard,
                )
            except STORE_ERRORS:
                logger.exception("state store unavailable: the batch's requests go back to SQS")
                for vs in contenders.values():
                    for v in vs:
                        for message in v.messages:
                            results[message.message_id] = RecordResult(Disposition.RETRY, "state store unavailable")
                return work
            waiting: dict[str, list[_Variant]] = {}
            for key, v in turn.items():
                claim, rest = claims[key], contenders[key][1:]
                if claim.status is ClaimStatus.CONFLICT and rest:
                    self._poison_variant(v, poison)  # the store holds another content: perhaps the next one
                    waiting[key] = rest
                else:
                    for loser in rest:
                        self._poison_variant(loser, poison)
                    self._take(v, claim, attempt_id, work, results, poison)
            contenders = waiting
        return work

    def _take(  # noqa: PLR0917 - the claim loop's state, passed on as it is
        self,
        v: _Variant,
        claim: Claim,
        attempt_id: str,
        work: dict[str, _Work],
        results: dict[str, RecordResult],
        poison: list[Poison],
    ) -> None:
        if claim.status is ClaimStatus.CONFLICT:
            self._poison_variant(v, poison)
            return
        if claim.status is ClaimStatus.CLAIMED:
            work[v.message.message_id] = _Work(v.request, v.message, claim.attempts, attempt_id)
        elif claim.status is ClaimStatus.DUPLICATE:
            self._metric(m.DUPLICATES_SKIPPED, 1)
            results[v.message.message_id] = RecordResult(Disposition.DUPLICATE, "already delivered")
        else:
            results[v.message.message_id] = RecordResult(Disposition.RETRY, _NOT_CLAIMED_REASONS[claim.status])
        self._acknowledge_copies(v, results)

    def _acknowledge_copies(self, variant: _Variant, results: dict[str, RecordResult]) -> None:
        for copy in variant.copies:
            self._metric(m.DUPLICATES_SKIPPED, 1)
            results[copy.message_id] = RecordResult(Disposition.DUPLICATE, f"same key as {variant.message.message_id}")

    def _poison_variant(self, variant: _Variant, poison: list[Poison]) -> None:
        poison.extend(Poison(message, _key_reused_reason()) for message in variant.messages)

    # 3. progress ----------------------------------------------------------------------------------------
    def _remaining_deliveries(self, work: dict[str, _Work], results: dict[str, RecordResult]) -> list[Delivery]:
        """Each request minus what the calls of *its own* earlier attempts delivered.

        Another request's calls never count: two keys are two notifications, even with equal content.
        """
        progress = self._load_progress(work)
        deliveries = []
        for message_id, w in work.items():
            if w.failed:
                continue
            recipients: Sequence[Recipient] = w.request.recipients
            if w.attempts:
                sent = set().union(*(progress.get(a, (set(), set()))[0] for a in w.attempts))
                unknown = set().union(*(progress.get(a, (set(), set()))[1] for a in w.attempts))
                digests = dict(zip(recipients, delivery_digests(w.request.content, recipients), strict=True))
                recipients = [r for r in recipients if digests[r] not in sent]
                ambiguous = sum(1 for r in recipients if digests[r] in unknown)
                if ambiguous:
                    self._metric(m.AMBIGUOUS_REDELIVERIES, ambiguous)
                    logger.warning(
                        "resending recipients whose earlier call's outcome is unknown",
                        extra={"message_id": message_id, "recipients": ambiguous},
                    )
            if recipients:
                deliveries.append(Delivery(message_id, w.request.content, recipients))
            else:
                results[message_id] = RecordResult(Disposition.DELIVERED, "delivered by an earlier attempt")
        return deliveries

    def _load_progress(self, work: dict[str, _Work]) -> dict[str, tuple[set[bytes], set[bytes]]]:
        """attempt id -> (digests of confirmed calls, digests of calls whose outcome is unknown)."""
        progress: dict[str, tuple[set[bytes], set[bytes]]] = {}
        earlier = {a for w in work.values() for a in w.attempts}
        if not earlier:
            return progress
        try:
            for record in self._state.load_calls(earlier, now=self._clock()):
                sent, unknown = progress.setdefault(record.attempt_id, (set(), set()))
                if record.status is CallStatus.SENT:
                    sent.update(record.digests)
                elif record.status is CallStatus.PENDING:
                    unknown.update(record.digests)
        except STORE_ERRORS:
            logger.exception("cannot read earlier progress: those requests go back to SQS")
            for w in work.values():
                if w.attempts:
                    w.failed = "state store unavailable"
        return progress

    # 4-5. plan and send ---------------------------------------------------------------------------------
    def _send(self, work: dict[str, _Work], deliveries: list[Delivery], attempt: _Attempt, deadline: Deadline) -> None:
        attempt.calls = calls = plan_calls(deliveries, max_recipients=self._max_recipients)
        for index, call in enumerate(calls):
            for message_id in call.message_ids:
                work[message_id].pending_calls.add(index)
        index = 0
        while index < len(calls):
            try:
                outcome = self._send_one(work, attempt, index, deadline)
            except STORE_ERRORS:
                logger.exception("the state table is unavailable: the rest goes back to SQS")
                for rest in calls[index:]:
                    self._fail([work[mid] for mid in rest.message_ids], "state store unavailable")
                return
            if isinstance(outcome, Denied):
                self._defer_rest(work, calls[index:], outcome)
                return
            for split in outcome:  # a rejected merged call, one request at a time
                for message_id in split.message_ids:
                    work[message_id].pending_calls.add(len(calls))
                calls.append(split)
            index += 1

    def _defer_rest(self, work: dict[str, _Work], calls: list[PlannedCall], denied: Denied) -> None:
        """Out of budget for this invocation: spread the rest over the windows in which their turn comes.

        The n-th call still waiting cannot start before `retry_at + (n // limit) windows`; delaying its
        requests until then keeps them from being received again (and re-enqueued again) for nothing.
        """
        limit = max(1, self._rate_limit_requests)
        for position, call in enumerate(calls):
            turn = denied.retry_at + (position // limit) * self._window
            for message_id in call.message_ids:
                w = work[message_id]
                if w.deferred_until is None or turn < w.deferred_until:
                    w.deferred_until = turn

    def _send_one(
        self, work: dict[str, _Work], attempt: _Attempt, index: int, deadline: Deadline
    ) -> Denied | list[PlannedCall]:
        """Send call `index`; returns Denied when out of budget, or calls to send next (isolation), or []."""
        call = attempt.calls[index]
        cid = call_id(attempt.id, index)
        owners = [work[mid] for mid in call.message_ids]
        for _ in range(MAX_RATE_LIMITED_RETRIES + 1):
            live_call = self._without_expired(call, owners, attempt)
            if live_call is None:
                for w in owners:
                    w.pending_calls.discard(index)
                return []
            permit = wait_for_permit(
                self._limiter,
                latest_start=deadline.last_call_start,
                clock=self._clock,
                sleep=self._sleep,
                on_wait=lambda _s: self._metric(m.RATE_LIMIT_WAITS, 1),
            )
            if isinstance(permit, Denied):
                return permit
            live_call = self._without_expired(call, owners, attempt)  # the wait may have outlived some requests
            if live_call is None:
                self._tighten(permit, self._clock())
                for w in owners:
                    w.pending_calls.discard(index)
                return []
            call = live_call
            digests = pack_digests(delivery_digests(call.content, call.recipients))
            try:
                self._record_pending(attempt, index, cid, digests)
            except STORE_ERRORS:
                self._tighten(permit, self._clock())
                logger.exception("cannot record the call before sending: not sent")
                self._fail(owners, "state store unavailable")
                return []
            for w in owners:
                w.recorded_in_attempt = True
            outcome = self._api.send(call.payload())
            finished_at = self._clock()
            self._metric(_CALL_METRIC[outcome.result], 1)
            self._log_call(call, outcome)
            if outcome.result is CallResult.RATE_LIMITED:
                retry_after = outcome.retry_after_seconds
                blocked_until = finished_at + (retry_after if retry_after is not None else self._window)
                self._tighten(permit, finished_at)
                self._mark_not_delivered(cid, digests)
                self._limiter.block_until(blocked_until)
                continue
            # Proof of delivery first: the slot can wait, the record of what was sent cannot.
            splits = self._apply(owners, call, outcome, attempt=attempt, cid=cid, digests=digests, index=index)
            self._tighten(permit, finished_at)
            return splits
        # IMSHOP keeps throttling: that is waiting for budget, not a failure; the requests wait in the queue.
        return Denied(blocked_until)

    def _record_pending(self, attempt: _Attempt, index: int, cid: str, digests: bytes) -> None:
        if attempt.recorded <= index:
            self._state.start_attempt(attempt.id, index + 1, now=self._clock())
            attempt.recorded = index + 1
        self._state.mark_call(cid, digests, status=CallStatus.PENDING, now=self._clock())

    def _record_sent(self, attempt: _Attempt, cid: str, digests: bytes) -> None:
        """The proof of a confirmed call is retried, and if the table still refuses it, carried to settle, which
        tries once more and marks fully delivered requests done either way: a DynamoDB hiccup alone must never
        make a confirmed call look ambiguous and be resent."""
        try:
            self._retrying(lambda: self._state.mark_call(cid, digests, status=CallStatus.SENT, now=self._clock()))
        except STORE_ERRORS:
            logger.warning("delivered, but could not record it yet; settling tries again", exc_info=True)
            attempt.unrecorded_sent.append((cid, digests))

    def _retrying(self, write: Callable[[], None]) -> None:
        for delay in STORE_RETRY_DELAYS:
            try:
                write()
            except STORE_ERRORS:
                self._sleep(delay)
            else:
                return
        write()

    def _mark_not_delivered(self, cid: str, digests: bytes) -> None:
        """IMSHOP surely did not deliver: a redelivery must not count these recipients as ambiguous."""
        try:
            self._state.mark_call(cid, digests, status=CallStatus.FAILED, now=self._clock())
        except STORE_ERRORS:
            logger.warning("could not record a failed call; a retry will count it as ambiguous", exc_info=True)

    def _tighten(self, permit: Permit, finished_at: float) -> None:
        """Free the slot one window after the call ended. If that write fails, the pessimistic reservation
        taken with the permit still holds: only throughput suffers, never the limit."""
        try:
            self._limiter.release(permit, finished_at)
        except STORE_ERRORS:
            logger.warning("could not release a rate-limit slot early; it frees itself later", exc_info=True)

    def _apply(
        self,
        owners: list[_Work],
        call: PlannedCall,
        outcome: CallOutcome,
        *,
        attempt: _Attempt,
        cid: str,
        digests: bytes,
        index: int,
    ) -> list[PlannedCall]:
        if outcome.result is CallResult.SENT:
            self._metric(m.RECIPIENTS_SENT, len(call.recipients))
            self._record_sent(attempt, cid, digests)
            for w in owners:
                w.reached_imshop = True
            if call.isolated:
                attempt.isolation_sent.update((call.content, r) for r in call.recipients)
            for w in owners:
                w.pending_calls.discard(index)
            return []
        if outcome.result is CallResult.AMBIGUOUS:
            self._fail(owners, outcome.reason)  # the call record stays pending: a redelivery counts it
            for w in owners:
                w.reached_imshop = True
            return []
        self._mark_not_delivered(cid, digests)
        if outcome.result is not CallResult.REJECTED:
            self._fail(owners, outcome.reason)
            return []
        if len(owners) == 1:
            owners[0].poisoned = outcome.reason
            return []
        # A merged call refused: which request IMSHOP objects to cannot be told from one answer, and the others
        # must not share its fate. Each request gets its own call; a recipient delivered by one of them is not
        # sent again by the next (isolation_sent).
        for w in owners:
            w.pending_calls.discard(index)
        wanted = {w.request.message_id: set(w.request.recipients) for w in owners}
        return [
            PlannedCall(
                call.content,
                tuple(r for r in call.recipients if r in wanted[w.request.message_id]),
                frozenset({w.request.message_id}),
                isolated=True,
            )
            for w in sorted(owners, key=lambda w: w.request.message_id)
        ]

    def _without_expired(self, call: PlannedCall, owners: list[_Work], attempt: _Attempt) -> PlannedCall | None:
        """Drop recipients whose every requester expired while waiting (never sent late), and, for a call split
        off a rejected merged call, recipients an earlier split already delivered."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        for w in owners:
            if not w.expired and w.request.is_expired(now):
                w.expired = True
        live = [w for w in owners if not w.expired]
        if not live:
            return None
        recipients = call.recipients
        if len(live) < len(owners):
            wanted = {r for w in live for r in w.request.recipients}
            recipients = tuple(r for r in recipients if r in wanted)
        if call.isolated:
            recipients = tuple(r for r in recipients if (call.content, r) not in attempt.isolation_sent)
        if not recipients:
            return None
        if recipients is call.recipients:
            return call
        return PlannedCall(call.content, recipients, frozenset(w.request.message_id for w in live), call.isolated)

    def _fail(self, owners: list[_Work], reason: str) -> None:
        for w in owners:
            w.failed = w.failed or reason

    def _log_call(self, call: PlannedCall, outcome: CallOutcome) -> None:
        level = logging.INFO if outcome.result is CallResult.SENT else logging.WARNING
        logger.log(
            level,
            "IMSHOP call",
            extra={
                "outcome": outcome.result.value,
                "reason": outcome.reason,
                "status": outcome.status,
                "recipients": len(call.recipients),
                "requests": len(call.message_ids),
                "sample": mask_recipients(rid for _, rid in call.recipients),
            },
        )

    # 6. settle ------------------------------------------------------------------------------------------
    def _settle(self, work: dict[str, _Work], attempt: _Attempt, results: dict[str, RecordResult]) -> None:
        for cid, digests in attempt.unrecorded_sent:
            try:
                self._state.mark_call(cid, digests, status=CallStatus.SENT, now=self._clock())
            except STORE_ERRORS:
                logger.exception("a confirmed call stays unrecorded: a retry of an unfinished request resends it")
        settlements = []
        deferrals = []
        poison: list[Poison] = []
        for message_id, w in work.items():
            if message_id in results:  # delivered by an earlier attempt
                settlements.append(Settlement(w.request.idempotency_key, w.request.fingerprint, True, ()))
                continue
            result = self._result_of(w)
            results[message_id] = result
            if result.disposition is Disposition.EXPIRED:
                self._expire(message_id, w.request, results)
            done = result.disposition is Disposition.DELIVERED  # expired is not delivered: a retry may send it
            attempts = () if done else (*w.attempts, w.attempt_id) if w.recorded_in_attempt else w.attempts
            settlements.append(Settlement(w.request.idempotency_key, w.request.fingerprint, done, attempts))
            if result.disposition is Disposition.DEFERRED:
                deferrals.append(self._deferral(w))
            elif result.disposition is Disposition.DEAD_LETTERED:
                key = w.request.idempotency_key if w.request.key_is_message_id else None
                poison.append(Poison(w.message, result.reason, idempotency_key=key))
        try:
            self._state.settle(settlements, now=self._clock())
        except STORE_ERRORS:
            logger.exception("cannot settle state: requests go back to SQS (progress is kept)")
            for message_id in work:
                results[message_id] = RecordResult(Disposition.RETRY, "state store unavailable")
            return
        if deferrals:
            self._metric(m.REQUESTS_DEFERRED, len(deferrals))
            for message_id in self._backlog.requeue(deferrals):
                results[message_id] = RecordResult(Disposition.RETRY, "could not re-enqueue backlog")
        if poison:
            self._dead_letter(poison, results)

    def _result_of(self, w: _Work) -> RecordResult:
        if w.poisoned:
            return RecordResult(Disposition.DEAD_LETTERED, w.poisoned)
        if w.failed:
            return RecordResult(Disposition.RETRY, w.failed)
        if w.expired:
            return RecordResult(Disposition.EXPIRED, "expiresAt has passed")
        if w.pending_calls:
            return RecordResult(Disposition.DEFERRED, "waiting for rate budget")
        return RecordResult(Disposition.DELIVERED)

    def _deferral(self, w: _Work) -> Deferral:
        retry_at = w.deferred_until if w.deferred_until is not None else self._clock()
        delay = max(0, int(retry_at - self._clock() + 0.999))
        return Deferral(w.message, delay, w.request.idempotency_key, w.request.key_is_message_id)

    def _dead_letter(self, poison: list[Poison], results: dict[str, RecordResult]) -> None:
        if not poison:
            return
        self._metric(m.DEAD_LETTERED, len(poison))
        if self._dead_letters is None:
            for p in poison:
                logger.warning(
                    "no DEAD_LETTER_QUEUE_URL: poison request dropped",
                    extra={"message_id": p.message.message_id, "reason": p.reason},
                )
                results[p.message.message_id] = RecordResult(Disposition.DEAD_LETTERED, p.reason)
            return
        failed = self._dead_letters.send(poison)
        for p in poison:
            if p.message.message_id in failed:
                results[p.message.message_id] = RecordResult(Disposition.RETRY, "could not write to the DLQ")
            else:
                results[p.message.message_id] = RecordResult(Disposition.DEAD_LETTERED, p.reason)

    # 7. keys kept ---------------------------------------------------------------------------------------
    def _retry_keyless_as_keyed_copies(
        self,
        requests: list[tuple[InboundMessage, NotificationRequest]],
        work: dict[str, _Work],
        results: dict[str, RecordResult],
    ) -> None:
        """A request keyed by its SQS message id, once IMSHOP may have had part of it, must not reach the DLQ
        through SQS's own redrive policy: SQS adds no attribute there, and the copy a redrive brings back has a
        new message id, so it would be a new request and resend what IMSHOP already confirmed. Such a request is
        not handed back for a retry: it goes back as a copy that carries its key as a message attribute, and
        from then on it is keyed like any other."""

        def may_have_progress(message: InboundMessage) -> bool:
            w = work.get(message.message_id)
            if w is None:  # not claimed: its history is unknown unless this is its first receive
                return message.receive_count > 1
            return bool(w.attempts) or w.reached_imshop

        retries = [
            Deferral(message, self._retry_delay_seconds, request.idempotency_key, True)
            for message, request in requests
            if request.key_is_message_id
            and results[message.message_id].disposition is Disposition.RETRY
            and may_have_progress(message)
        ]
        if not retries:
            return
        failed = self._backlog.requeue(retries)
        for deferral in retries:
            message_id = deferral.message.message_id
            if message_id not in failed:
                reason = f"retried as a keyed copy: {results[message_id].reason}"
                results[message_id] = RecordResult(Disposition.REQUEUED, reason)
        self._metric(m.RETRIES_REQUEUED, len(retries) - len(failed))

    @property
    def _retry_delay_seconds(self) -> int:
        return min(SQS_MAX_DELAY_SECONDS, max(1, math.ceil(self._window)))


def _first_of_each_id(messages: Sequence[InboundMessage]) -> list[InboundMessage]:
    """SQS may hand one message to a batch twice; its one batch response entry must speak for the one fate."""
    seen: dict[str, InboundMessage] = {}
    for message in messages:
        seen.setdefault(message.message_id, message)
    return list(seen.values())


def _expiry_order(request: NotificationRequest) -> float:
    return request.expires_at.timestamp() if request.expires_at is not None else math.inf


def _key_reused_reason() -> str:
    return "idempotencyKey: key reused with different content (it was already used for another notification)"


_NOT_CLAIMED_REASONS = {
    ClaimStatus.BUSY: "another execution is delivering this request",
    ClaimStatus.UNAVAILABLE: "state store unavailable for this request",
}

_CALL_METRIC = {
    CallResult.SENT: m.IMSHOP_CALLS_SENT,
    CallResult.FAILED: m.IMSHOP_CALLS_FAILED,
    CallResult.REJECTED: m.IMSHOP_CALLS_REJECTED,
    CallResult.AMBIGUOUS: m.IMSHOP_CALLS_AMBIGUOUS,
    CallResult.RATE_LIMITED: m.IMSHOP_CALLS_RATE_LIMITED,
}
