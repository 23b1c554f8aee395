"""Latest wins per (collapseKey, recipient): the order of a request's versions, and where the newest is kept.

A version orders requests as the contract does: by `createdAt` (an instant), then by when SQS first handed
the request over (equal instants: the one first received later wins), then by idempotency key (only so that
two executions always agree). It is one string whose byte order is that order, so a conditional write of the
state table compares it as it is, and a request re-received (a redelivery, a re-enqueued copy carrying its
order) is the same version, never a newer one. Every instant a `createdAt` can name sorts in place, down to
year 1 with a positive offset (a few hours before year 1 in UTC).

A slot is one (collapseKey, recipient), named by a digest: neither the key nor the recipient id (often a
phone number) is stored in clear.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import NotificationRequest, Recipient
from imshop_push.domain.sqs_copies import copy_order

_MS_SINCE_YEAR_1 = 62_135_596_800_000  # 0001-01-01 to 1970-01-01: every instant of year 1 or later in UTC is >= 0
_WIDTH = 18
_KEY_AT = 2 * (_WIDTH + 1)
_BELOW_ZERO = 10 ** (_WIDTH - 1)  # what a count below zero is written from, after its '-' (which sorts before '0')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_SEPARATOR = "\x1f"


class Collapsed(NamedTuple):
    """What a request with a collapseKey needs to be compared: its version and the slot of each recipient."""

    version: str
    slots: dict[Recipient, str]
    order: tuple[int, int]  # (createdAt, first received) in epoch ms: what a re-enqueued copy carries


def version(created_ms: int, received_ms: int, key: str) -> str:
    return f"{_sortable(created_ms)}.{_sortable(received_ms)}.{key}"


def _sortable(epoch_ms: int) -> str:
    """Fixed width, byte order = number order. Instants since year 1 are written as they always were (versions
    stored by earlier releases still compare); the few hours before it that a `createdAt` in year 1 with a
    positive offset names are written after a '-', counted up from -10**17, so they sort before year 1 and in
    their own order instead of backwards. Beyond what any datetime holds, the value is clamped."""
    since_year_1 = min(max(epoch_ms + _MS_SINCE_YEAR_1, 1 - _BELOW_ZERO), 10**_WIDTH - 1)
    if since_year_1 >= 0:
        return f"{since_year_1:0{_WIDTH}d}"
    return f"-{_BELOW_ZERO + since_year_1:0{_WIDTH - 1}d}"


def epoch_ms(instant: datetime) -> int:
    """Whole milliseconds since 1970, rounded down, exactly: a float timestamp loses a millisecond to rounding
    now and then, and truncates towards zero before 1970."""
    return (instant - _EPOCH) // _MS


def supersedes(stored: str, given: str) -> bool:
    """A newer version of another request. A producer's retry of the same request (same idempotency key) sent
    again without createdAt is a later version of itself, never a newer request: were it one, the first copy
    would settle the key as done, and the retry would then be skipped as a duplicate of it."""
    return stored > given and stored[_KEY_AT:] != given[_KEY_AT:]


def order_of(request: NotificationRequest, message: InboundMessage, now_ms: int) -> tuple[int, int] | None:
    """(createdAt, first received) in epoch ms, or None without a collapseKey. The order a copy of the dispatcher
    carries comes first: it holds what the first message of the request said. Only such a copy's: an attribute a
    producer set, whatever its name, never decides (`sqs_copies.copy_order`)."""
    if request.collapse_key is None:
        return None
    carried_created, carried_received = copy_order(message) or (None, None)
    if request.created_at is not None:
        created = epoch_ms(request.created_at)
    else:
        created = _first(carried_created, message.sent_timestamp_ms, now_ms)
    received = _first(carried_received, message.first_received_ms, now_ms)
    return created, received


def collapsed(request: NotificationRequest, order: tuple[int, int], recipients: tuple[Recipient, ...]) -> Collapsed:
    key = request.collapse_key or ""
    return Collapsed(version(*order, request.idempotency_key), {r: slot_id(key, r) for r in recipients}, order)


def slot_id(collapse_key: str, recipient: Recipient) -> str:
    """One name per (collapseKey, recipient), whatever characters the key and the id hold. Joined by a separator
    the field never contains, the text is unambiguous as long as the key holds no separator either (the key ends
    at the first one): that form is kept, so slots stored before stay valid. A key that holds the separator
    could otherwise pair with an id that holds it (`a<US>userIds<US>b` + `c`, `a` + `b<US>userIds<US>c`): its
    text says the key's length, hashed under another personalisation, apart from the first form."""
    field, rid = recipient
    if _SEPARATOR not in collapse_key:
        text = f"{collapse_key}{_SEPARATOR}{field}{_SEPARATOR}{rid}".encode("utf-8", "surrogatepass")
        return hashlib.blake2b(text, digest_size=16).hexdigest()
    text = f"{len(collapse_key)}:{collapse_key}{_SEPARATOR}{field}{_SEPARATOR}{rid}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16, person=b"slot:key-length").hexdigest()


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


class VersionStore(Protocol):
    def record(self, versions: Mapping[str, str], *, now: float) -> set[str]:
        """Store each slot's version unless a newer one is stored. Returns the slots that hold a newer version of
        another request (`supersedes`): there the given one is superseded. Raises StoreError."""
        ...

    def newer(self, versions: Mapping[str, str], *, now: float) -> set[str]:
        """The slots whose stored version supersedes the given one. Raises StoreError."""
        ...


class InProcessVersionStore:
    """The same semantics in memory, for local runs (and the unit tests)."""

    def __init__(self) -> None:
        self._newest: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, versions: Mapping[str, str], *, now: float) -> set[str]:
        lost = set()
        with self._lock:
            for slot, given in versions.items():
                stored = self._newest.get(slot)
                if stored is None or stored <= given:
                    self._newest[slot] = given
                elif supersedes(stored, given):
                    lost.add(slot)
        return lost

    def newer(self, versions: Mapping[str, str], *, now: float) -> set[str]:
        with self._lock:
            return {slot for slot, given in versions.items() if supersedes(self._newest.get(slot, given), given)}
