"""Exactly once across failures: what earlier attempts confirmed is never sent again; what is
ambiguous is sent again and counted."""

from __future__ import annotations

from collections import Counter

import pytest
from fakes import SENT, WORST_CASE, ExecutionCrashError
from harness import AMBIGUOUS, FAILED, SHIPPED, Harness, body, drain, msg, requeued_copy

from imshop_push.dispatch.dispatcher import Disposition


def test_a_failed_merged_call_after_a_sent_one_resends_only_the_unsent_recipients() -> None:
    h = Harness(max_recipients=2)
    a = msg("a", body(users=["u1", "u2", "u3"], key="a"))
    b = msg("b", body(users=["u3", "u4"], key="b"))
    h.api.script = [SENT, FAILED]

    assert h.run(a, b) == {"a": Disposition.RETRY, "b": Disposition.RETRY}
    assert [c.recipients for c in h.api.calls] == [
        [("userIds", "u1"), ("userIds", "u2")],
        [("userIds", "u3"), ("userIds", "u4")],
    ]

    h.clock.now += 60
    assert h.run(a, b) == {"a": Disposition.DELIVERED, "b": Disposition.DELIVERED}
    assert h.api.calls[2].recipients == [("userIds", "u3"), ("userIds", "u4")]
    assert len(h.api.calls) == 3

    h.clock.now += 60
    assert h.run(a, b) == {"a": Disposition.DUPLICATE, "b": Disposition.DUPLICATE}
    accepted = Counter(r for c, ok in zip(h.api.calls, [True, False, True], strict=True) if ok for r in c.recipients)
    assert accepted == Counter({("userIds", u): 1 for u in ["u1", "u2", "u3", "u4"]})


def test_a_request_redelivered_alone_resends_only_its_own_unsent_recipients() -> None:
    h = Harness(max_recipients=2)
    a = msg("a", body(users=["u1", "u2", "u3"]))
    b = msg("b", body(users=["u3", "u4"]))
    h.api.script = [SENT, FAILED]
    h.run(a, b)
    h.clock.now += 60

    assert h.run(a) == {"a": Disposition.DELIVERED}
    assert h.api.calls[-1].recipients == [("userIds", "u3")]


def test_a_definite_failure_is_not_counted_as_an_ambiguous_redelivery() -> None:
    # 503, success: false and connection refused mean nothing was sent: resending is not the ambiguous case
    # (docs/contract.md#the-ambiguous-call), and the AmbiguousRedeliveries metric must stay the rare, alarming
    # signal it is meant to be.
    h = Harness()
    a = msg("a", body(users=["u1", "u2"]))
    h.api.script = [FAILED]
    assert h.run(a) == {"a": Disposition.RETRY}
    h.clock.now += 60

    assert h.run(a) == {"a": Disposition.DELIVERED}
    assert h.metrics["AmbiguousRedeliveries"] == 0


def test_an_ambiguous_call_is_resent_on_redelivery_and_counted() -> None:
    h = Harness()
    a = msg("a", body(users=["u1", "u2"], key="a"))
    h.api.script = [AMBIGUOUS]

    assert h.run(a) == {"a": Disposition.RETRY}
    assert h.metrics["ImshopCallsAmbiguous"] == 1
    h.clock.now += 60

    assert h.run(a) == {"a": Disposition.DELIVERED}
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u1"), ("userIds", "u2")]] * 2
    assert h.metrics["AmbiguousRedeliveries"] == 2


def test_an_execution_that_dies_mid_call_keeps_its_lease_then_its_recipients_are_resent() -> None:
    h = Harness()
    a = msg("a", body(users=["u1"]))
    h.api.script = [ExecutionCrashError("Task timed out")]

    with pytest.raises(ExecutionCrashError):
        h.run(a, seconds=60)
    lease_end = h.deadlines[-1].hard

    h.clock.now = lease_end - 1  # SQS redelivers while the dead execution's lease still runs
    assert h.run(a) == {"a": Disposition.RETRY}
    assert len(h.api.calls) == 1

    h.clock.now = lease_end + WORST_CASE + 60 + 1.2  # lease over, and the dead call's limiter slot free again
    assert h.run(a) == {"a": Disposition.DELIVERED}
    assert len(h.api.calls) == 2
    assert h.metrics["AmbiguousRedeliveries"] == 1


def test_a_confirmed_call_whose_record_fails_once_is_recorded_on_retry_and_never_resent() -> None:
    h = Harness(max_recipients=1, limit=1)
    a = msg("a", body(users=["u1", "u2"], key="a"))
    h.state.mark_sent_failures = 1

    assert h.run(a, seconds=20) == {"a": Disposition.DEFERRED}, "u1 sent, u2 waits for budget"
    h.clock.now += 60
    assert h.run(requeued_copy(h.backlog.received[0], "a-2")) == {"a-2": Disposition.DELIVERED}

    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", u): 1 for u in ("u1", "u2")})
    assert h.metrics["AmbiguousRedeliveries"] == 0


def test_a_confirmed_call_whose_record_cannot_be_written_still_settles_its_request_as_delivered() -> None:
    h = Harness()
    a = msg("a", body(users=["u1"], key="a"))
    h.state.mark_sent_failures = 1000

    assert h.run(a) == {"a": Disposition.DELIVERED}
    h.state.mark_sent_failures = 0
    h.clock.now += 60

    assert h.run(a) == {"a": Disposition.DUPLICATE}
    assert len(h.api.calls) == 1


def test_a_request_served_by_another_requests_call_in_an_earlier_batch_is_still_sent() -> None:
    # "across batches, two requests are two notifications unless they share an idempotency key"
    # (docs/contract.md#idempotency-keys).
    # A (key a) reached u1 in invocation 1; C (key c, same content, also for u1) was deferred in invocation 2.
    # When both come back in one batch, C must still reach u1: A's earlier call did not carry C.
    h = Harness(limit=1, max_recipients=1)
    assert h.run(msg("a", body(users=["u1", "u2"], key="a")), seconds=30) == {"a": Disposition.DEFERRED}
    a_copy = requeued_copy(h.backlog.received[-1], "a-copy")  # u1 sent; u2 waits for the next window
    assert h.run(msg("c", body(users=["u1"], key="c")), seconds=30) == {"c": Disposition.DEFERRED}
    c_copy = requeued_copy(h.backlog.received[-1], "c-copy")  # the window is still used up
    h.clock.now += 62

    drain(h, [a_copy, c_copy], seconds=30)

    assert h.api.delivered() == Counter(
        {(SHIPPED["title"], "userIds", "u1"): 2, (SHIPPED["title"], "userIds", "u2"): 1}
    )
