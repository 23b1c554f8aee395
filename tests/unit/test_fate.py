"""A record's fate: the named transitions, and which facts outrank which when several happen to one request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from imshop_push.domain.fate import Fate, Track
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Content, Disposition, NotificationRequest, RecordResult

NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def track(*, expires_at: datetime | None = None) -> Track:
    request = NotificationRequest(
        "m1", "key-1", Content("t", "s", None), (("userIds", "u1"),), expires_at, "fingerprint"
    )
    return Track(InboundMessage("m1", "{}"), request)


def planned(*calls: int, expires_at: datetime | None = None) -> Track:
    t = track(expires_at=expires_at)
    t.claim(())
    t.plan()
    for index in calls:
        t.carry(index)
    return t


def test_a_request_is_sent_when_the_last_call_carrying_it_is_done() -> None:
    t = planned(0, 1)
    t.call_done(0)
    assert t.fate is Fate.PLANNED
    t.call_done(1)
    assert t.result() == RecordResult(Disposition.DELIVERED)


def test_poison_outranks_a_failure_and_a_failure_outranks_expiry() -> None:
    t = planned(0, 1, expires_at=NOW - timedelta(seconds=1))
    assert t.expire_if_due(NOW)
    t.retry("IMSHOP answered 503")
    assert t.result() == RecordResult(Disposition.RETRY, "IMSHOP answered 503")
    t.retry("a later failure")
    assert t.reason == "IMSHOP answered 503", "the first failure is the reason"
    t.dead_letter("IMSHOP answered 400")
    t.retry("yet another failure")
    assert t.result() == RecordResult(Disposition.DEAD_LETTERED, "IMSHOP answered 400")


def test_expiry_outranks_waiting_for_budget_and_the_earliest_turn_is_kept() -> None:
    t = planned(0, 1)
    t.defer(200.0)
    t.defer(100.0)
    assert (t.fate, t.retry_at) == (Fate.DEFERRED, 100.0)

    expired = planned(0, expires_at=NOW)
    assert expired.expire_if_due(NOW), "expiresAt == now is expired"
    expired.defer(100.0)
    assert expired.result() == RecordResult(Disposition.EXPIRED, "expiresAt has passed")


def test_a_write_that_did_not_happen_gives_any_fate_back_to_sqs() -> None:
    decisions: list[Callable[[Track], None]] = [
        lambda t: t.call_done(0),
        lambda t: t.defer(1.0),
        lambda t: t.dead_letter("bad"),
    ]
    for decide in decisions:
        t = planned(0)
        decide(t)
        t.give_back("state store unavailable")
        assert t.result() == RecordResult(Disposition.RETRY, "state store unavailable")


def test_only_a_retry_is_requeued_as_a_keyed_copy() -> None:
    t = planned(0)
    t.requeue("retried as a keyed copy")
    assert t.fate is Fate.PLANNED
    t.retry("IMSHOP answered 503")
    t.requeue("retried as a keyed copy: IMSHOP answered 503")
    assert t.result().disposition is Disposition.REQUEUED


def test_a_record_that_leaves_the_pipeline_undecided_is_a_bug_not_an_answer() -> None:
    for t in (track(), planned(0)):
        with pytest.raises(ValueError, match="undecided"):
            t.result()
