"""The switch to a fallback text: a request whose own call cannot start by due + afterSeconds has its recipients
sent the fallback's text instead, merged with every request of that text; decided as soon as the dispatcher
knows, never for a request that finds a free slot, and for good (`stages/fallback.py`)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from fakes import SENT, FlakyPendingPool
from harness import AMBIGUOUS, FAILED, QUEUE_ARN, Harness, msg, phones, requeued_copy
from hypothesis import given, settings
from hypothesis import strategies as st

from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.fallback import FALLBACK_ATTRIBUTE, WAKE_LEAD_WINDOWS, carried_of, fallback_wake_at
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.lanes import Lane
from imshop_push.domain.model import Carried
from imshop_push.domain.pending import GROUP_ATTRIBUTE, PendingCopy, wake_body
from imshop_push.domain.rate_limit import Denied, InProcessRateLimiter, Permit, WindowPolicy

STATUS = {"title": "Статус заказа изменился", "summary": "Откройте заказ в приложении"}
SECONDS = 30.0  # less than a window: a denied call cannot wait for its slot in-process


def order_status(n: int, user: str, *, after: int = 30, fallback: bool = True, **extra: Any) -> str:
    document: dict[str, Any] = {
        "userIds": [user],
        "message": {"title": f"Заказ {n} передан в доставку", "summary": f"Заказ {n}: курьер приедет завтра"},
        "deeplink": f"app://orders/{n}",
        "idempotencyKey": f"order-{n}",
        **extra,
    }
    if fallback:
        document["fallback"] = {"message": STATUS, "deeplink": "app://orders", "afterSeconds": after}
    return json.dumps(document, ensure_ascii=False)


def statuses(h: Harness, users: list[str], *, start: int = 0, after: int = 30, **extra: Any) -> list[InboundMessage]:
    sent_ms = int(h.clock() * 1000)
    return [
        InboundMessage(
            f"m-{start + n}", order_status(start + n, user, after=after, **extra), QUEUE_ARN, sent_timestamp_ms=sent_ms
        )
        for n, user in enumerate(users, start=0)
    ]


def busy(h: Harness) -> None:
    """Every slot of the coming window is taken by calls of other executions."""
    for _ in range(h.policy.limit):
        h.limiter.try_acquire(h.clock())


def texts(h: Harness) -> Counter[str]:
    return Counter(c.payload["message"]["title"] for c in h.api.calls)


def reached(h: Harness) -> Counter[str]:
    """Per user, how many pushes of any text reached them (or may have)."""
    return Counter(rid for c in h.api.calls for _, rid in c.recipients)


@settings(max_examples=25, deadline=None)
@given(count=st.integers(1, 30), after=st.sampled_from([0, 1, 60]), late_by=st.integers(0, 3600))
def test_with_a_free_slot_a_request_is_never_switched_however_late(count: int, after: int, late_by: int) -> None:
    h = Harness(limit=count)
    messages = statuses(h, phones(count), after=after)
    h.clock.now += late_by  # SQS accepted them long ago: the deadline is past, but a slot is free now
    assert set(h.run(*messages).values()) == {Disposition.DELIVERED}
    assert STATUS["title"] not in texts(h)
    assert len(h.api.calls) == count
    assert h.metrics["RecipientsFallenBack"] == 0


def test_with_the_limiter_saturated_late_requests_switch_at_once_and_share_one_call() -> None:
    h = Harness(limit=10)
    busy(h)
    arrived = h.clock()
    users = phones(40)
    results = h.run(*statuses(h, users, after=30), seconds=SECONDS)  # no slot opens within this invocation
    assert set(results.values()) == {Disposition.DEFERRED}
    assert not h.api.calls
    # Decided in the invocation that received them, long before arrival + afterSeconds: the copies say so.
    copies = {d.message.message_id: carried_of(requeued_copy(d, "x")) for d in h.backlog.received}
    assert h.clock() < arrived + 30
    assert all(c is not None and c.switched for c in copies.values()), copies
    assert all(c is not None and c.first_sent_ms == int(arrived * 1000) for c in copies.values())


def test_switched_at_once_the_fallback_call_goes_at_the_first_opening_not_after_the_own_calls() -> None:
    h = Harness(limit=10)
    busy(h)
    users = phones(40)
    opening = min(h.limiter._slots.values())  # when the first busy slot frees
    assert h.run(*statuses(h, users, after=30), seconds=600) == dict.fromkeys(
        (f"m-{n}" for n in range(40)), Disposition.DELIVERED
    )
    assert texts(h) == {STATUS["title"]: 1}, "every own call would start after its deadline: one shared call"
    assert h.api.calls[0].at == pytest.approx(opening, abs=1.0)
    assert sorted(rid for _, rid in h.api.calls[0].recipients) == sorted(users)
    assert h.api.calls[0].payload["deeplink"] == "app://orders"
    assert h.metrics["RecipientsFallenBack"] == 40
    assert h.metrics["TransactionalRecipientsFallenBack"] == 40


def test_requests_whose_turn_is_in_time_keep_their_own_text_and_the_rest_share_one_call() -> None:
    h = Harness(limit=10)
    busy(h)
    users = phones(25)
    # The first opening is about 75 s away; 10 calls a window: the first ten are in time for 120 s, no later one.
    assert set(h.run(*statuses(h, users, after=120), seconds=900).values()) == {Disposition.DELIVERED}
    own = [c for c in h.api.calls if c.payload["message"]["title"] != STATUS["title"]]
    shared = [c for c in h.api.calls if c.payload["message"]["title"] == STATUS["title"]]
    assert len(own) == 10
    assert len(shared) == 1
    assert len(shared[0].recipients) == 15
    assert max(reached(h).values()) == 1, "each recipient gets exactly one of the two texts"


def test_switched_recipients_merge_with_requests_whose_own_text_is_the_fallbacks() -> None:
    h = Harness(limit=10)
    busy(h)
    plain = InboundMessage(
        "plain", json.dumps({"userIds": ["p-1", "p-2"], "message": STATUS, "deeplink": "app://orders"}), QUEUE_ARN
    )
    assert set(h.run(*statuses(h, phones(5), after=0), plain, seconds=600).values()) == {Disposition.DELIVERED}
    assert len(h.api.calls) == 1
    assert len(h.api.calls[0].recipients) == 7


def test_a_switched_request_stays_switched_in_its_copy_even_when_a_slot_is_free_later() -> None:
    h = Harness(limit=10)
    busy(h)
    h.run(*statuses(h, phones(20), after=0), seconds=SECONDS)
    copies = [requeued_copy(d, f"copy-{n}") for n, d in enumerate(h.backlog.received)]
    h.clock.now += 3600  # every slot free again
    assert set(h.run(*copies).values()) == {Disposition.DELIVERED}
    assert texts(h) == {STATUS["title"]: 1}


def test_switched_requests_of_many_batches_wait_together_in_the_pool_and_leave_in_one_call() -> None:
    h = Harness(limit=10, pending=True)
    busy(h)
    users = phones(300)
    for batch in range(3):
        chunk = users[batch * 100 : (batch + 1) * 100]
        results = h.run(*statuses(h, chunk, start=batch * 100, after=0), seconds=SECONDS)
        assert set(results.values()) == {Disposition.DEFERRED}
    assert h.backlog.received == [], "switched, every request waits in its fallback's group"
    _, group, delay = h.backlog.wakes[0]
    h.clock.now += delay + h.policy.window_seconds
    assert h.run(msg("wake", wake_body(group), **{GROUP_ATTRIBUTE: group}), seconds=SECONDS) == {
        "wake": Disposition.DELIVERED
    }
    assert texts(h) == {STATUS["title"]: 1}
    assert sorted(rid for _, rid in h.api.calls[0].recipients) == sorted(users)


@pytest.mark.parametrize("answer", [FAILED, AMBIGUOUS], ids=["failed", "no-answer"])
def test_a_recipient_of_a_failed_or_unanswered_fallback_call_never_gets_the_own_text(answer: Any) -> None:
    h = Harness(limit=10)
    busy(h)
    messages = statuses(h, phones(20), after=0)
    h.api.script = [answer]
    results = h.run(*messages, seconds=600)
    assert set(results.values()) == {Disposition.RETRY}
    h.clock.now += 3600  # SQS redelivers the original messages (no copy attribute) when every slot is free
    assert set(h.run(*messages).values()) == {Disposition.DELIVERED}
    assert set(texts(h)) == {STATUS["title"]}, "switched for good: the redelivery sends the fallback again"
    per_user = reached(h)
    assert set(per_user.values()) == {2}, "once the failed or unknown call, once the resend"


def test_a_redelivery_after_a_confirmed_fallback_call_sends_neither_text() -> None:
    h = Harness(limit=10)
    busy(h)
    messages = statuses(h, phones(20), after=0)
    h.run(*messages, seconds=600)
    assert texts(h) == {STATUS["title"]: 1}
    h.clock.now += 3600
    assert set(h.run(*messages).values()) == {Disposition.DUPLICATE}
    assert texts(h) == {STATUS["title"]: 1}


def test_an_unknown_outcome_of_its_own_text_keeps_a_request_from_switching() -> None:
    h = Harness(limit=1)
    messages = statuses(h, ["u-1"], after=0)
    h.api.script = [AMBIGUOUS]
    assert h.run(*messages) == {"m-0": Disposition.RETRY}
    busy(h)
    h.clock.now += 1  # its deadline is past and no slot is free: its own text is resent, never the fallback
    h.run(*messages, seconds=600)
    assert STATUS["title"] not in texts(h)


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(2, 40),
    script=st.lists(st.sampled_from(["sent", "failed", "ambiguous"]), min_size=1, max_size=4),
    redeliveries=st.integers(1, 3),
)
def test_no_recipient_ever_gets_both_texts_whatever_fails_or_redelivers(
    count: int, script: list[str], redeliveries: int
) -> None:
    h = Harness(limit=4)
    busy(h)
    outcomes = {"failed": FAILED, "ambiguous": AMBIGUOUS}
    h.api.script = [outcomes.get(s, SENT) for s in script]
    messages = statuses(h, phones(count), after=0)
    h.run(*messages, seconds=600)
    for _ in range(redeliveries):
        h.clock.now += 3600
        h.run(*messages, seconds=600)
    titles_of: dict[str, set[str]] = {}
    for call in h.api.calls:
        for _, rid in call.recipients:
            titles_of.setdefault(rid, set()).add(call.payload["message"]["title"])
    assert all(len(titles) == 1 for titles in titles_of.values()), titles_of


def test_a_switched_request_keeps_its_lane_collapse_key_and_expiry() -> None:
    h = Harness(limit=10)
    busy(h)
    expires = "2020-01-01T00:00:00Z"  # already expired: neither text is sent
    assert set(h.run(*statuses(h, phones(3), after=0, expiresAt=expires), seconds=600).values()) == {
        Disposition.EXPIRED
    }
    assert not h.api.calls


def test_the_copy_attribute_is_bound_to_its_body() -> None:
    good = msg("a", order_status(1, "u"))
    forged = good._replace(
        message_attributes={FALLBACK_ATTRIBUTE: {"dataType": "String", "stringValue": "0:1:deadbeef"}}
    )
    assert carried_of(forged) is None
    assert carried_of(good) is None
    assert Carried(5, True) == Carried(5, True)


def test_the_history_entry_of_a_recipient_reached_by_the_fallback_holds_the_requests_own_content() -> None:
    h = Harness(limit=10, history=True)
    busy(h)
    inbox = {"url": "https://shop.example/orders/7", "promocode": "SORRY10"}
    messages = statuses(h, ["u-7", "u-8"], start=7, after=0, inbox=inbox)
    plain = InboundMessage(
        "plain", json.dumps({"userIds": ["u-9"], "message": STATUS, "deeplink": "app://orders"}), QUEUE_ARN
    )
    assert set(h.run(*messages, plain, seconds=600).values()) == {Disposition.DELIVERED}
    assert texts(h) == {STATUS["title"]: 1}, "one shared push for the three users"
    entry = h.history.of("u-7")[0].as_vendor_json()
    assert {k: entry[k] for k in ("title", "text", "deepLink", "url", "promocode")} == {
        "title": "Заказ 7 передан в доставку",
        "text": "Заказ 7: курьер приедет завтра",
        "deepLink": "app://orders/7",
        **inbox,
    }
    assert h.history.of("u-8")[0].title == "Заказ 8 передан в доставку"
    assert h.history.of("u-9")[0].title == STATUS["title"], "the call's text is the entry of a request it is"


def test_two_switched_requests_to_one_user_in_one_shared_push_keep_two_entries() -> None:
    h = Harness(limit=10, history=True)
    busy(h)
    assert set(h.run(*statuses(h, ["u-1", "u-1"], after=0), seconds=600).values()) == {Disposition.DELIVERED}
    assert len(h.api.calls) == 1
    assert reached(h) == {"u-1": 1}
    assert sorted(e.title for e in h.history.of("u-1")) == ["Заказ 0 передан в доставку", "Заказ 1 передан в доставку"]


def test_a_keyless_request_retried_as_a_keyed_copy_keeps_its_switch_and_first_acceptance() -> None:
    h = Harness(limit=10)
    busy(h)
    arrived_ms = int(h.clock() * 1000)
    document = json.loads(order_status(1, "u-1", after=0))
    del document["idempotencyKey"]
    message = InboundMessage("keyless", json.dumps(document), QUEUE_ARN, sent_timestamp_ms=arrived_ms)
    h.api.script = [AMBIGUOUS]
    assert h.run(message, seconds=600) == {"keyless": Disposition.REQUEUED}
    [copy] = h.backlog.received
    assert carried_of(requeued_copy(copy, "copy")) == Carried(arrived_ms, switched=True)


class OthersTakeEverySlot(InProcessRateLimiter):
    """Other executions take each slot as it frees, for the first FREE_AFTER seconds: every answer says "try again
    in a second", so an estimate of the turn is always in time, and always wrong."""

    FREE_AFTER = 300.0

    def __init__(self, policy: WindowPolicy) -> None:
        super().__init__(policy)
        self.started: float | None = None

    def try_acquire(self, now: float, lane: Lane = Lane.TRANSACTIONAL, waiter: str | None = None) -> Permit | Denied:
        self.started = now if self.started is None else self.started
        if now < self.started + self.FREE_AFTER:
            return Denied(now + 1.0)
        return super().try_acquire(now, lane, waiter)


def test_a_request_estimated_in_time_waits_for_its_slot_until_its_deadline_then_switches() -> None:
    h = Harness(limit=10, limiter_class=OthersTakeEverySlot)
    messages = statuses(h, phones(3), after=30)
    arrived = h.clock()
    assert set(h.run(*messages, seconds=900).values()) == {Disposition.DELIVERED}
    assert texts(h) == {STATUS["title"]: 1}, "no own text: none could start by its deadline"
    assert h.api.calls[0].at >= arrived + OthersTakeEverySlot.FREE_AFTER
    assert max(reached(h).values()) == 1


def test_a_scheduled_request_is_due_at_its_send_at_not_when_sqs_first_accepted_it() -> None:
    h = Harness(limit=10)
    busy(h)  # the first opening is about 74 s away, before its sendAt + afterSeconds (90 s away)
    first_accepted_ms = int((h.clock() - 3600) * 1000)  # an hour ago: long past any deadline counted from then
    send_at = datetime.fromtimestamp(h.clock() + 30, UTC).isoformat().replace("+00:00", "Z")
    message = InboundMessage(
        "m-1", order_status(1, "u-1", after=60, sendAt=send_at), QUEUE_ARN, sent_timestamp_ms=first_accepted_ms
    )
    assert h.run(message) == {"m-1": Disposition.HELD}
    [held] = h.backlog.received
    h.clock.now += held.delay_seconds
    assert h.run(requeued_copy(held, "m-1/1"), seconds=600) == {"m-1/1": Disposition.DELIVERED}
    assert texts(h) == {"Заказ 1 передан в доставку": 1}


@settings(max_examples=40, deadline=None)
@given(
    window=st.sampled_from([4.0, 12.0, 60.0]),
    offsets=st.lists(st.floats(0.0, 0.999), min_size=1, max_size=3),
    per_batch=st.integers(1, 120),
)
def test_switched_requests_wake_before_the_opening_and_their_shared_call_takes_it(
    window: float, offsets: list[float], per_batch: int
) -> None:
    """The wake of a fallback's group is due ahead of the opening its requests were denied, by the time its
    execution needs to take and claim them, and never past it: an SQS delay is whole seconds, and a wake visible
    after the opening, its requests still to claim, finds the slots gone to bulk and to own texts, a window later."""
    h = Harness(limit=10, window=window, pending=True)
    busy(h)
    opening = min(h.limiter._slots.values())
    users = phones(per_batch * len(offsets))
    start = h.clock()
    visible: list[float] = []  # when each wake's message is visible: written now, delayed whole seconds
    for batch, offset in enumerate(sorted(offsets)):  # switched at any fraction of a second, in any batch
        h.clock.now = start + offset
        chunk = users[batch * per_batch : (batch + 1) * per_batch]
        results = h.run(*statuses(h, chunk, start=batch * per_batch, after=0), seconds=SECONDS)
        assert set(results.values()) == {Disposition.DEFERRED}
        visible += [h.clock() + delay for _, _, delay in h.backlog.wakes[len(visible) :]]
    assert max(visible) <= opening - 1.0, "visible a poll and the claims before the opening, not after it"
    assert min(visible) >= opening - window * WAKE_LEAD_WINDOWS - 1.0, "no earlier than it must: later ones join"
    _, group, _ = h.backlog.wakes[0]
    h.clock.now = min(visible)
    assert h.run(msg("wake", wake_body(group), **{GROUP_ATTRIBUTE: group}), seconds=90) == {
        "wake": Disposition.DELIVERED
    }
    assert texts(h) == {STATUS["title"]: 1}
    assert h.api.calls[0].at == pytest.approx(opening, abs=0.01), "its call waited for the opening in process"
    assert sorted(rid for _, rid in h.api.calls[0].recipients) == sorted(users)


@settings(max_examples=200, deadline=None)
@given(
    now=st.floats(0.0, 10_000.0),
    until_opening=st.floats(-120.0, 120.0),
    window=st.sampled_from([0.5, 4.0, 12.0, 60.0]),
)
def test_a_fallback_group_is_woken_whole_seconds_ahead_of_an_opening_never_past_it(
    now: float, until_opening: float, window: float
) -> None:
    """Whole seconds from now (an SQS delay), never past the opening it is for: this one while its lead is still
    ahead, else the next one (a wake for this one may be taken already), at once when a slot is free now."""
    opening = now + until_opening
    wake_at = fallback_wake_at(opening, now, window)
    delay = wake_at - now
    assert delay >= 0
    assert delay == pytest.approx(round(delay), abs=1e-6)
    lead, fuzz = window * WAKE_LEAD_WINDOWS, 1e-6
    if opening <= now:
        assert wake_at == now
    elif opening - lead >= now:
        assert opening - lead - 1 < wake_at <= opening - lead + fuzz
    else:
        assert opening + window - lead - 1 < wake_at <= opening + window - lead + fuzz


class SlowPool(FlakyPendingPool):
    """A take costs `seconds` of the clock, as reading hundreds of items does on a loaded emulator."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: Any = None
        self.seconds = 0.0

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        if self.clock is not None:
            self.clock.now += self.seconds
        return super().take(group, limit=limit)


@settings(max_examples=10, deadline=None)
@given(wakes=st.integers(2, 5))
def test_wakes_of_one_group_in_one_batch_read_it_once_and_its_call_goes(wakes: int) -> None:
    """A wake that waited in the queue past two windows is presumed lost and written again, so a slow queue holds
    several wakes of one group, and one batch may receive them all. Read once per wake, a slow pool spent the
    invocation's time before the claims; its call never went, and the wakes came back together, again and again."""
    pool = SlowPool()
    h = Harness(limit=10, window=4.0, pending_pool=pool)
    pool.clock = h.clock
    busy(h)
    users = phones(60)
    assert set(h.run(*statuses(h, users, after=0), seconds=SECONDS).values()) == {Disposition.DEFERRED}
    _, group, _ = h.backlog.wakes[0]
    h.clock.now += 3600  # every slot free again; the wakes arrive together
    pool.seconds, takes = 5.0, pool.takes
    messages = [msg(f"wake-{n}", wake_body(group), **{GROUP_ATTRIBUTE: group}) for n in range(wakes)]
    assert set(h.run(*messages, seconds=SECONDS).values()) == {Disposition.DELIVERED}
    assert pool.takes - takes == 1
    assert texts(h) == {STATUS["title"]: 1}
    assert sorted(rid for _, rid in h.api.calls[0].recipients) == sorted(users)
