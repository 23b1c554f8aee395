"""A record's fate: one state, moved only by named transitions.

    received ──► claimed ──► planned ──► sent
       │            │           ├──► deferred ─────────┐
       │            │           ├──► expired ──────────┤
       │            │           └──► dead-lettered ◄───┤
       │            ├──► sent (by an earlier attempt)  │
       │            ├──► superseded (also from planned)│
       │            └──► cancelled (also from planned) │
       │                 (and from retry, see below)   │
       ├──► expired (before any claim)                 │
       ├──► woken (a wake of the pending pool)         │
       ├──► history copy (its kept entries written)    │
       ├──► held (not due: re-enqueued, never claimed) │
       ├──► cancelled (the store says so at the claim) │
       ├──► cancel recorded (the record was a cancel)  │
       ├──► duplicate                                  ▼
       ├──► dead-lettered (invalid, key reused)      retry ──► requeued (a keyed copy)
       └──► retry (store unavailable, lease busy)

A transition from a state it does not list leaves the fate as it is: the state it is in says more (poison
outranks a failure, a failure outranks expiry, expiry outranks waiting for budget). Only `give_back` moves
any state: a write the fate depended on (the settlement, the dead letter, the re-enqueue) did not happen.
A retry is cancelled when a later call of its attempt meets its cancel: that call is then not sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from imshop_push.domain.collapse import Collapsed
from imshop_push.domain.fallback import planned_content
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Content, Disposition, NotificationRequest, Recipient, RecordResult
from imshop_push.domain.status_record import SoFar


class Fate(enum.StrEnum):
    RECEIVED = "received"  # nothing decided yet
    CLAIMED = "claimed"  # this execution holds the request's lease
    PLANNED = "planned"  # calls of this attempt carry it (`Track.pending`)
    SENT = "sent"  # every recipient confirmed, now or by an earlier attempt
    DEFERRED = "deferred"  # out of budget: back to the queue with a delay (`Track.retry_at`)
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    DEAD_LETTERED = "dead_lettered"
    RETRY = "retry"  # back to SQS as a batch item failure
    REQUEUED = "requeued"  # a retry sent back as a copy that carries its key
    SUPERSEDED = "superseded"  # done without sending: a newer request of its collapseKey took every recipient left
    WOKEN = "woken"  # a wake message: its group's pooled requests joined the batch (`pending.py`)
    HISTORY_COPY = "history_copy"  # a history copy: the entries kept under its token are written (or gone)
    HELD = "held"  # not due yet (sendAt, quiet hours): re-enqueued unclaimed until it is (`Track.retry_at`)
    CANCELLED = "cancelled"  # its request was cancelled: what it had not sent is never sent
    CANCEL_RECORDED = "cancel_recorded"  # the record was a cancel (`Track.cancel_key`), now in the state store


_UNDECIDED = frozenset({Fate.RECEIVED, Fate.CLAIMED, Fate.PLANNED})
_FROM: dict[str, frozenset[Fate]] = {  # transition: the states it may leave
    "claim": frozenset({Fate.RECEIVED}),
    "duplicate": frozenset({Fate.RECEIVED}),
    "plan": frozenset({Fate.CLAIMED}),
    "sent_earlier": frozenset({Fate.CLAIMED}),
    "sent": frozenset({Fate.PLANNED}),
    "expire": frozenset({Fate.RECEIVED, Fate.PLANNED}),
    "defer": frozenset({Fate.PLANNED, Fate.DEFERRED}),
    "fill": frozenset({Fate.RECEIVED}),
    "retry": _UNDECIDED | {Fate.DEFERRED, Fate.EXPIRED},
    "dead_letter": _UNDECIDED | {Fate.DEFERRED, Fate.EXPIRED, Fate.RETRY, Fate.DEAD_LETTERED},
    "requeue": frozenset({Fate.RETRY}),
    "supersede": frozenset({Fate.CLAIMED, Fate.PLANNED}),
    "wake": frozenset({Fate.RECEIVED}),
    "history_copy": frozenset({Fate.RECEIVED}),
    "hold": frozenset({Fate.RECEIVED}),
    "cancelled": frozenset({Fate.RECEIVED, Fate.CLAIMED, Fate.PLANNED, Fate.RETRY}),
    "cancel_recorded": frozenset({Fate.RECEIVED}),
}

_DISPOSITIONS = {
    Fate.SENT: Disposition.DELIVERED,
    Fate.DEFERRED: Disposition.DEFERRED,
    Fate.EXPIRED: Disposition.EXPIRED,
    Fate.DUPLICATE: Disposition.DUPLICATE,
    Fate.DEAD_LETTERED: Disposition.DEAD_LETTERED,
    Fate.RETRY: Disposition.RETRY,
    Fate.REQUEUED: Disposition.REQUEUED,
    Fate.SUPERSEDED: Disposition.SUPERSEDED,
    Fate.WOKEN: Disposition.DELIVERED,
    Fate.HISTORY_COPY: Disposition.DELIVERED,
    Fate.HELD: Disposition.HELD,
    Fate.CANCELLED: Disposition.CANCELLED,
    Fate.CANCEL_RECORDED: Disposition.CANCEL_RECORDED,
}
SUPERSEDED_REASON = "a newer request of its collapseKey covers every recipient it had left"


@dataclass(slots=True, eq=False)
class Track:
    """One record on its way through the pipeline: its fate, and what the stages learned about it."""

    message: InboundMessage
    request: NotificationRequest | None = None  # None until parsed (and for ever, if it is not valid)
    fate: Fate = Fate.RECEIVED
    reason: str = ""
    history: tuple[str, ...] | None = None  # earlier attempts, known once claimed (None: never claimed here)
    remaining: tuple[Recipient, ...] = ()  # what earlier attempts left to send
    pending: set[int] = field(default_factory=set)  # indices of this attempt's calls still to carry it
    retry_at: float | None = None  # deferred: when its turn comes; held: when it is due
    recorded_in_attempt: bool = False  # a call carrying it was recorded: this attempt belongs to its history
    reached_imshop: bool = False  # a call carrying it was confirmed, or its outcome is unknown
    collapse: Collapsed | None = None  # its version and slots, when it has a collapseKey
    superseded: set[Recipient] = field(default_factory=set)  # recipients a newer request of its collapseKey took
    cancel_key: str | None = None  # the stored key a cancel names, when the record is a cancel
    so_far: SoFar | None = None  # what its earlier settlements recorded (None: none yet)
    reached_earlier: int = 0  # its recipients confirmed by earlier attempts
    confirmed: list[tuple[int, float]] = field(default_factory=list)  # (its recipients, when) per confirmed call
    switched: bool = False  # its recipients get its fallback's text (`stages/fallback.py`): for good, once set
    keeps_own_text: bool = False  # a call of its own text may have reached someone: never switched (`fallback.py`)
    first_sent_ms: int | None = None  # when SQS first accepted it, as its copies carry it (with a fallback)

    @property
    def message_id(self) -> str:
        return self.message.message_id

    @property
    def req(self) -> NotificationRequest:
        """The parsed request; only stages after parsing ask, and only for records that have one."""
        if self.request is None:
            raise ValueError(f"{self.message_id} has no parsed request")
        return self.request

    @property
    def text(self) -> Content:
        """What its recipients are planned (and merged, and wait) under: its own text, or once switched its
        fallback's."""
        return planned_content(self.req, self.switched)

    def result(self) -> RecordResult:
        disposition = _DISPOSITIONS.get(self.fate)
        if disposition is None:
            raise ValueError(f"{self.message_id} left the pipeline undecided ({self.fate})")
        return RecordResult(disposition, self.reason)

    # transitions ------------------------------------------------------------------------------------------
    def claim(self, history: tuple[str, ...]) -> None:
        if self._go("claim", Fate.CLAIMED):
            self.history = history

    def duplicate(self, reason: str) -> None:
        self._go("duplicate", Fate.DUPLICATE, reason)

    def plan(self) -> None:
        """Calls of this attempt carry what is left of it (`carry`)."""
        self._go("plan", Fate.PLANNED)

    def sent_earlier(self) -> None:
        self._go("sent_earlier", Fate.SENT, "delivered by an earlier attempt")

    def carry(self, call_index: int) -> None:
        self.pending.add(call_index)

    def call_done(self, call_index: int) -> None:
        """The call no longer carries it (confirmed, or nobody live was left in it)."""
        self.pending.discard(call_index)
        if not self.pending:
            if self.remaining and self.superseded.issuperset(self.remaining):
                self._go("supersede", Fate.SUPERSEDED, SUPERSEDED_REASON)
            else:
                self._go("sent", Fate.SENT)

    def drop_superseded(self, recipients: set[Recipient]) -> None:
        """A newer request of its collapseKey takes these: before planning they leave what is left to send, and
        a request with nothing left is done without a call."""
        self.superseded |= recipients
        if self.fate is Fate.CLAIMED:
            self.remaining = tuple(r for r in self.remaining if r not in self.superseded)
            if not self.remaining:
                self._go("supersede", Fate.SUPERSEDED, SUPERSEDED_REASON)

    def expire_if_due(self, now: datetime) -> bool:
        """True when the request has expired: it is never sent late, whatever its fate says."""
        if not self.req.is_expired(now):
            return False
        self._go("expire", Fate.EXPIRED, "expiresAt has passed")
        return True

    def defer(self, turn: float) -> None:
        if self._go("defer", Fate.DEFERRED, "waiting for rate budget"):
            self.retry_at = turn if self.retry_at is None else min(self.retry_at, turn)

    def wait_to_fill(self, turn: float) -> None:
        """Unclaimed, into the pending pool: its call would be partial and more of its text is on its way."""
        if self._go("fill", Fate.DEFERRED, "waiting for the rest of its text"):
            self.retry_at = turn

    def wake(self, reason: str) -> None:
        self._go("wake", Fate.WOKEN, reason)

    def history_copy(self, reason: str) -> None:
        self._go("history_copy", Fate.HISTORY_COPY, reason)

    def hold(self, until: float, reason: str) -> None:
        """Not due before `until`: it goes back to the queue as a new message, never claimed meanwhile."""
        if self._go("hold", Fate.HELD, reason):
            self.retry_at = until

    def cancelled(self) -> None:
        self._go("cancelled", Fate.CANCELLED, "cancelled: what was not sent is never sent")

    def cancel_recorded(self) -> None:
        self._go("cancel_recorded", Fate.CANCEL_RECORDED, "cancel recorded")

    def retry(self, reason: str) -> None:
        self._go("retry", Fate.RETRY, reason)

    def dead_letter(self, reason: str) -> None:
        self._go("dead_letter", Fate.DEAD_LETTERED, reason)

    def requeue(self, reason: str) -> None:
        self._go("requeue", Fate.REQUEUED, reason)

    def give_back(self, reason: str) -> None:
        self.fate, self.reason = Fate.RETRY, reason

    def _go(self, transition: str, to: Fate, reason: str = "") -> bool:
        if self.fate not in _FROM[transition]:
            return False
        self.fate, self.reason = to, reason
        return True
