"""Shared waiting keeps exactly-once, whatever the order: batches of two texts arriving while the limiter is
busy, wakes delivered twice, originals redelivered by SQS while their copy waits in the pool, calls IMSHOP
fails, a pool that refuses writes now and then. In the end every recipient got each text once, and nothing
is left waiting."""

from __future__ import annotations

from dataclasses import dataclass, field

from fakes import SENT
from harness import BONUS, FAILED, SHIPPED, Harness, body, msg, requeued_copy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imshop_push.inbound import InboundMessage
from imshop_push.model import CallOutcome
from imshop_push.pending import GROUP_ATTRIBUTE, wake_body
from imshop_push.rate_limit import Denied

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
        copies_before, wakes_before = len(self.h.backlog.received), len(self.h.backlog.wakes)
        results = self.h.results(*visible, seconds=SECONDS)
        done = {mid for mid, r in results.items() if not r.disposition.is_failure}
        self.queue = [(at, m) for at, m in self.queue if m.message_id not in done]
        self.queue = [(at if m.message_id not in results else now + 40, m) for at, m in self.queue]  # visibility
        self.seen += [m for m in visible if m.message_id in done]
        for d in self.h.backlog.received[copies_before:]:
            self.counter += 1
            self.queue.append((now + d.delay_seconds, requeued_copy(d, f"copy{self.counter}")))
        for _, group, delay in self.h.backlog.wakes[wakes_before:]:
            self.counter += 1
            wake = msg(f"wake{self.counter}", wake_body(group), **{GROUP_ATTRIBUTE: group})
            self.queue.append((now + delay, wake))
            self.wakes.append(wake)

    def again(self, pool: list[InboundMessage], index: int) -> None:
        if pool:
            self.queue.append((self.h.clock(), pool[index % len(pool)]))


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
        if kind == "publish":
            world.publish(a, b)
        elif kind == "invoke":
            world.invoke(a)
        elif kind == "redeliver":
            world.again(world.seen, a)
        elif kind == "rewake":
            world.again(world.wakes, a)
        elif kind == "advance":
            h.clock.now += a
        elif kind == "fail_call":
            world.failures_left += 1
        elif kind == "fail_pool":
            h.pool.fail = {("put", "take", "remove")[a]}
            world.invoke(20)
    h.pool.fail = set()
    world.failures_left = 0
    for _ in range(200):
        if not world.queue:
            break
        h.clock.now = max(h.clock(), min(at for at, _ in world.queue))
        world.invoke(100)
    assert world.queue == [], "nothing is left waiting"
    assert sorted(world.delivered) == sorted(world.published), "each recipient got each text exactly once"
    assert all(h.pool.pooled(g) == 0 for _, g, _ in h.backlog.wakes), "the pool is empty"
