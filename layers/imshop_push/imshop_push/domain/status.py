"""Where is my push? A request's fate, and one recipient's, from what the state table keeps (`status_record.py`).

Support hears "no push came for order 123": the answer must come from the key alone, without logs. Pure: the
adapter (`status_dynamodb.py`) reads the items, this decides what they mean. Times are epoch milliseconds.

Which fate, when several facts are kept: a cancel that came before the request was done names it (what was not
sent never is); then what the request's last settlement or status item says stopped it (dead letter, expiry);
an expiresAt that has passed while it was not done; then done (sent, superseded); then live (in progress,
waiting, held). A request stopped after some of its recipients were reached is `partly-sent`, its `reason`
what stopped the rest.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple

from imshop_push.domain.model import Content
from imshop_push.domain.state import CallRecord, CallStatus, delivery_digests
from imshop_push.domain.status_record import (
    RECIPIENT_FIELDS,
    Outcome,
    Report,
    StatusRecord,
    member_digest,
    unpack_members,
)


class Fate(enum.StrEnum):
    UNKNOWN = "unknown"  # never received, or older than the state TTL
    HELD = "held"  # not due before `at` (its sendAt, or the end of the quiet hours)
    WAITING = "waiting"  # for rate budget, since `at`
    IN_PROGRESS = "in-progress"
    SENT = "sent"
    PARTLY_SENT = "partly-sent"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DEAD_LETTERED = "dead-lettered"


class Why(enum.StrEnum):
    """Why a recipient was not reached."""

    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DEAD_LETTERED = "dead-lettered"
    NOT_A_RECIPIENT = "not-a-recipient"
    NOT_YET = "not-yet"


class StoredRequest(NamedTuple):
    """The request's item: its claim and its last settlement."""

    done: bool
    lease_until_ms: int
    attempts: tuple[str, ...]
    report: Report | None


class RecipientAnswer(NamedTuple):
    reached: bool
    at: int | None = None
    text: str | None = None
    why: Why | None = None

    def as_json(self) -> dict[str, Any]:
        return _without_none({"reached": self.reached, "at": self.at, "text": self.text, "why": self.why})


class Answer(NamedTuple):
    key: str
    fate: Fate
    at: int | None = None
    calls: int | None = None
    reached: int | None = None
    total: int | None = None
    reason: str | None = None
    recipient: RecipientAnswer | None = None

    def as_json(self) -> dict[str, Any]:
        """The one JSON object `make status JSON=1` prints: fields without a value are left out."""
        answer = _without_none({"key": self.key, "fate": self.fate.value, "at": self.at, "calls": self.calls})
        if self.reached is not None and self.total is not None:
            answer["recipients"] = {"reached": self.reached, "total": self.total}
        if self.reason is not None:
            answer["reason"] = self.reason
        if self.recipient is not None:
            answer["recipient"] = self.recipient.as_json()
        return answer


class _Stop(NamedTuple):
    fate: Fate
    at: int | None
    reason: str | None = None


_STOPPED_BY = {
    Outcome.DEAD_LETTERED: Fate.DEAD_LETTERED,
    Outcome.EXPIRED: Fate.EXPIRED,
    Outcome.CANCELLED: Fate.CANCELLED,
}
_WHY = {
    Fate.SUPERSEDED: Why.SUPERSEDED,
    Fate.CANCELLED: Why.CANCELLED,
    Fate.EXPIRED: Why.EXPIRED,
    Fate.DEAD_LETTERED: Why.DEAD_LETTERED,
}


def answer(
    key: str,
    *,
    now_ms: int,
    request: StoredRequest | None,
    cancelled_at: int | None,
    cancelled: bool,
    record: StatusRecord | None,
    calls: Sequence[CallRecord] = (),
    recipient: str | None = None,
) -> Answer:
    """The request's fate; with `recipient` (a userId or an installId), that recipient's too, from the digests of
    the calls of the request's attempts (`calls`) and of its own recipients (`record`)."""
    state, stop = _fate(now_ms, request, cancelled_at, cancelled, record)
    report = request.report if request is not None else None
    total = report.total if report is not None else (record.total if record is not None and record.members else None)
    base = Answer(
        key,
        state.fate,
        state.at,
        report.calls if report is not None else None,
        report.reached if report is not None else (0 if total is not None else None),
        total,
        state.reason,
    )
    if recipient is None or state.fate is Fate.UNKNOWN:
        return base
    return base._replace(recipient=_recipient(key, recipient, fate=state.fate, stop=stop, record=record, calls=calls))


def _fate(
    now_ms: int, request: StoredRequest | None, cancelled_at: int | None, cancelled: bool, record: StatusRecord | None
) -> tuple[_Stop, _Stop | None]:
    """The fate (as a stop: name, when, why), and what stopped the request when something did."""
    report = request.report if request is not None else None
    done = request is not None and request.done
    if report is not None and report.total and report.reached >= report.total:  # whatever came after: all reached
        return _Stop(Fate.SENT, report.last_sent_ms), None
    stop = _stop(now_ms, report, cancelled_at=cancelled_at, cancelled=cancelled, done=done, record=record)
    reached = report.reached if report is not None else 0
    if stop is not None:
        if reached:
            last = report.last_sent_ms if report is not None else None
            return _Stop(Fate.PARTLY_SENT, last, stop.reason or stop.fate.value), stop
        return stop, stop
    if done and report is not None:
        superseded = _Stop(Fate.SUPERSEDED, report.at_ms)
        if report.reached == 0:
            return superseded, superseded
        return _Stop(Fate.PARTLY_SENT, report.last_sent_ms, Fate.SUPERSEDED.value), superseded
    if done:  # settled by a version that kept no report
        return _Stop(Fate.SENT, None), None
    return _live(now_ms, request, record), None


def _stop(
    now_ms: int,
    report: Report | None,
    *,
    cancelled_at: int | None,
    cancelled: bool,
    done: bool,
    record: StatusRecord | None,
) -> _Stop | None:
    if cancelled and not done:
        return _Stop(Fate.CANCELLED, cancelled_at)
    if report is not None and report.outcome in _STOPPED_BY:
        fate = _STOPPED_BY[report.outcome]
        return _Stop(fate, report.at_ms, report.reason if fate is Fate.DEAD_LETTERED else None)
    if report is None and record is not None:
        if record.dead_letter is not None:
            return _Stop(Fate.DEAD_LETTERED, record.at_ms, record.dead_letter)
        if record.expired:
            return _Stop(Fate.EXPIRED, record.at_ms)
    expires_at = report.expires_at_ms if report is not None else (record.expires_at_ms if record else None)
    if not done and expires_at is not None and expires_at <= now_ms:
        return _Stop(Fate.EXPIRED, expires_at)
    return None


def _live(now_ms: int, request: StoredRequest | None, record: StatusRecord | None) -> _Stop:
    if request is not None:
        report = request.report
        if request.lease_until_ms <= now_ms and report is not None and report.outcome is Outcome.WAITING:
            return _Stop(Fate.WAITING, report.waiting_since_ms)
        return _Stop(Fate.IN_PROGRESS, None)
    if record is not None and record.held_until_ms is not None and record.held_until_ms > now_ms:
        return _Stop(Fate.HELD, record.held_until_ms)
    if record is not None:  # due, or written by a decision that did not stop it: on its way to a claim
        return _Stop(Fate.IN_PROGRESS, None)
    return _Stop(Fate.UNKNOWN, None)


def _recipient(
    key: str,
    recipient: str,
    *,
    fate: Fate,
    stop: _Stop | None,
    record: StatusRecord | None,
    calls: Sequence[CallRecord],
) -> RecipientAnswer:
    content = record.content if record is not None else None
    if content is not None:
        digests = set(_digests(content, recipient))
        reached = [c for c in calls if c.status is CallStatus.SENT and not digests.isdisjoint(c.digests)]
        if reached:
            last = max(reached, key=lambda c: c.at_ms or 0)
            return RecipientAnswer(True, last.at_ms, last.text)
    if record is not None and record.members and _not_a_member(key, recipient, record.members):
        return RecipientAnswer(False, why=Why.NOT_A_RECIPIENT)
    if stop is not None:
        return RecipientAnswer(False, why=_WHY[stop.fate])
    if fate is Fate.SENT:  # done, yet not in one of its calls: only a newer request of its collapseKey does that
        return RecipientAnswer(False, why=Why.SUPERSEDED)
    return RecipientAnswer(False, why=Why.NOT_YET)


def _digests(content: Content, recipient: str) -> list[bytes]:
    return delivery_digests(content, [(field, recipient) for field in RECIPIENT_FIELDS])


def _not_a_member(key: str, recipient: str, members: bytes) -> bool:
    packed = unpack_members(members)
    return all(member_digest(key, (field, recipient)) not in packed for field in RECIPIENT_FIELDS)


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
