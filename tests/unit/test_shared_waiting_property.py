"""Shared waiting keeps exactly-once, whatever the order: batches of two texts arriving while the limiter is
busy, wakes delivered twice, originals redelivered by SQS while their copy waits in the pool, calls IMSHOP
fails, a pool that refuses writes now and then, wakes whose SendMessage fails, other executions deferring (or
about to join) the same content while a wake's SendMessage is still on its way. In the end every recipient
got each text once, and nothing is left waiting."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fakes import SENT
from harness import BONUS, FAILED, SHIPPED, Harness, body, msg, requeued_copy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import CallOutcome
from imshop_push.domain.pending import GROUP_ATTRIBUTE, InProcessPendingPool, PendingCopy, wake_body
from imshop_push.domain.rate_limit import Denied

SECONDS = 30.0
TEXTS = (SHIPPED, BONUS)

step = st.one_of(
    st.tuples(st.just("publish"), st.integers(1, 40), st.integers(0, 1)),
    st.tuples(st.just("invoke"), st.integers(1, 60), st.just(0)),
    st.tuples(st.just("redeliver"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("rewake"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("advance"), st.integers(1, 90), st.just(0)),
    st.tuples(st.just("fail_call"), st.just(0), st.just(0)),
    st.tuples(st.just("fail_pool"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("fail_wake"), st.integers(1, 60), st.just(0)),
    st.tuples(st.just("race"), st.integers(1, 60), st.integers(0, 7)),
)


@dataclass
class World:
    """SQS as the dispatcher sees it: messages becoming visible at some time, delivered in batches."""

    h: Harness
    queue: list[tuple[float, InboundMessage]] = field(default_factory=list)
    seen: list[InboundMessage] = field(default_factory=list)
    wakes: list[InboundMessage] = field(default_factory=list)
    published: list[tuple[str, str]] = field(default_factory=list)
    delivered: list[tuple[str, str]] = field(default_factory=list)
    failures_left: int = 0
    counter: int = 0
    copies_queued: int = 0
    wakes_queued: int = 0

    def answer(self, payload: dict[str, object]) -> CallOutcome:
        if self.failures_left:
            self.failures_left -= 1
            return FAILED
        title = payload["message"]["title"]  # type: ignore[index]
        self.delivered += [(title, u) for u in payload.get("userIds", [])]  # type: ignore[attr-defined]
        return SENT

    def publish(self, count: int, text: int) -> None:
        for _ in range(count):
            self.counter += 1
            user = f"7999{self.counter:07d}"
            message = msg(f"m{self.counter}", body(users=[user], key=f"k{self.counter}", message=TEXTS[text]))
            self.queue.append((self.h.clock(), message))
            self.published.append((TEXTS[text]["title"], user))

    def invoke(self, size: int) -> None:
        now = self.h.clock()
        visible = [m for at, m in self.queue if at <= now][:size]
        if not visible:
            return
        received = {m.message_id for m in visible}
        # In flight: invisible for as long as the invocation runs (the visibility timeout is longer), then what
        # failed comes back 40 s later.
        self.queue = [(math.inf if m.message_id in received else at, m) for at, m in self.queue]
        results = self.h.results(*visible, seconds=SECONDS)
        done = {mid for mid, r in results.items() if not r.disposition.is_failure}
        back = self.h.clock() + 40
        self.queue = [(back if m.message_id in received else at, m) for at, m in self.queue if m.message_id not in done]
        self.seen += [m for m in visible if m.message_id in done]
        self.written()

    def written(self) -> None:
        """What the dispatcher wrote to SQS so far becomes visible once its delay is over."""
        now = self.h.clock()
        for d in self.h.backlog.received[self.copies_queued :]:
            self.counter += 1
            self.queue.append((now + d.delay_seconds, requeued_copy(d, f"copy{self.counter}")))
        for _, group, delay in self.h.backlog.wakes[self.wakes_queued :]:
            self.counter += 1
            wake = msg(f"wake{self.counter}", wake_body(group), **{GROUP_ATTRIBUTE: group})
            self.queue.append((now + delay, wake))
            self.wakes.append(wake)
        self.copies_queued, self.wakes_queued = len(self.h.backlog.received), len(self.h.backlog.wakes)

    def race(self, size: int, how: int) -> None:
        """An invocation whose first wake's SendMessage is slow: meanwhile another execution receives a batch
        (of the same texts, perhaps when a slot has just freed), then the SendMessage succeeds or fails."""

        def meanwhile(_arn: str, _group: str, delay: int) -> bool:
            self.h.backlog.while_writing_wake = None
            if how & 4:
                self.h.clock.now += delay  # the wake being written is due: a partial call may join it
            self.invoke(40 if how & 2 else 3)
            return not how & 1

        self.h.backlog.while_writing_wake = meanwhile
        self.invoke(size)
        self.h.backlog.while_writing_wake = None

    def wake_fails(self, size: int) -> None:
        self.h.backlog.while_writing_wake = lambda _arn, _group, _delay: False
        self.invoke(size)
        self.h.backlog.while_writing_wake = None

    def step(self, kind: str, a: int, b: int) -> None:
        if kind == "publish":
            self.publish(a, b)
        elif kind == "invoke":
            self.invoke(a)
        elif kind == "redeliver":
            self.again(self.seen, a)
        elif kind == "rewake":
            self.again(self.wakes, a)
        elif kind == "advance":
            self.h.clock.now += a
        elif kind == "fail_call":
            self.failures_left += 1
        elif kind == "fail_pool":
            self.h.pool.fail = {("put", "take", "remove")[a]}
            self.invoke(20)
        elif kind == "fail_wake":
            self.wake_fails(a)
        elif kind == "race":
            self.race(a, b)

    def again(self, pool: list[InboundMessage], index: int) -> None:
        if pool:
            self.queue.append((self.h.clock(), pool[index % len(pool)]))


def drain_and_check(h: Harness, world: World, *, rounds: int) -> None:
    """Deliver what SQS still holds, each message at its time, then: nothing waits, nothing is lost or doubled."""
    for _ in range(rounds):
        if not world.queue:
            break
        h.clock.now = max(h.clock(), min(at for at, _ in world.queue))
        world.invoke(100)
    assert world.queue == [], "nothing is left waiting"
    assert sorted(world.delivered) == sorted(world.published), "each recipient got each text exactly once"
    assert all(h.pool.pooled(g) == 0 for _, g, _ in h.backlog.wakes), "the pool is empty"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(st.just("publish"), st.integers(2, 40), st.integers(0, 1)), st.lists(step, max_size=30))
def test_every_recipient_gets_each_text_once_whatever_sqs_and_imshop_do(
    first: tuple[str, int, int], rest: list[tuple[str, int, int]]
) -> None:
    steps = [first, *rest]
    h = Harness(pending=True, limit=2, window=60.0)
    world = World(h)
    h.api.answer = world.answer
    for _ in range(h.policy.limit):  # busy when the first requests arrive
        assert not isinstance(h.limiter.try_acquire(h.clock()), Denied)
    for kind, a, b in steps:
        h.pool.fail = set()
        world.step(kind, a, b)
    h.pool.fail = set()
    world.failures_left = 0
    drain_and_check(h, world, rounds=200)


execution = st.tuples(st.integers(1, 6), st.booleans(), st.booleans(), st.booleans())
"""An execution of the same text: its batch size, whether it runs while the previous one's wake is being
written (else after it), whether its own wake's SendMessage succeeds, and whether the clock reaches the wake
being written first (a slot frees: a partial call may take it or join that wake)."""


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(execution, min_size=2, max_size=4))
def test_nothing_acknowledged_depends_on_a_wake_another_execution_failed_to_write(
    executions: list[tuple[int, bool, bool, bool]],
) -> None:
    h = Harness(pending=True, limit=2, window=60.0)
    world = World(h)
    h.api.answer = world.answer
    for _ in range(h.policy.limit):
        assert not isinstance(h.limiter.try_acquire(h.clock()), Denied)
    world.publish(sum(size for size, *_ in executions), 0)

    def run(index: int) -> None:
        if index >= len(executions):
            return
        size, _, written, _ = executions[index]
        nested = index + 1 < len(executions) and executions[index + 1][1]

        def meanwhile(_arn: str, _group: str, delay: int) -> bool:
            h.backlog.while_writing_wake = None
            if nested:
                if executions[index + 1][3]:
                    h.clock.now += delay
                run(index + 1)
            return written

        h.backlog.while_writing_wake = meanwhile
        world.invoke(size)
        h.backlog.while_writing_wake = None
        if not nested:
            run(index + 1)

    run(0)
    drain_and_check(h, world, rounds=100)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 60),
    st.integers(1, 20),
    st.lists(st.tuples(st.integers(0, 25), st.booleans()), min_size=1, max_size=40),
)
def test_under_sustained_overload_no_pooled_request_is_passed_over(
    initial: int, limit: int, rounds: list[tuple[int, bool]]
) -> None:
    """Takes of at most `limit` while new requests keep arriving, with keys that sort before and after all
    others, and what is taken is sent or left waiting: no request is taken a second time before every request
    that waited when it was taken has had its turn (however its key sorts)."""
    pool = InProcessPendingPool()
    counter = 0
    pooled_in: dict[str, int] = {}  # key: the round it arrived in (before that round's take)
    last_taken: dict[str, int] = {}

    def arrive(count: int, round_: int) -> None:
        nonlocal counter
        copies = []
        for _ in range(count):
            counter += 1
            key = f"k{10**6 - counter:07d}" if counter % 2 else f"z{counter:07d}"  # first and last in key order
            copies.append(PendingCopy(key, "{}", {}, "arn", None))
            pooled_in[key] = round_
        pool.put("g", copies, now=0.0)

    arrive(initial, 0)
    for round_, (arrivals, sent) in enumerate(rounds):
        arrive(arrivals, round_)
        taken = [c.key for c in pool.take("g", limit=limit)]
        assert len(taken) == min(limit, len(pooled_in))
        for key in taken:
            before = last_taken.get(key)
            if before is not None:
                passed_over = [
                    other
                    for other, arrived in pooled_in.items()
                    if arrived <= before and last_taken.get(other, -1) < before and other not in taken
                ]
                assert passed_over == [], f"{key} is taken again before {passed_over}"
        for key in taken:
            last_taken[key] = round_
        if sent:
            pool.remove("g", taken)
            for key in taken:
                del pooled_in[key]
                del last_taken[key]
