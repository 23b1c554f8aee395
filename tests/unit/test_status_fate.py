"""The status lookup's pure part: which fate the kept facts mean, and one recipient's answer from digests."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from imshop_push.domain.model import Content, Recipient
from imshop_push.domain.state import CallRecord, CallStatus, delivery_digests
from imshop_push.domain.status import Answer, StoredRequest, answer
from imshop_push.domain.status_record import Outcome, Report, StatusRecord, member_digests

NOW = 1_800_000_000_000
TEXT = Content("Заказ передан в доставку", "Курьер приедет завтра", None)
KEY = "order-123"
ALICE, BOB, EVE = "79990000001", "79990000002", "79990000003"
BOTH: tuple[Recipient, ...] = (("userIds", ALICE), ("userIds", BOB))


def record(**changes: Any) -> StatusRecord:
    return StatusRecord(KEY, NOW - 60_000, TEXT, member_digests(KEY, BOTH), len(BOTH))._replace(**changes)


def report(outcome: Outcome, *, reached: int = 0, calls: int = 0, **changes: Any) -> Report:
    return Report(outcome, NOW - 1_000, calls, reached, 2)._replace(**changes)


def settled(outcome: Outcome, *, done: bool = False, lease: int = 0, **changes: Any) -> StoredRequest:
    return StoredRequest(done, lease, ("a1",), report(outcome, **changes))


def call(*recipients: str, status: CallStatus = CallStatus.SENT, at: int = NOW - 5_000) -> CallRecord:
    digests = frozenset(delivery_digests(TEXT, [("userIds", r) for r in recipients]))
    return CallRecord("a1", status, digests, at)


def ask(
    *,
    request: StoredRequest | None = None,
    cancelled_at: int | None = None,
    kept: StatusRecord | None = None,
    calls: tuple[CallRecord, ...] = (),
    recipient: str | None = None,
) -> Answer:
    return answer(
        KEY,
        now_ms=NOW,
        request=request,
        cancelled=cancelled_at is not None,
        cancelled_at=cancelled_at,
        record=kept,
        calls=calls,
        recipient=recipient,
    )


def test_nothing_kept_is_unknown_and_says_nothing_of_a_recipient() -> None:
    assert ask(recipient=ALICE).as_json() == {"key": KEY, "fate": "unknown"}


def test_sent_says_when_the_last_call_was_confirmed_how_many_calls_and_reached_of_total() -> None:
    request = settled(Outcome.SENT, done=True, reached=2, calls=2, last_sent_ms=NOW - 5_000)
    reached = ask(request=request, kept=record(), calls=(call(BOB), call(ALICE)), recipient=ALICE)
    assert reached.as_json() == {
        "key": KEY,
        "fate": "sent",
        "at": NOW - 5_000,
        "calls": 2,
        "recipients": {"reached": 2, "total": 2},
        "recipient": {"reached": True, "at": NOW - 5_000, "text": "own"},
    }
    stranger = ask(request=request, kept=record(), calls=(call(ALICE, BOB),), recipient=EVE).recipient
    assert stranger is not None
    assert stranger.as_json() == {"reached": False, "why": "not-a-recipient"}


def test_a_recipient_of_a_call_whose_outcome_is_unknown_or_failed_is_not_reached() -> None:
    request = settled(Outcome.RETRY)
    calls = (call(ALICE, status=CallStatus.PENDING), call(ALICE, status=CallStatus.FAILED))
    answered = ask(request=request, kept=record(), calls=calls, recipient=ALICE)
    assert answered.fate == "in-progress"
    assert answered.recipient is not None
    assert answered.recipient.as_json() == {"reached": False, "why": "not-yet"}


def test_a_call_that_carried_a_fallback_text_says_so() -> None:
    request = settled(Outcome.SENT, done=True, reached=2, calls=1)
    fallback = dataclasses.replace(call(ALICE, BOB), text="fallback")
    answered = ask(request=request, kept=record(), calls=(fallback,), recipient=BOB)
    assert answered.recipient is not None
    assert answered.recipient.text == "fallback"


def test_live_fates_and_their_times() -> None:
    held = ask(kept=record(held_until_ms=NOW + 60_000), recipient=ALICE)
    assert (held.fate, held.at, held.recipient) == ("held", NOW + 60_000, held.recipient)
    assert held.recipient is not None
    assert held.recipient.why == "not-yet"
    assert ask(kept=record(held_until_ms=NOW - 1)).fate == "in-progress", "due: on its way to its claim"
    waiting = ask(request=settled(Outcome.WAITING, waiting_since_ms=NOW - 30_000))
    assert (waiting.fate, waiting.at) == ("waiting", NOW - 30_000)
    assert ask(request=settled(Outcome.WAITING, lease=NOW + 1)).fate == "in-progress", "claimed again"
    assert ask(request=StoredRequest(False, NOW + 1, ("a1",), None)).fate == "in-progress", "first attempt"


def test_stopped_before_any_recipient_was_reached() -> None:
    cancelled = ask(cancelled_at=NOW - 9_000, recipient=ALICE)
    assert cancelled.as_json() == {
        "key": KEY,
        "fate": "cancelled",
        "at": NOW - 9_000,
        "recipient": {"reached": False, "why": "cancelled"},
    }, "a key cancelled before its request came"
    expired = ask(kept=record(expired=True), recipient=ALICE)
    assert (expired.fate, expired.at) == ("expired", NOW - 60_000)
    late = ask(request=settled(Outcome.WAITING, expires_at_ms=NOW - 1), recipient=BOB)
    assert (late.fate, late.at) == ("expired", NOW - 1), "its expiresAt passed while it waited"
    dead = ask(kept=record(dead_letter="message: is required"), recipient=ALICE)
    assert (dead.fate, dead.reason) == ("dead-lettered", "message: is required")
    assert dead.recipient is not None
    assert dead.recipient.why == "dead-lettered"
    superseded = ask(request=settled(Outcome.SUPERSEDED, done=True), kept=record(), recipient=ALICE)
    assert (superseded.fate, superseded.at) == ("superseded", NOW - 1_000)
    assert superseded.recipient is not None
    assert superseded.recipient.why == "superseded"


def test_stopped_after_some_recipients_were_reached_is_partly_sent_with_what_stopped_the_rest() -> None:
    for outcome, reason, why in (
        (Outcome.DEAD_LETTERED, "IMSHOP refused: 400", "dead-lettered"),
        (Outcome.EXPIRED, "expired", "expired"),
        (Outcome.SENT, "superseded", "superseded"),
    ):
        dead_letter = reason if outcome is Outcome.DEAD_LETTERED else None
        done = outcome is Outcome.SENT
        request = settled(outcome, done=done, reached=1, calls=1, last_sent_ms=NOW - 7_000, reason=dead_letter)
        answered = ask(request=request, kept=record(), calls=(call(ALICE),), recipient=BOB)
        assert answered.as_json() == {
            "key": KEY,
            "fate": "partly-sent",
            "at": NOW - 7_000,
            "calls": 1,
            "recipients": {"reached": 1, "total": 2},
            "reason": reason,
            "recipient": {"reached": False, "why": why},
        }
    cancelled = ask(request=settled(Outcome.CANCELLED, reached=1, calls=1), cancelled_at=NOW - 3_000)
    assert (cancelled.fate, cancelled.reason) == ("partly-sent", "cancelled")


def test_a_cancel_after_the_request_was_done_changes_nothing() -> None:
    request = settled(Outcome.SENT, done=True, reached=2, calls=1, last_sent_ms=NOW - 5_000)
    assert ask(request=request, cancelled_at=NOW - 1_000).fate == "sent"


@given(
    outcome=st.sampled_from(list(Outcome)),
    done=st.booleans(),
    reached=st.integers(0, 2),
    cancelled=st.booleans(),
    recipient=st.sampled_from([ALICE, BOB, EVE]),
)
def test_every_answer_is_one_json_object_of_the_documented_shape(
    outcome: Outcome, done: bool, reached: int, cancelled: bool, recipient: str
) -> None:
    request = settled(outcome, done=done, reached=reached, calls=reached)
    calls = (call(ALICE, BOB),) if reached == 2 else (call(ALICE),) if reached == 1 else ()
    answered = ask(
        request=request, cancelled_at=NOW if cancelled else None, kept=record(), calls=calls, recipient=recipient
    ).as_json()
    assert set(answered) <= {"key", "fate", "at", "calls", "recipients", "reason", "recipient"}
    assert None not in answered.values()
    assert recipient not in json.dumps(answered)
    answered_recipient = answered["recipient"]
    assert set(answered_recipient) <= {"reached", "at", "text", "why"}
    assert answered_recipient["reached"] == ("why" not in answered_recipient)
    if recipient == EVE:
        assert answered_recipient == {"reached": False, "why": "not-a-recipient"}
    if answered["fate"] == "partly-sent":
        assert 0 < answered["recipients"]["reached"] < answered["recipients"]["total"]
        assert "reason" in answered
