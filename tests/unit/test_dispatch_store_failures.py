"""The state store and the limiter failing: records go back to SQS, nothing is lost, and poison is
still dead-lettered."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from fakes import FlakyLimiter
from harness import BONUS, FAILED, SHIPPED, Harness, body, flaky_limiter, msg

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.state import Settlement, StateStoreError


def test_state_store_failing_on_claim_sends_the_whole_batch_back_but_still_dead_letters_poison() -> None:
    h = Harness()
    h.state.failing = {"claim_many"}

    results = h.run(msg("m1", body(users=["u1"])), msg("m2", body(users=["u2"], message=BONUS)), msg("bad", "nope"))

    assert results == {"m1": Disposition.RETRY, "m2": Disposition.RETRY, "bad": Disposition.DEAD_LETTERED}
    assert h.api.calls == []


@pytest.mark.parametrize("operation", ["start_attempt", "mark_call", "settle"])
def test_state_store_failing_later_sends_records_back_and_never_loses_them(operation: str) -> None:
    h = Harness()
    h.state.failing = {operation}
    message = msg("m1", body(users=["u1"], key="m1"))

    assert h.run(message) == {"m1": Disposition.RETRY}
    h.state.failing = set()
    h.clock.now += 120

    assert h.run(message) in ({"m1": Disposition.DELIVERED}, {"m1": Disposition.DUPLICATE})
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", "u1"): 1})


def test_state_store_failing_to_load_progress_sends_the_redelivered_request_back() -> None:
    h = Harness()
    message = msg("m1", body(users=["u1"], key="m1"))
    h.api.script = [FAILED]
    h.run(message)
    h.state.failing = {"load_calls"}
    h.clock.now += 60

    assert h.run(message, msg("fresh", body(users=["u9"], message=BONUS))) == {
        "m1": Disposition.RETRY,
        "fresh": Disposition.DELIVERED,
    }


def test_an_unavailable_limiter_sends_nothing_and_the_records_back() -> None:
    h = Harness(limiter_class=FlakyLimiter)
    flaky_limiter(h).fail_acquire = True

    results = h.run(msg("m1", body(users=["u1"])), msg("m2", body(users=["u2"], message=BONUS)))

    assert results == {"m1": Disposition.RETRY, "m2": Disposition.RETRY}
    assert h.api.calls == []


def test_a_failed_slot_release_does_not_undo_a_delivery() -> None:
    h = Harness(limiter_class=FlakyLimiter)
    flaky_limiter(h).fail_release = True

    assert h.run(msg("m1", body(users=["u1"]))) == {"m1": Disposition.DELIVERED}


def test_a_throttled_state_table_sends_records_back_instead_of_crashing_the_batch() -> None:
    h = Harness()

    def throttled(settlements: Sequence[Settlement], *, now: float) -> None:
        raise StateStoreError("DynamoDB kept returning unprocessed items (throttled)")

    h.state.settle = throttled  # type: ignore[method-assign]
    results = h.run(msg("m1", body(users=["u1"], key="m1")), msg("bad", "not json"))

    assert results == {"m1": Disposition.RETRY, "bad": Disposition.DEAD_LETTERED}
