"""Quiet hours decided at the call, not only at receipt: a bulk request due when it was received (so not held)
may wait for a slot until the quiet hours have begun; it is then deferred to their end, never sent inside them
(docs/contract.md#send-time). The clock is T0 = 2027-01-15 08:00:00Z; the quiet hours here are in UTC."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from harness import BONUS, SHIPPED, Harness, body, msg, phones, requeued_copy
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_clock import T0
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.pending import GROUP_ATTRIBUTE, wake_body
from imshop_push.domain.rate_limit import PRE_CALL_ALLOWANCE_SECONDS, InProcessRateLimiter, WindowPolicy
from imshop_push.domain.send_time import QuietHours, SendTime, parse_window
from imshop_push.domain.sqs_copies import SQS_MAX_DELAY_SECONDS
from imshop_push.domain.state import CallStatus

BULK_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-bulk"
TTL = 14 * 24 * 3600


def quiet_utc(hours: str) -> QuietHours:
    window = parse_window(hours)
    assert window is not None
    return QuietHours(*window, ZoneInfo("UTC"))


def bulk(message_id: str, text: str) -> InboundMessage:
    return msg(message_id, text)._replace(event_source_arn=BULK_ARN)


def deliver_until_done(h: Harness, messages: list[InboundMessage], *, rounds: int = 100) -> None:
    """Invoke on what SQS hands over, in the order it would: each copy (deferred or held) and each wake of the
    pending pool comes back after its delay, at most SQS's 15 minutes, as a new message of the bulk queue."""
    waiting = [(h.clock(), m) for m in messages]
    for round_ in range(rounds):
        if not waiting:
            return
        h.clock.now = max(h.clock(), min(at for at, _ in waiting))
        due, waiting = [m for at, m in waiting if at <= h.clock()], [(at, m) for at, m in waiting if at > h.clock()]
        before, wakes_before = len(h.backlog.received), len(h.backlog.wakes)
        results = h.results(*due, seconds=120)
        assert not any(r.disposition.is_failure for r in results.values()), results
        for n, copy in enumerate(h.backlog.received[before:]):
            at = h.clock() + min(copy.delay_seconds, SQS_MAX_DELAY_SECONDS)
            waiting.append((at, requeued_copy(copy, f"{copy.message.message_id.split('/')[0]}/{round_}.{n}")))
        for n, (_, group, delay) in enumerate(h.backlog.wakes[wakes_before:]):
            attributes = {GROUP_ATTRIBUTE: {"dataType": "String", "stringValue": group}}
            wake = bulk(f"wake/{round_}.{n}", wake_body(group))._replace(message_attributes=attributes)
            waiting.append((h.clock() + min(delay, SQS_MAX_DELAY_SECONDS), wake))
    raise AssertionError("the backlog never drained")


def utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def test_a_bulk_call_that_waited_for_a_slot_into_the_quiet_hours_is_deferred_to_their_end() -> None:
    """Received at 08:00:00 (not quiet: not held), two calls at limit 1 per 60 s; the second call's slot opens
    after 08:01, when the quiet hours 08:01-10:00 have begun."""
    hours = quiet_utc("08:01-10:00")
    h = Harness(limit=1, max_recipients=1, bulk_queue_arn=BULK_ARN, send_time=SendTime(TTL, hours))

    assert h.run(bulk("b", body(users=["u1", "u2"])), seconds=300) == {"b": Disposition.DEFERRED}

    assert [utc(c.at) for c in h.api.calls] == ["08:00:00"], "the second call is not sent inside the quiet hours"
    [deferral] = h.backlog.received
    # Back within a second before their end (Hold waits the rest in process), never later.
    assert T0 + 2 * 3600 - 1 < h.clock() + deferral.delay_seconds <= T0 + 2 * 3600, "deferred to their end"


def test_a_transactional_call_that_waited_into_the_quiet_hours_is_sent() -> None:
    h = Harness(limit=1, max_recipients=1, bulk_queue_arn=BULK_ARN, send_time=SendTime(TTL, quiet_utc("08:01-10:00")))

    assert h.run(msg("t", body(users=["u1", "u2"])), seconds=300) == {"t": Disposition.DELIVERED}

    assert len(h.api.calls) == 2
    assert h.api.calls[1].at > T0 + 60


def test_a_bulk_call_does_not_wait_in_process_past_the_start_of_the_quiet_hours() -> None:
    """Its slot opens inside them: the execution does not sleep until then only to give the slot back."""
    hours = QuietHours(time(8, 0, 30), time(10), ZoneInfo("UTC"))
    h = Harness(limit=1, max_recipients=1, bulk_queue_arn=BULK_ARN, send_time=SendTime(TTL, hours))

    h.run(bulk("b", body(users=["u1", "u2"])), seconds=300)

    assert h.clock() <= T0 + 30, "deferred when the wait would cross the start, not after a minute's sleep"
    assert len(h.api.calls) == 1


@settings(max_examples=150, deadline=None)
@given(
    quiet_in=st.one_of(st.sampled_from([1.0, 13.0, 60.0, 61.2, 75.0]), st.floats(min_value=0.5, max_value=400)),
    quiet_minutes=st.integers(min_value=1, max_value=120),
    limit=st.integers(min_value=1, max_value=3),
    requests=st.integers(min_value=1, max_value=7),
    call_seconds=st.sampled_from([0.0, 0.5, 13.0]),
    transactional_too=st.booleans(),
    pending=st.booleans(),
)
def test_no_bulk_call_starts_inside_the_quiet_hours_and_every_recipient_gets_one_push(
    *,
    quiet_in: float,
    quiet_minutes: int,
    limit: int,
    requests: int,
    call_seconds: float,
    transactional_too: bool,
    pending: bool,
) -> None:
    """Bulk requests received before the quiet hours begin (at any distance), with more calls than the limit
    allows before they begin, waiting as copies or together in the pending pool: whatever the waits, no bulk
    call starts inside them, and after the backlog drains every recipient got exactly one push."""
    start = T0 + quiet_in
    hours = QuietHours(
        datetime.fromtimestamp(start, UTC).time(),
        datetime.fromtimestamp(start + quiet_minutes * 60, UTC).time(),
        ZoneInfo("UTC"),
    )
    h = Harness(limit=limit, max_recipients=3, pending=pending, bulk_queue_arn=BULK_ARN, send_time=SendTime(TTL, hours))
    h.api.duration = call_seconds
    users = phones(requests)
    messages = [bulk(f"b{n}", body(users=[user], key=f"b{n}")) for n, user in enumerate(users)]
    messages.append(bulk("x", body(users=["x"], message=BONUS)))
    if transactional_too:
        messages.append(msg("t", body(users=phones(2, start=50), message={"title": "order", "summary": "s"})))

    deliver_until_done(h, messages)

    for call in h.api.calls:
        if call.payload["message"]["title"] in {SHIPPED["title"], BONUS["title"]}:
            assert hours.release(call.at) is None, f"a bulk call at {utc(call.at)} inside the quiet hours"
    delivered = Counter(r for c in h.api.calls for _, r in c.recipients)
    assert delivered == Counter([*users, "x", *(phones(2, start=50) if transactional_too else [])])


class RuntimeLimiter(InProcessRateLimiter):
    """The window as `Runtime` builds it: a call may start within the pre-call allowance of its permit."""

    def __init__(self, policy: WindowPolicy) -> None:
        allowance = PRE_CALL_ALLOWANCE_SECONDS
        super().__init__(
            replace(
                policy,
                worst_case_call_seconds=policy.worst_case_call_seconds + allowance,
                start_allowance_seconds=allowance,
            )
        )


def test_a_bulk_call_whose_last_checks_run_into_the_quiet_hours_is_not_sent() -> None:
    """The slot is free and the quiet hours are half a second away; the call record takes 0.6 s (within the
    permit's allowance): the look right before the call sees the quiet hours and defers it to their end."""
    hours = QuietHours(time(8, 0, 0, 500_000), time(10), ZoneInfo("UTC"))
    h = Harness(bulk_queue_arn=BULK_ARN, send_time=SendTime(TTL, hours), limiter_class=RuntimeLimiter)
    original = h.state.mark_call

    def slow_record(call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None:
        if status is CallStatus.PENDING:
            h.clock.now += 0.6
        original(call_id, digests, status=status, now=now)

    h.state.mark_call = slow_record  # type: ignore[method-assign]

    assert h.run(bulk("b", body(users=["u1"]))) == {"b": Disposition.DEFERRED}
    assert h.api.calls == []
    [deferral] = h.backlog.received
    # Back within a second before their end (Hold waits the rest in process), never later.
    assert T0 + 2 * 3600 - 1 < h.clock() + deferral.delay_seconds <= T0 + 2 * 3600, "deferred to their end"


def test_bulk_requests_waiting_together_in_the_pending_pool_are_not_sent_inside_the_quiet_hours() -> None:
    """Shared waiting: one text, three requests, every slot taken until after the quiet hours (08:00:30-10:00)
    have begun. They wait (in the pool, then held) for the end of the quiet hours, and leave together then."""
    hours = QuietHours(time(8, 0, 30), time(10), ZoneInfo("UTC"))
    h = Harness(limit=1, pending=True, bulk_queue_arn=BULK_ARN, send_time=SendTime(TTL, hours))
    h.limiter.try_acquire(h.clock())  # another execution's call
    requests = [bulk(f"b{n}", body(users=[f"u{n}"], key=f"b{n}")) for n in range(3)]

    deliver_until_done(h, requests)

    assert h.metrics["RequestsPooled"] >= 3, "they waited in the pool first"

    # Back together at 10:00, they wait about a window for more of their text (fill before you spend).
    [call] = h.api.calls
    assert T0 + 2 * 3600 - 30 <= call.at <= T0 + 2 * 3600 + 61, utc(call.at)
    assert sorted(r for _, r in h.api.calls[0].recipients) == ["u0", "u1", "u2"]
