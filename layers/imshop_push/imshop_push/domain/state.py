"""Delivery progress that survives redelivery, crashes and concurrent executions.

Why not Powertools' idempotency decorator alone: it makes one *function call* happen once, and our unit of
work is a recipient of a request, delivered by a merged call that serves many requests. So the store keeps:

- per request (idempotency key): its fingerprint, whether it is done, a lease (one execution at a time),
  and the ids of the attempts that worked on it (recorded when claiming, before any call);
- per attempt: how many calls it planned;
- per call: the digests of the recipients it carried, written *before* the call as "pending" and turned to
  "sent" right after IMSHOP confirmed it (or "failed" when IMSHOP surely did not deliver).

A redelivered request reads the calls of its own attempts: recipients of sent calls are skipped; recipients
of a call still "pending" are the ambiguous case (the execution died, or the answer never came): they are sent
again (at least once beats lost) and counted.
"""

from __future__ import annotations

import enum
import hashlib
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from imshop_push.domain.model import Content, Recipient, StoreError
from imshop_push.domain.status_record import Report, SoFar, StatusRecord

DIGEST_SIZE = 8


class StateStoreError(StoreError):
    """The state table did not take or give what was asked, even after retries (throttled batch writes, or any
    error of the table's client, which the adapter translates into this)."""


class ClaimStatus(enum.StrEnum):
    CLAIMED = "claimed"  # this execution now owns the request
    DUPLICATE = "duplicate"  # already delivered: acknowledge, do nothing
    CONFLICT = "conflict"  # the key was used before for other content: poison
    BUSY = "busy"  # another live execution holds it: retry later
    UNAVAILABLE = "unavailable"  # the store refused this one claim (e.g. throttled): retry later, alone
    CANCELLED = "cancelled"  # a cancel names the key (before or after the request came): never send the rest


class Claim(NamedTuple):
    status: ClaimStatus
    attempts: tuple[str, ...] = ()
    so_far: SoFar | None = None
    """What earlier settlements of a claimed request recorded; None: none was written yet."""


class CallStatus(enum.StrEnum):
    PENDING = "pending"  # written before the call: if it stays so, the outcome is unknown
    SENT = "sent"  # IMSHOP confirmed
    FAILED = "failed"  # IMSHOP surely did not deliver (5xx, success: false, 429, refused connection)


@dataclass(frozen=True, slots=True)
class CallRecord:
    attempt_id: str
    status: CallStatus
    digests: frozenset[bytes]
    at_ms: int | None = None  # when the record was written: for a sent call, when IMSHOP confirmed it
    text: str = "own"  # which text the call carried: the request's own, or a fallback


class Settlement(NamedTuple):
    """Where a claimed request stands when the execution lets go of it."""

    key: str
    fingerprint: str
    done: bool
    attempts: tuple[str, ...]
    report: Report | None = None  # what a status lookup reads from the request's item
    record: StatusRecord | None = None  # its status item, when none was written before (its first settlement)


class StateStore(Protocol):
    def claim_many(
        self, requests: Sequence[tuple[str, str]], *, attempt_id: str, now: float, lease_until: float
    ) -> dict[str, Claim]:
        """Claim each (key, fingerprint) and record `attempt_id` on it *before* any call is made, so an
        execution that dies mid-way leaves a trail to the calls it made. Returns the earlier attempts."""
        ...

    def start_attempt(self, attempt_id: str, call_count: int, *, now: float) -> None: ...

    def load_calls(self, attempt_ids: Collection[str], *, now: float) -> list[CallRecord]:
        """The calls of these attempts. Their records are renewed for another TTL from `now`: the request that
        reads them is alive, so its progress must outlive it."""
        ...

    def mark_call(self, call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None: ...

    def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        """Where each request stands; a request's cancel mark, if it has one, stays as it is."""
        ...

    def cancel(self, keys: Collection[str], *, now: float) -> None:
        """Mark each key cancelled for the TTL from `now`, whether or not its request has come yet: its claims
        are then `CANCELLED`, unless it was done already (`DUPLICATE`: a cancel changes nothing then)."""
        ...

    def cancelled(self, keys: Collection[str], *, now: float) -> set[str]:
        """Which of these keys a cancel names: the check right before a call."""
        ...

    def record_status(self, records: Sequence[StatusRecord], *, now: float, only_new: bool = False) -> None:
        """Write each request's status item (`status_record.py`); with `only_new`, only where it has none yet
        (a read first: cheaper than a write)."""
        ...


def delivery_digests(content: Content, recipients: Iterable[Recipient]) -> list[bytes]:
    """8 bytes per (content, recipient) that name it without storing the recipient id (often a phone number)."""
    prefix = "\x1f".join((content.title, content.summary, content.deeplink or "", ""))
    return [
        hashlib.blake2b(f"{prefix}{field}\x1f{rid}".encode(), digest_size=DIGEST_SIZE).digest()
        for field, rid in recipients
    ]


def pack_digests(digests: Collection[bytes]) -> bytes:
    return b"".join(digests)


def unpack_digests(packed: bytes) -> frozenset[bytes]:
    return frozenset(packed[i : i + DIGEST_SIZE] for i in range(0, len(packed), DIGEST_SIZE))


def call_id(attempt_id: str, index: int) -> str:
    return f"{attempt_id}#{index}"


class InProcessStateStore:
    """The same semantics in memory. For local runs only: a redelivery to another process forgets it all."""

    def __init__(self) -> None:
        self._requests: dict[str, tuple[str, bool, float, tuple[str, ...]]] = {}
        self._attempts: dict[str, int] = {}
        self._calls: dict[str, tuple[CallStatus, bytes]] = {}
        self._cancelled: set[str] = set()
        self.status: dict[str, StatusRecord] = {}
        self.reports: dict[str, Report] = {}
        self.status_writes = 0  # items written, as a DynamoDB table would bill them
        self._lock = threading.Lock()

    def claim_many(
        self, requests: Sequence[tuple[str, str]], *, attempt_id: str, now: float, lease_until: float
    ) -> dict[str, Claim]:
        claims: dict[str, Claim] = {}
        with self._lock:
            for key, fingerprint in requests:
                current = self._requests.get(key)
                if key in self._cancelled and (current is None or not current[1]):
                    claims[key] = Claim(ClaimStatus.CANCELLED)
                elif current is None:
                    self._requests[key] = (fingerprint, False, lease_until, (attempt_id,))
                    claims[key] = Claim(ClaimStatus.CLAIMED)
                else:
                    claims[key] = self._claim_existing(
                        key, current=current, fingerprint=fingerprint, attempt_id=attempt_id, now=now, until=lease_until
                    )
        return claims

    def _claim_existing(
        self,
        key: str,
        *,
        current: tuple[str, bool, float, tuple[str, ...]],
        fingerprint: str,
        attempt_id: str,
        now: float,
        until: float,
    ) -> Claim:
        stored_fingerprint, done, leased_until, attempts = current
        if stored_fingerprint != fingerprint:
            return Claim(ClaimStatus.CONFLICT)
        if done:
            return Claim(ClaimStatus.DUPLICATE)
        if leased_until > now:
            return Claim(ClaimStatus.BUSY)
        self._requests[key] = (fingerprint, False, until, (*attempts, attempt_id))
        report = self.reports.get(key)
        return Claim(ClaimStatus.CLAIMED, attempts, None if report is None else report.so_far())

    def start_attempt(self, attempt_id: str, call_count: int, *, now: float) -> None:
        with self._lock:
            self._attempts[attempt_id] = call_count

    def load_calls(self, attempt_ids: Collection[str], *, now: float) -> list[CallRecord]:
        with self._lock:
            records = []
            for attempt_id in attempt_ids:
                for index in range(self._attempts.get(attempt_id, 0)):
                    call = self._calls.get(call_id(attempt_id, index))
                    if call is not None:
                        records.append(CallRecord(attempt_id, call[0], unpack_digests(call[1])))
            return records

    def mark_call(self, call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None:
        with self._lock:
            self._calls[call_id] = (status, digests)

    def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        with self._lock:
            for s in settlements:
                self._requests[s.key] = (s.fingerprint, s.done, 0.0, () if s.done else s.attempts)
                if s.report is not None:
                    self.reports[s.key] = s.report
                if s.record is not None:
                    self.status[s.key] = s.record
                    self.status_writes += 1

    def cancel(self, keys: Collection[str], *, now: float) -> None:
        with self._lock:
            self._cancelled.update(keys)

    def cancelled(self, keys: Collection[str], *, now: float) -> set[str]:
        with self._lock:
            return self._cancelled.intersection(keys)

    def record_status(self, records: Sequence[StatusRecord], *, now: float, only_new: bool = False) -> None:
        with self._lock:
            for record in records:
                if not only_new or record.key not in self.status:
                    self.status[record.key] = record
                    self.status_writes += 1
