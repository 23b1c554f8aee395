"""Expiry: an expired request is never sent, not even late after waiting for budget, and never
marks its key delivered."""

from __future__ import annotations

from collections import Counter

from harness import BONUS, SHIPPED, Harness, body, msg, requeued_copy

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition


def test_an_expired_request_is_dropped_counted_and_never_sent() -> None:
    h = Harness()

    results = h.run(
        msg("old", body(users=["u1"], expires_at=T0 - 1)), msg("new", body(users=["u2"], expires_at=T0 + 60))
    )

    assert results == {"old": Disposition.EXPIRED, "new": Disposition.DELIVERED}
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u2")]]
    assert h.metrics["RequestsExpired"] == 1


def test_expiry_at_exactly_now_is_expired() -> None:
    h = Harness()

    assert h.run(msg("m", body(users=["u1"], expires_at=T0))) == {"m": Disposition.EXPIRED}
    assert h.api.calls == []


def test_a_request_that_expires_while_waiting_for_budget_is_not_sent_late() -> None:
    h = Harness(limit=1, window=60, margin=1.2)

    results = h.run(
        msg("first", body(users=["u1"], message=BONUS)),
        msg("soon", body(users=["u2"], expires_at=T0 + 10)),
        seconds=900,
    )

    assert results == {"first": Disposition.DELIVERED, "soon": Disposition.EXPIRED}
    assert len(h.api.calls) == 1
    assert h.metrics["RequestsExpired"] == 1


def test_a_merged_call_drops_only_the_recipients_of_the_request_that_expired_while_waiting() -> None:
    h = Harness(limit=1, window=60, margin=1.2)

    results = h.run(
        msg("first", body(users=["x"], message=BONUS)),
        msg("keeps", body(users=["u1", "u2"])),
        msg("soon", body(users=["u2", "u3"], expires_at=T0 + 10)),
        seconds=900,
    )

    assert results == {"first": Disposition.DELIVERED, "keeps": Disposition.DELIVERED, "soon": Disposition.EXPIRED}
    assert h.api.calls[1].recipients == [("userIds", "u1"), ("userIds", "u2")]
    assert h.api.calls[1].at > T0 + 10


def test_an_expired_copy_of_a_deferred_request_is_dropped() -> None:
    h = Harness(limit=1, max_recipients=1)
    h.run(msg("m1", body(users=["u1", "u2"], expires_at=T0 + 120)), seconds=30)
    [deferral] = h.backlog.received
    h.clock.now = T0 + 121

    assert h.run(requeued_copy(deferral, "copy")) == {"copy": Disposition.EXPIRED}
    assert len(h.api.calls) == 1


def test_a_producers_retry_with_a_later_expiry_is_sent_although_the_first_copy_expired() -> None:
    h = Harness()
    expired = msg("m1", body(users=["u1"], key="reminder-1", expires_at=h.clock() - 60))
    retried = msg("m2", body(users=["u1"], key="reminder-1", expires_at=h.clock() + 3600))

    assert h.run(expired, retried) == {"m1": Disposition.EXPIRED, "m2": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", "u1"): 1})


def test_a_request_that_expires_while_waiting_does_not_mark_its_key_delivered() -> None:
    h = Harness(limit=1, max_recipients=1)
    first = msg("m1", body(users=["u1", "u2"], key="reminder-1", expires_at=T0 + 30))

    assert h.run(first) == {"m1": Disposition.EXPIRED}, "u1 sent; u2 waited past expiresAt"
    retried = msg("m2", body(users=["u1", "u2"], key="reminder-1", expires_at=T0 + 3600))
    h.clock.now += 60

    assert h.run(retried) == {"m2": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", u): 1 for u in ("u1", "u2")})


def test_in_one_batch_the_copy_that_expires_last_carries_the_request() -> None:
    h = Harness(limit=1, max_recipients=1)
    soon = msg("soon", body(users=["u1", "u2"], key="reminder-1", expires_at=T0 + 30))
    late = msg("late", body(users=["u1", "u2"], key="reminder-1", expires_at=T0 + 3600))

    assert h.run(soon, late) == {"soon": Disposition.DUPLICATE, "late": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", u): 1 for u in ("u1", "u2")})
