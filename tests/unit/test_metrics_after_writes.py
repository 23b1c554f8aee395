"""Metrics that count a write count it once it happened (docs/contract.md#observability): a record the DLQ or the
queue refused goes back to SQS and is counted when a later receive writes it, so a count is never more than what
the DLQ, the queue or the pending pool holds."""

from __future__ import annotations

from dataclasses import dataclass

from harness import BONUS, Harness, body, msg, phones
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage

SECONDS = 30.0  # less than the window: a call without a slot cannot wait for it in process


def busy(h: Harness) -> None:
    """Every slot of the coming window is taken by calls of other executions: every valid request is deferred."""
    for _ in range(h.policy.limit):
        h.limiter.try_acquire(h.clock())


def one_text(prefix: str, count: int) -> list[InboundMessage]:
    return [msg(f"{prefix}-{n}", body(users=[user], key=f"{prefix}-{n}")) for n, user in enumerate(phones(count))]


# --- DeadLettered -----------------------------------------------------------------------------------------


def test_a_record_the_dlq_refused_once_is_counted_once_when_it_is_written() -> None:
    h = Harness()
    h.dlq.fail_ids = {"bad"}
    assert h.run(msg("bad", "not json")) == {"bad": Disposition.RETRY}
    assert h.metrics["DeadLettered"] == 0

    h.dlq.fail_ids = set()
    assert h.run(msg("bad", "not json")._replace(receive_count=2)) == {"bad": Disposition.DEAD_LETTERED}

    assert h.metrics["DeadLettered"] == 1 == len(h.dlq.received)


def test_poison_dropped_for_want_of_a_dlq_is_not_counted_as_dead_lettered() -> None:
    h = Harness(dead_letters=False)

    h.run(msg("bad", "not json"), msg("good", body(users=["u1"])))

    assert h.metrics["DeadLettered"] == 0
    assert h.metrics["RequestsInvalid"] == 1


# --- RequestsDeferred, RequestsPooled ---------------------------------------------------------------------


def test_a_deferral_the_queue_refused_is_counted_once_when_it_is_written() -> None:
    h = Harness()
    busy(h)
    h.backlog.fail_ids = {"a"}
    assert h.run(msg("a", body(users=["u1"])), msg("b", body(users=["u2"], message=BONUS)), seconds=SECONDS) == {
        "a": Disposition.RETRY,
        "b": Disposition.DEFERRED,
    }
    assert h.metrics["RequestsDeferred"] == 1

    h.backlog.fail_ids = set()
    assert h.run(msg("a", body(users=["u1"]))._replace(receive_count=2), seconds=SECONDS) == {"a": Disposition.DEFERRED}

    assert h.metrics["RequestsDeferred"] == 2 == len(h.backlog.received)


def test_a_pooled_group_whose_wake_was_not_written_is_neither_deferred_nor_pooled() -> None:
    h = Harness(pending=True)
    busy(h)
    h.backlog.fail_wakes = True
    requests = one_text("r", 3)
    assert set(h.run(*requests, seconds=SECONDS).values()) == {Disposition.RETRY}
    assert h.metrics["RequestsDeferred"] == 0
    assert h.metrics["RequestsPooled"] == 0

    h.backlog.fail_wakes = False
    again = [m._replace(receive_count=2) for m in requests]
    assert set(h.run(*again, seconds=SECONDS).values()) == {Disposition.DEFERRED}

    assert h.metrics["RequestsDeferred"] == 3
    assert h.metrics["RequestsPooled"] == 3


def test_a_group_the_pool_refused_waits_as_copies_and_is_counted_as_deferred_not_pooled() -> None:
    h = Harness(pending=True)
    busy(h)
    h.pool.fail = {"put"}

    assert set(h.run(*one_text("r", 3), seconds=SECONDS).values()) == {Disposition.DEFERRED}

    assert h.metrics["RequestsDeferred"] == 3 == len(h.backlog.received)
    assert h.metrics["RequestsPooled"] == 0


# --- the class: whatever the writes refuse, the counts are what was written --------------------------------


@dataclass(frozen=True)
class Invocation:
    poison: int
    valid: int
    slots_taken: bool  # other executions hold the window: every valid request is deferred
    dlq_refuses: frozenset[int]  # indices into this invocation's records
    queue_refuses: frozenset[int]


invocations = st.builds(
    Invocation,
    poison=st.integers(0, 3),
    valid=st.integers(0, 4),
    slots_taken=st.booleans(),
    dlq_refuses=st.frozensets(st.integers(0, 9), max_size=4),
    queue_refuses=st.frozensets(st.integers(0, 9), max_size=4),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(invocations, min_size=1, max_size=5))
def test_dead_lettered_and_deferred_counts_equal_what_the_dlq_and_the_queue_hold(runs: list[Invocation]) -> None:
    h = Harness(limit=2)
    redelivered: list[InboundMessage] = []
    for n, run in enumerate(runs):
        fresh = [msg(f"p{n}-{i}", "not json") for i in range(run.poison)]
        fresh += [msg(f"v{n}-{i}", body(users=[f"u{n}-{i}"], message={"title": f"t{n}-{i}", "summary": "s"}))
                  for i in range(run.valid)]  # fmt: skip
        records = redelivered + fresh
        h.dlq.fail_ids = {records[i].message_id for i in run.dlq_refuses if i < len(records)}
        h.backlog.fail_ids = {records[i].message_id for i in run.queue_refuses if i < len(records)}
        if run.slots_taken:
            busy(h)

        results = h.run(*records, seconds=SECONDS)

        assert h.metrics["DeadLettered"] == len(h.dlq.received)
        assert h.metrics["RequestsDeferred"] + h.metrics["RetriesRequeued"] == len(h.backlog.received)
        redelivered = [
            m._replace(receive_count=m.receive_count + 1) for m in records if results[m.message_id] is Disposition.RETRY
        ]
        h.clock.now += h.policy.window_seconds + h.policy.margin_seconds
