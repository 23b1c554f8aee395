"""The rate limit and the backlog: no more than the limit of calls per window, 429s, and deferrals
spread over the windows in which their turn comes."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import replace
from typing import Any

from fakes import WORST_CASE, ExecutionCrashError, FakeImshopClient
from harness import BONUS, SHIPPED, Harness, body, drain, msg, phones
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rate_limit import violations

from fake_clock import T0, FakeClock
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.lanes import Lane
from imshop_push.domain.model import CallOutcome, CallResult
from imshop_push.domain.parsing import parse_body
from imshop_push.domain.rate_limit import PRE_CALL_ALLOWANCE_SECONDS, Denied, InProcessRateLimiter, Permit, WindowPolicy
from imshop_push.entrypoints.config import Settings
from imshop_push.entrypoints.runtime import Runtime


def test_429_blocks_the_limiter_until_retry_after_and_the_call_is_retried() -> None:
    h = Harness()
    h.api.script = [CallOutcome(CallResult.RATE_LIMITED, "429 Too Many Requests", 429, 7.0)]

    assert h.run(msg("m1", body(users=["u1"]))) == {"m1": Disposition.DELIVERED}
    first, second = h.api.calls
    assert second.at >= first.at + 7.0
    assert second.payload == first.payload
    assert h.metrics["ImshopCallsRateLimited"] == 1
    assert h.metrics["ImshopCallsSent"] == 1
    assert h.metrics["RateLimitWaits"] >= 1


def test_429_without_retry_after_backs_off_a_whole_window() -> None:
    h = Harness(window=60)
    h.api.script = [CallOutcome(CallResult.RATE_LIMITED, "429 Too Many Requests", 429, None)]

    h.run(msg("m1", body(users=["u1"])), seconds=300)

    first, second = h.api.calls
    assert second.at >= first.at + 60


def test_429_that_outlasts_the_invocation_defers_instead_of_failing() -> None:
    h = Harness()
    h.api.script = [CallOutcome(CallResult.RATE_LIMITED, "429 Too Many Requests", 429, 600.0)]

    results = h.results(msg("m1", body(users=["u1"])), seconds=90)

    assert results["m1"].disposition is Disposition.DEFERRED
    [deferral] = h.backlog.received
    assert deferral.delay_seconds >= 600 - 1
    assert len(h.api.calls) == 1


def test_imshop_answering_429_again_and_again_defers_the_request_instead_of_failing_it() -> None:
    # Throttling is waiting for budget, not a failure: a RETRY would walk a valid request towards the DLQ.
    h = Harness()
    h.api.answer = lambda _payload: CallOutcome(CallResult.RATE_LIMITED, "429", 429, 30.0)

    assert h.run(msg("m1", body(users=["u1"])), seconds=900) == {"m1": Disposition.DEFERRED}
    assert 2 <= len(h.api.calls) <= 5
    [deferral] = h.backlog.received
    assert deferral.delay_seconds >= 29, "re-enqueued for when IMSHOP said it would take calls again"


def test_no_more_than_the_limit_of_calls_start_within_any_window() -> None:
    h = Harness(limit=3, window=60, margin=1.2, max_recipients=1)
    message = msg("m1", body(users=phones(7)))
    h.api.duration = 0.5

    results = h.run(message, seconds=900)

    assert results == {"m1": Disposition.DELIVERED}
    starts = [c.at for c in h.api.calls]
    assert len(starts) == 7
    for i in range(len(starts) - 3):
        assert starts[i + 3] >= starts[i] + 0.5 + 60  # the 4th call starts a window after the 1st one ended
    assert h.metrics["RateLimitWaits"] >= 2


def test_no_call_starts_after_the_last_moment_the_invocation_allows() -> None:
    # Slow IMSHOP: each call takes 20 s. A call started after deadline.last_call_start could still be running
    # when Lambda kills the execution: the dispatcher must defer the rest instead
    # (docs/contract.md#backlog-is-not-failure).
    h = Harness(limit=10, max_recipients=1)
    h.api.duration = 20.0

    results = h.run(msg("m1", body(users=phones(3))), seconds=45)

    deadline = h.deadlines[-1]
    assert all(c.at <= deadline.last_call_start for c in h.api.calls), [c.at - T0 for c in h.api.calls]
    assert h.clock() <= deadline.hard
    assert results["m1"] is Disposition.DEFERRED


def test_out_of_budget_before_the_deadline_defers_to_the_backlog_with_a_sensible_delay() -> None:
    h = Harness(limit=2, window=60, margin=1.2, max_recipients=1)
    raw = msg("raw", body(users=phones(3)), source="crm")
    keyed = msg("keyed", body(users=phones(2, start=10), message=BONUS, key="bonus-1"))

    results = h.run(raw, keyed, seconds=30)

    assert results == {"raw": Disposition.DEFERRED, "keyed": Disposition.DEFERRED}
    assert len(h.api.calls) == 2
    assert h.metrics["RequestsDeferred"] == 2
    by_id = {d.message.message_id: d for d in h.backlog.received}
    assert set(by_id) == {"raw", "keyed"}
    assert by_id["raw"].key_is_message_id is True
    assert by_id["raw"].idempotency_key == "raw"
    assert by_id["raw"].message is raw  # original body and attributes travel with it
    assert by_id["keyed"].key_is_message_id is False
    assert by_id["keyed"].idempotency_key == "bonus-1"
    slot_opens = h.api.calls[0].at + 60 + 1.2 - h.clock()
    for deferral in by_id.values():
        # Back within a second before its slot opens (it waits the rest in process), never after it.
        assert slot_opens - 1 < deferral.delay_seconds <= slot_opens
    assert by_id["keyed"].delay_seconds >= by_id["raw"].delay_seconds  # the later calls wait longer


def test_deferrals_are_spread_over_the_windows_in_which_their_turn_comes() -> None:
    h = Harness(limit=1, window=60, margin=1.2)
    messages = [msg(f"m{i}", body(users=["u1"], message={"title": f"t{i}", "summary": "s"})) for i in range(4)]

    results = h.run(*messages, seconds=30)

    assert results["m0"] is Disposition.DELIVERED
    delays = [d.delay_seconds for d in sorted(h.backlog.received, key=lambda d: d.message.message_id)]
    assert len(delays) == 3
    assert delays[0] >= 61
    assert delays[1] >= delays[0] + 59
    assert delays[2] >= delays[1] + 59


def test_a_failed_backlog_requeue_sends_the_record_back_to_sqs() -> None:
    h = Harness(limit=1, max_recipients=1)
    h.backlog.fail_ids = {"m2"}

    results = h.run(msg("m1", body(users=["u1"])), msg("m2", body(users=["u2"], message=BONUS)), seconds=30)

    assert results == {"m1": Disposition.DELIVERED, "m2": Disposition.RETRY}


def test_a_deferred_request_comes_back_and_every_recipient_gets_it_exactly_once() -> None:
    h = Harness(limit=2, window=60, margin=1.2, max_recipients=2)

    drain(h, [msg("m1", body(users=phones(9))), msg("m2", body(users=phones(5, start=7), message=BONUS))], seconds=30)

    expected = {(SHIPPED["title"], "userIds", p): 1 for p in phones(9)}
    expected |= {(BONUS["title"], "userIds", p): 1 for p in phones(5, start=7)}
    assert h.api.delivered() == Counter(expected)
    starts = sorted(c.at for c in h.api.calls)
    assert all(starts[i + 2] >= starts[i] + 60 for i in range(len(starts) - 2))


def test_a_deferred_request_keeps_only_attempts_that_started_a_call_for_it() -> None:
    """Redeliveries read the calls of a request's attempts: planned-but-never-started calls must not pile up
    there, or every round of a long backlog reads more than the one before."""
    h = Harness(limit=1, window=60, max_recipients=1)
    first = msg("first", body(users=["u1", "u2"], key="first"))
    never = msg("never", body(users=["u9"], key="never", message=BONUS))

    assert h.run(first, never, seconds=20) == {"first": Disposition.DEFERRED, "never": Disposition.DEFERRED}
    assert len(h.api.calls) == 1

    keys = [
        (r.idempotency_key, r.fingerprint)
        for r in (parse_body(m.body, message_id=m.message_id) for m in (first, never))
    ]
    claims = h.state.claim_many(keys, attempt_id="probe", now=h.clock() + 100, lease_until=h.clock() + 200)
    assert claims["never"].attempts == (), "no call carried it: its history stays empty"
    (attempt,) = claims["first"].attempts
    records = h.state.load_calls([attempt], now=h.clock())
    assert len(records) == 1, "only the call that was started is on record"


def test_a_call_whose_checks_stalled_past_the_reserved_allowance_takes_a_slot_again() -> None:
    """Between a permit and its call the host may stall (a slow record write); the slot's reservation covers
    only the allowance of that, so a later call could arrive less than a window after another. The stale permit
    is given back unused and the call goes out on a slot taken again."""
    from imshop_push.domain.state import CallStatus

    h = Harness(limit=1, window=10.0, margin=0.0, limiter_class=SlowAcquireLimiter)
    limiter = h.limiter
    assert isinstance(limiter, SlowAcquireLimiter)
    stall = PRE_CALL_ALLOWANCE_SECONDS + 5.0
    original = h.state.mark_call
    stalls = [stall]

    def slow_pending(call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None:
        if status is CallStatus.PENDING and stalls:
            h.clock.now += stalls.pop()
        original(call_id, digests, status=status, now=now)

    h.state.mark_call = slow_pending  # type: ignore[method-assign]
    assert h.run(msg("m1", body(users=phones(1))), seconds=90) == {"m1": Disposition.DELIVERED}
    [call] = h.api.calls
    stale, fresh = limiter.issued
    assert limiter.given_back == [stale], "not sent on the stale permit"
    assert stale.start_by < call.at <= fresh.start_by, "sent on a permit that covers it"


# --- a slow acquire: the permit must cover the call from the moment it is used ---------------------------


class SlowAcquireLimiter(InProcessRateLimiter):
    """The shared limiter whose acquire returns `durations[n]` seconds after it decided (the n-th acquire): the
    round trips of a DynamoDB acquire that met conflicts or throttling. Its policy is what `Runtime` builds: the
    call's worst case plus the pre-call allowance, of which a call may start within the allowance."""

    def __init__(self, policy: WindowPolicy) -> None:
        super().__init__(
            replace(
                policy,
                worst_case_call_seconds=policy.worst_case_call_seconds + PRE_CALL_ALLOWANCE_SECONDS,
                start_allowance_seconds=PRE_CALL_ALLOWANCE_SECONDS,
            )
        )
        self.clock = FakeClock()
        self.durations: list[float] = []
        self.issued: list[Permit] = []
        self.given_back: list[Permit] = []

    def try_acquire(self, now: float, lane: Lane = Lane.TRANSACTIONAL, waiter: str | None = None) -> Permit | Denied:
        outcome = super().try_acquire(now, lane, waiter)
        if isinstance(outcome, Permit):
            self.issued.append(outcome)
        if self.durations:
            self.clock.now += self.durations.pop(0)
        return outcome

    def give_back(self, permit: Permit) -> None:
        self.given_back.append(permit)
        super().give_back(permit)


def slow_acquire_harness(*, limit: int, durations: list[float]) -> tuple[Harness, SlowAcquireLimiter]:
    h = Harness(limit=limit, window=60.0, margin=1.2, max_recipients=1, limiter_class=SlowAcquireLimiter)
    limiter = h.limiter
    assert isinstance(limiter, SlowAcquireLimiter)
    limiter.clock = h.clock
    limiter.durations = list(durations)
    return h, limiter


def run_executions(h: Harness, crashes: list[bool]) -> list[tuple[float, float]]:
    """One execution per entry, one message of two recipients each (two calls); an execution that crashes dies
    in its first call. Returns each call's interval of possible arrival: a call whose execution died may arrive
    as late as its worst case."""
    intervals: list[tuple[float, float]] = []
    for n, crash in enumerate(crashes):
        h.api.script = [ExecutionCrashError("Task timed out")] if crash else []
        before = len(h.api.calls)
        text = {"title": f"t{n}", "summary": "s"}
        with contextlib.suppress(ExecutionCrashError):
            h.run(msg(f"m{n}", body(users=phones(2, start=10 * n), message=text)), seconds=300)
        for i, call in enumerate(h.api.calls[before:]):
            died = crash and i == 0
            intervals.append((call.at, call.at + (WORST_CASE if died else h.api.duration)))
    return intervals


def test_a_call_after_a_slow_acquire_and_a_death_mid_call_is_a_window_before_the_slots_next_call() -> None:
    """The review's sequence: limit 1 per 60 s, a 3 s acquire, a worst-case call, a death mid-call. On the
    permit of that acquire the call would start 3 s into a reservation that covers 1 s of waiting: the next call
    through the slot would start 59.2 s after this one could have arrived."""
    h, _ = slow_acquire_harness(limit=1, durations=[3.0])
    h.api.duration = 0.5

    intervals = run_executions(h, crashes=[True, False])

    (_, died_arrival), (next_start, _), *_ = sorted(intervals)
    assert next_start - died_arrival >= 60.0, "the next call arrives a whole window after the dead one could"
    assert violations(intervals, limit=1, window=60.0) == []


@settings(max_examples=200, deadline=None)
@given(
    durations=st.lists(
        st.one_of(st.sampled_from([0.0, 0.5, 0.99, 1.0, 1.01, 1.2, 2.2, 3.0, 14.0]), st.floats(0, 70)), max_size=12
    ),
    crashes=st.lists(st.booleans(), min_size=1, max_size=4),
    limit=st.integers(min_value=1, max_value=3),
    call_seconds=st.sampled_from([0.0, 0.5, WORST_CASE]),
)
def test_however_long_acquires_take_no_window_holds_more_than_the_limit_of_arrivals(
    durations: list[float], crashes: list[bool], limit: int, call_seconds: float
) -> None:
    """Any acquire durations (each acquire returns that long after it decided), executions that die mid-call:
    no window of 60 s can hold more than `limit` arrivals, each call arriving anywhere from its start to its end
    (its worst case when its execution died). A permit that no longer covers a call is not used."""
    h, _ = slow_acquire_harness(limit=limit, durations=durations)
    h.api.duration = call_seconds

    intervals = run_executions(h, crashes)

    assert violations(intervals, limit, window=60.0) == []


def test_a_permit_used_within_its_allowance_is_used_and_one_past_it_is_not() -> None:
    h, limiter = slow_acquire_harness(
        limit=1, durations=[PRE_CALL_ALLOWANCE_SECONDS, PRE_CALL_ALLOWANCE_SECONDS + 0.001]
    )

    assert h.run(msg("m1", body(users=["u1"]))) == {"m1": Disposition.DELIVERED}
    [first] = h.api.calls
    assert first.at == T0 + PRE_CALL_ALLOWANCE_SECONDS, "an acquire within the allowance: its permit is used"
    assert limiter.given_back == []

    h.clock.now += 120
    assert h.run(msg("m2", body(users=["u2"], message=BONUS))) == {"m2": Disposition.DELIVERED}
    [_, second] = h.api.calls
    _, late, retaken = limiter.issued
    assert limiter.given_back == [late], "the late permit was given back unused"
    assert late.start_by < second.at <= retaken.start_by, "the call went out on the slot taken again"
    assert not limiter.durations


def test_a_permit_whose_acquire_ran_past_the_last_call_start_is_given_back_and_the_request_waits() -> None:
    """A permit still within its allowance does not make the invocation longer: a call started after
    `last_call_start` eats the time kept for the history and settling, or outlives the invocation."""
    from imshop_push.domain.model import Deadline

    h, limiter = slow_acquire_harness(limit=1, durations=[PRE_CALL_ALLOWANCE_SECONDS / 2])
    deadline = Deadline(hard=T0 + 60.0, last_call_start=T0 + PRE_CALL_ALLOWANCE_SECONDS / 4)

    results = h.dispatcher.dispatch([msg("m1", body(users=["u1"]))], deadline=deadline)

    assert results["m1"].disposition is Disposition.DEFERRED
    assert h.api.calls == [], "no call started after the last moment the invocation allows"
    [permit] = limiter.issued
    assert limiter.given_back == [permit], "the slot it did not use is free for the next call"


# --- one window per stack, whatever the URL says -------------------------------------------------------


def test_a_rotated_url_keeps_the_window_of_the_calls_made_before() -> None:
    """The URL parameter is read again every 5 minutes, and a new value rebuilds the dispatcher: the calls made
    through the old URL still count (limit 1 per 60 s), in process as in the table."""
    clock = FakeClock()
    arrivals: list[tuple[float, str]] = []

    class RecordingClient(FakeImshopClient):
        def send(self, payload: dict[str, Any]) -> CallOutcome:
            arrivals.append((clock(), self.url))
            return super().send(payload)

    settings = Settings.from_env(
        {"IMSHOP_API_URL": "https://imshop.example/push/old-token", "RATE_LIMIT_REQUESTS": "1"}
    )
    runtime = Runtime(
        settings, metric=lambda _name, _value: None, clock=clock, sleep=clock.sleep, api_client=RecordingClient
    )
    for n, url in enumerate(("https://imshop.example/push/old-token", "https://imshop.example/push/new-token")):
        runtime.settings = replace(settings, api_url=url)
        text = body(users=[f"u{n}"], message={"title": f"t{n}", "summary": "s"})
        assert (
            runtime.handle([msg(f"m{n}", text)], remaining_seconds=300.0)[f"m{n}"].disposition is Disposition.DELIVERED
        )

    (first_at, first_url), (second_at, second_url) = arrivals
    assert first_url != second_url
    assert second_at >= first_at + settings.rate_limit_window_seconds
