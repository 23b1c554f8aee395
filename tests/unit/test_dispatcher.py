"""The dispatcher end to end on in-process fakes (SPEC section 4): merging, poison, exactly once, the limit,
backlog, expiry, and failures of every collaborator.

Time is a fake clock; the fake IMSHOP records every payload with the moment it was sent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from fake_clock import T0, FakeClock
from imshop_push.dispatcher import Deadline, Dispatcher, Disposition, RecordResult
from imshop_push.imshop_client import CallOutcome, CallResult
from imshop_push.inbound import InboundMessage
from imshop_push.observability import METRIC_NAMES
from imshop_push.parsing import parse_body
from imshop_push.rate_limit import Denied, InProcessRateLimiter, Permit, WindowPolicy
from imshop_push.runtime import invocation_deadline
from imshop_push.sqs_outbox import Deferral, Poison, dead_letter_entry, requeue_entry
from imshop_push.state import CallRecord, CallStatus, Claim, InProcessStateStore, Settlement, StateStoreError

QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-requests"
WORST_CASE = 13.0
SHIPPED = {"title": "Заказ отправлен", "summary": "Заказ передан в доставку"}
BONUS = {"title": "Бонусы сгорают", "summary": "Осталось 3 дня"}

SENT = CallOutcome(CallResult.SENT, "success", 200)
FAILED = CallOutcome(CallResult.FAILED, "IMSHOP answered 503: no error text", 503)
AMBIGUOUS = CallOutcome(CallResult.AMBIGUOUS, "no answer within the read timeout")


# --- fakes ----------------------------------------------------------------------------------------------


@dataclass
class SentCall:
    at: float
    payload: dict[str, Any]

    @property
    def recipients(self) -> list[tuple[str, str]]:
        return [("userIds", u) for u in self.payload.get("userIds", [])] + [
            ("installIds", i) for i in self.payload.get("installIds", [])
        ]


class ExecutionCrashError(Exception):
    """The execution dies mid-call (Lambda timeout, out of memory): the dispatcher never sees an answer."""


class FakeImshop:
    """Records every call; answers from a script (one outcome per call, then SENT), taking `duration` seconds."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.script: list[CallOutcome | Exception] = []
        self.answer: Callable[[dict[str, Any]], CallOutcome] | None = None
        self.duration = 0.0
        self.calls: list[SentCall] = []

    @property
    def worst_case_seconds(self) -> float:
        return WORST_CASE

    def send(self, payload: dict[str, object]) -> CallOutcome:
        self.calls.append(SentCall(self.clock(), json.loads(json.dumps(payload))))
        self.clock.now += self.duration
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return self.answer(payload) if self.answer else SENT

    def delivered(self) -> Counter[tuple[str, str, str]]:
        """(title, field, id) per recipient over the calls IMSHOP accepted... or may have accepted."""
        return Counter((c.payload["message"]["title"], f, r) for c in self.calls for f, r in c.recipients)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.received: list[Poison] = []
        self.fail_ids: set[str] = set()

    def send(self, poison: Sequence[Poison]) -> set[str]:
        self.received += [p for p in poison if p.message.message_id not in self.fail_ids]
        return {p.message.message_id for p in poison} & self.fail_ids


class FakeBacklog:
    def __init__(self) -> None:
        self.received: list[Deferral] = []
        self.fail_ids: set[str] = set()

    def requeue(self, deferrals: Sequence[Deferral]) -> set[str]:
        self.received += [d for d in deferrals if d.message.message_id not in self.fail_ids]
        return {d.message.message_id for d in deferrals} & self.fail_ids


def client_error(operation: str) -> ClientError:
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, operation)


class FlakyStateStore(InProcessStateStore):
    """The in-process store, with operations that can be told to raise botocore's ClientError."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.mark_sent_failures = 0  # how many "sent" records to refuse before taking them again

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.failing:
            raise client_error(operation)

    def claim_many(
        self, requests: Sequence[tuple[str, str]], *, attempt_id: str, now: float, lease_until: float
    ) -> dict[str, Claim]:
        self._maybe_fail("claim_many")
        return super().claim_many(requests, attempt_id=attempt_id, now=now, lease_until=lease_until)

    def start_attempt(self, attempt_id: str, call_count: int, *, now: float) -> None:
        self._maybe_fail("start_attempt")
        super().start_attempt(attempt_id, call_count, now=now)

    def load_calls(self, attempt_ids: Collection[str], *, now: float) -> list[CallRecord]:
        self._maybe_fail("load_calls")
        return super().load_calls(attempt_ids, now=now)

    def mark_call(self, call_id: str, digests: bytes, *, status: CallStatus, now: float) -> None:
        if status is CallStatus.SENT and self.mark_sent_failures:
            self.mark_sent_failures -= 1
            raise client_error("mark_call")
        if status is CallStatus.PENDING:
            self._maybe_fail("mark_call")
        super().mark_call(call_id, digests, status=status, now=now)

    def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        self._maybe_fail("settle")
        super().settle(settlements, now=now)


class Harness:
    """One execution environment: the dispatcher and its fakes, surviving between invocations."""

    def __init__(
        self,
        *,
        limit: int = 10,
        window: float = 60.0,
        margin: float = 1.2,
        max_recipients: int = 1000,
        dead_letters: bool = True,
        limiter_class: type[InProcessRateLimiter] = InProcessRateLimiter,
    ) -> None:
        self.clock = FakeClock()
        self.api = FakeImshop(self.clock)
        self.policy = WindowPolicy(limit, window, margin, WORST_CASE)
        self.limiter = limiter_class(self.policy)
        self.state = FlakyStateStore()
        self.dlq = FakeDeadLetters()
        self.backlog = FakeBacklog()
        self.metrics: Counter[str] = Counter()
        self.dispatcher = Dispatcher(
            api=self.api,
            limiter=self.limiter,
            state=self.state,
            dead_letters=self.dlq if dead_letters else None,
            backlog=self.backlog,
            metric=self.metric,
            max_recipients=max_recipients,
            rate_limit_requests=limit,
            rate_limit_window_seconds=window,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        self.deadlines: list[Deadline] = []

    def metric(self, name: str, value: int) -> None:
        assert name in METRIC_NAMES, f"metric {name!r} is not in observability.METRIC_NAMES"
        assert isinstance(value, int)
        assert value >= 0
        self.metrics[name] += value

    def run(self, *messages: InboundMessage, seconds: float = 90.0) -> dict[str, Disposition]:
        """One invocation with `seconds` left, as Runtime computes the deadline."""
        return {mid: r.disposition for mid, r in self.results(*messages, seconds=seconds).items()}

    def results(self, *messages: InboundMessage, seconds: float = 90.0) -> dict[str, RecordResult]:
        now = self.clock()
        hard = now + seconds
        deadline = invocation_deadline(hard, seconds, records=len(messages), worst_case_call_seconds=WORST_CASE)
        self.deadlines.append(deadline)
        results = self.dispatcher.dispatch(list(messages), deadline=deadline)
        assert set(results) == {m.message_id for m in messages}, "one result per record, no more, no less"
        return results


def body(
    *,
    users: Sequence[str] = (),
    installs: Sequence[str] = (),
    message: dict[str, str] | None = None,
    deeplink: str | None = None,
    key: str | None = None,
    expires_at: float | None = None,
) -> str:
    document: dict[str, Any] = {}
    if users:
        document["userIds"] = list(users)
    if installs:
        document["installIds"] = list(installs)
    document["message"] = message or SHIPPED
    if deeplink is not None:
        document["deeplink"] = deeplink
    if key is not None:
        document["idempotencyKey"] = key
    if expires_at is not None:
        document["expiresAt"] = datetime.fromtimestamp(expires_at, UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(document, ensure_ascii=False)


def msg(message_id: str, text: str, **attributes: str) -> InboundMessage:
    return InboundMessage(
        message_id=message_id,
        body=text,
        event_source_arn=QUEUE_ARN,
        message_attributes={name: {"dataType": "String", "stringValue": value} for name, value in attributes.items()},
    )


def phones(count: int, start: int = 0) -> list[str]:
    return [f"7999{n:07d}" for n in range(start, start + count)]


def requeued_copy(deferral: Deferral, new_id: str) -> InboundMessage:
    """What SQS hands back after the backlog sink re-enqueued a deferral, built by sqs_outbox itself."""
    entry = requeue_entry(deferral)
    return InboundMessage(new_id, entry["MessageBody"], deferral.message.event_source_arn, 1, lambda_attributes(entry))


def lambda_attributes(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """SendMessage's attribute shape as Lambda delivers it."""
    return {
        name: {"dataType": value["DataType"], "stringValue": value["StringValue"]}
        for name, value in entry.get("MessageAttributes", {}).items()
    }


def drain(h: Harness, messages: list[InboundMessage], *, seconds: float, rounds: int = 30) -> None:
    """Invoke until the backlog is empty: each deferral comes back as SQS would hand it back, after its delay."""
    pending = messages
    for round_ in range(rounds):
        before = len(h.backlog.received)
        results = h.results(*pending, seconds=seconds)
        assert not any(r.disposition.is_failure for r in results.values()), results
        deferred = h.backlog.received[before:]
        assert {d.message.message_id for d in deferred} == {
            mid for mid, r in results.items() if r.disposition is Disposition.DEFERRED
        }
        if not deferred:
            return
        pending = [requeued_copy(d, f"{d.message.message_id}/{round_}") for d in deferred]
        h.clock.now += max(d.delay_seconds for d in deferred)
    pytest.fail("the backlog never drained")


# --- merging --------------------------------------------------------------------------------------------


def test_same_content_across_records_is_one_call_with_recipients_deduplicated() -> None:
    h = Harness()

    results = h.run(
        msg("m1", body(users=["79990000001", "79990000002"])),
        msg("m2", body(users=["79990000002", "79990000003"], installs=["iid-1"])),
        msg("m3", body(installs=["iid-1", "iid-2"])),
    )

    assert results == {"m1": Disposition.DELIVERED, "m2": Disposition.DELIVERED, "m3": Disposition.DELIVERED}
    [call] = h.api.calls
    assert call.payload == {
        "userIds": ["79990000001", "79990000002", "79990000003"],
        "installIds": ["iid-1", "iid-2"],
        "message": SHIPPED,
    }
    assert h.metrics["ImshopCallsSent"] == 1
    assert h.metrics["RecipientsSent"] == 5
    assert h.metrics["RequestsReceived"] == 3


def test_merged_recipients_are_split_only_at_the_limit() -> None:
    h = Harness(max_recipients=3)

    results = h.run(msg("m1", body(users=phones(4))), msg("m2", body(users=phones(4, start=2))))

    assert set(results.values()) == {Disposition.DELIVERED}
    assert [len(c.recipients) for c in h.api.calls] == [3, 3]
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", p): 1 for p in phones(6)})


def test_different_content_is_never_merged() -> None:
    h = Harness()

    h.run(
        msg("m1", body(users=["u1"])),
        msg("m2", body(users=["u1"], message=BONUS)),
        msg("m3", body(users=["u1"], deeplink="slug://orders")),
    )

    assert len(h.api.calls) == 3
    assert [c.payload.get("deeplink") for c in h.api.calls] == [None, None, "slug://orders"]


def test_extensions_never_reach_imshop() -> None:
    h = Harness()

    h.run(msg("m1", body(users=["u1"], key="order-1", expires_at=T0 + 3600)))

    assert h.api.calls[0].payload == {"userIds": ["u1"], "message": SHIPPED}


# --- poison ---------------------------------------------------------------------------------------------


def test_poison_goes_to_the_dlq_with_its_reason_and_the_rest_of_the_batch_is_sent() -> None:
    h = Harness()
    poison_body = json.dumps({"userIds": ["79990000001"], "message": {"title": "t"}})

    results = h.run(msg("bad", poison_body, source="crm"), msg("good", body(users=["79990000002"])))

    assert results == {"bad": Disposition.DEAD_LETTERED, "good": Disposition.DELIVERED}
    [poison] = h.dlq.received
    assert poison.message.message_id == "bad"
    assert poison.message.body == poison_body
    assert poison.message.message_attributes == {"source": {"dataType": "String", "stringValue": "crm"}}
    assert poison.reason == "message.summary: is a required property"
    assert [c.recipients for c in h.api.calls] == [[("userIds", "79990000002")]]
    assert h.metrics["RequestsInvalid"] == 1
    assert h.metrics["DeadLettered"] == 1


def test_a_batch_of_only_poison_makes_no_call() -> None:
    h = Harness()

    results = h.run(msg("a", "not json"), msg("b", "[]"), msg("c", json.dumps({"userId": ["1"], "message": SHIPPED})))

    assert set(results.values()) == {Disposition.DEAD_LETTERED}
    assert h.api.calls == []
    assert [p.reason.split(":")[0] for p in h.dlq.received] == ["body", "body", "userId"]


def test_a_failed_dlq_write_sends_that_record_back_to_sqs() -> None:
    h = Harness()
    h.dlq.fail_ids = {"bad-2"}

    results = h.results(msg("bad-1", "not json"), msg("bad-2", "{}"), msg("good", body(users=["u1"])))

    assert results["bad-1"].disposition is Disposition.DEAD_LETTERED
    assert results["bad-2"].disposition is Disposition.RETRY
    assert results["good"].disposition is Disposition.DELIVERED


def test_without_a_dlq_poison_is_dropped_not_retried() -> None:
    h = Harness(dead_letters=False)

    results = h.run(msg("bad", "not json"), msg("good", body(users=["u1"])))

    assert results == {"bad": Disposition.DEAD_LETTERED, "good": Disposition.DELIVERED}


def test_imshop_400_is_dead_lettered_with_imshops_message_and_not_retried() -> None:
    h = Harness()
    vendor = 'IMSHOP answered 400: Bad Request: child "userIds" fails because ["userIds" must be an array]'
    h.api.script = [CallOutcome(CallResult.REJECTED, vendor, 400)]

    results = h.results(msg("m1", body(users=["u1"])))

    assert results["m1"].disposition is Disposition.DEAD_LETTERED
    assert 'child "userIds" fails' in results["m1"].reason
    [poison] = h.dlq.received
    assert poison.message.message_id == "m1"
    assert 'child "userIds" fails' in poison.reason
    assert len(h.api.calls) == 1
    assert h.metrics["ImshopCallsRejected"] == 1


def test_a_400_on_a_merged_call_is_tried_request_by_request_and_only_the_refused_one_is_poison() -> None:
    h = Harness()

    def imshop(payload: dict[str, Any]) -> CallOutcome:
        if "bad-id" in payload.get("userIds", []):
            return CallOutcome(CallResult.REJECTED, "IMSHOP answered 400: Bad Request", 400)
        return SENT

    h.api.answer = imshop
    results = h.run(
        msg("m1", body(users=["u1", "shared"])),
        msg("m2", body(users=["bad-id", "shared"])),
        msg("m3", body(users=["u3", "shared"])),
        msg("other", body(users=["u4"], message=BONUS)),
    )

    assert results == {
        "m1": Disposition.DELIVERED,
        "m2": Disposition.DEAD_LETTERED,
        "m3": Disposition.DELIVERED,
        "other": Disposition.DELIVERED,
    }
    assert [p.message.message_id for p in h.dlq.received] == ["m2"]
    assert "400" in h.dlq.received[0].reason
    delivered = h.api.delivered()
    accepted = Counter(
        (c.payload["message"]["title"], f, r)
        for c in h.api.calls
        if "bad-id" not in c.payload.get("userIds", [])
        for f, r in c.recipients
    )
    assert accepted[(SHIPPED["title"], "userIds", "shared")] == 1, "a shared recipient is sent once, not per request"
    assert accepted[(SHIPPED["title"], "userIds", "u1")] == 1
    assert accepted[(SHIPPED["title"], "userIds", "u3")] == 1
    assert delivered[(SHIPPED["title"], "userIds", "bad-id")] == 2, "the merged call and the isolated one"


def test_a_400_on_a_single_request_call_dead_letters_it_with_imshops_message() -> None:
    h = Harness()
    h.api.script = [CallOutcome(CallResult.REJECTED, 'IMSHOP answered 400: Bad Request: child "userIds" fails', 400)]

    results = h.run(msg("m1", body(users=["u1"])))

    assert results == {"m1": Disposition.DEAD_LETTERED}
    assert h.dlq.received[0].reason == 'IMSHOP answered 400: Bad Request: child "userIds" fails'


# --- idempotency keys -----------------------------------------------------------------------------------


def test_the_same_key_twice_in_a_batch_with_the_same_content_is_sent_once() -> None:
    h = Harness()

    results = h.run(msg("m1", body(users=["u1"], key="order-1")), msg("m2", body(users=["u1"], key="order-1")))

    assert results == {"m1": Disposition.DELIVERED, "m2": Disposition.DUPLICATE}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", "u1"): 1})
    assert h.metrics["DuplicatesSkipped"] == 1


def test_the_same_key_twice_in_a_batch_with_different_content_is_poison() -> None:
    h = Harness()

    results = h.results(msg("m1", body(users=["u1"], key="order-1")), msg("m2", body(users=["u2"], key="order-1")))

    assert results["m1"].disposition is Disposition.DELIVERED
    assert results["m2"].disposition is Disposition.DEAD_LETTERED
    assert "key reused" in results["m2"].reason
    [poison] = h.dlq.received
    assert poison.message.message_id == "m2"
    assert poison.reason.startswith("idempotencyKey:")
    assert "key reused" in poison.reason
    assert h.api.calls[0].recipients == [("userIds", "u1")]


def test_a_redelivered_delivered_request_is_a_duplicate_and_makes_no_call() -> None:
    h = Harness()
    message = msg("m1", body(users=["u1", "u2"]))
    assert h.run(message) == {"m1": Disposition.DELIVERED}
    h.clock.now += 3600

    assert h.run(message) == {"m1": Disposition.DUPLICATE}
    assert len(h.api.calls) == 1
    assert h.metrics["DuplicatesSkipped"] == 1


def test_the_same_key_in_a_later_batch_is_a_duplicate_even_under_a_new_sqs_id() -> None:
    h = Harness()
    h.run(msg("m1", body(users=["u1"], key="order-1")))

    assert h.run(msg("m2", body(users=["u1"], key="order-1"))) == {"m2": Disposition.DUPLICATE}
    assert len(h.api.calls) == 1


def test_the_same_key_in_a_later_batch_with_other_content_is_poison() -> None:
    h = Harness()
    h.run(msg("m1", body(users=["u1"], key="order-1")))

    results = h.results(msg("m2", body(users=["u1"], key="order-1", message=BONUS)))

    assert results["m2"].disposition is Disposition.DEAD_LETTERED
    assert "key reused" in results["m2"].reason
    assert len(h.api.calls) == 1


def test_the_same_content_under_another_key_in_a_later_batch_is_another_notification() -> None:
    h = Harness()
    h.run(msg("m1", body(users=["u1"], key="order-1")))

    assert h.run(msg("m2", body(users=["u1"], key="order-2"))) == {"m2": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", "u1"): 2})


# --- exactly once across failures -----------------------------------------------------------------------


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
    # (SPEC 4.4), and the AmbiguousRedeliveries metric must stay the rare, alarming signal it is meant to be.
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
    # "across batches, two requests are two notifications unless they share an idempotency key" (SPEC 4.3).
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


# --- the rate limit -------------------------------------------------------------------------------------


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
    # when Lambda kills the execution: the dispatcher must defer the rest instead (SPEC 4.7).
    h = Harness(limit=10, max_recipients=1)
    h.api.duration = 20.0

    results = h.run(msg("m1", body(users=phones(3))), seconds=45)

    deadline = h.deadlines[-1]
    assert all(c.at <= deadline.last_call_start for c in h.api.calls), [c.at - T0 for c in h.api.calls]
    assert h.clock() <= deadline.hard
    assert results["m1"] is Disposition.DEFERRED


# --- backlog --------------------------------------------------------------------------------------------


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
    assert by_id["raw"].key_from_message_id is True
    assert by_id["raw"].idempotency_key == "raw"
    assert by_id["raw"].message is raw  # original body and attributes travel with it
    assert by_id["keyed"].key_from_message_id is False
    assert by_id["keyed"].idempotency_key == "bonus-1"
    slot_opens = h.api.calls[0].at + 60 + 1.2 - h.clock()
    for deferral in by_id.values():
        assert slot_opens <= deferral.delay_seconds <= 900  # not back before its budget, within SQS's maximum
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


# --- expiry ---------------------------------------------------------------------------------------------


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


# --- the state store failing ----------------------------------------------------------------------------


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


class FlakyLimiter(InProcessRateLimiter):
    """The shared limiter whose store (DynamoDB) can fail on acquire or on release."""

    def __init__(self, policy: WindowPolicy) -> None:
        super().__init__(policy)
        self.fail_acquire = False
        self.fail_release = False

    def try_acquire(self, now: float) -> Permit | Denied:
        if self.fail_acquire:
            raise client_error("UpdateItem")
        return super().try_acquire(now)

    def release(self, permit: Permit, finished_at: float) -> None:
        if self.fail_release:
            raise client_error("UpdateItem")
        super().release(permit, finished_at)


def flaky_limiter(h: Harness) -> FlakyLimiter:
    assert isinstance(h.limiter, FlakyLimiter)
    return h.limiter


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


# --- metrics --------------------------------------------------------------------------------------------


def test_every_metric_is_a_declared_name_and_the_main_ones_are_emitted() -> None:
    h = Harness(limit=10, max_recipients=1)
    h.api.script = [CallOutcome(CallResult.RATE_LIMITED, "429", 429, 1.0), SENT, AMBIGUOUS]

    h.run(
        msg("ok", body(users=["u1"])),
        msg("later", body(users=["u2", "u3"], message=BONUS)),
        msg("bad", "not json"),
        msg("old", body(users=["u4"], expires_at=T0 - 1)),
        msg("dup", body(users=["u1"], key="ok")),
        msg("dup2", body(users=["u1"], key="ok")),
        seconds=60,
    )

    assert set(h.metrics) <= METRIC_NAMES  # the harness also asserts this on every single emission
    for name in (
        "RequestsReceived",
        "RequestsInvalid",
        "RequestsExpired",
        "DuplicatesSkipped",
        "ImshopCallsSent",
        "ImshopCallsRateLimited",
        "RecipientsSent",
        "RateLimitWaits",
        "DeadLettered",
    ):
        assert h.metrics[name] > 0, name
    assert h.metrics["RequestsReceived"] == 6


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


def test_a_throttled_state_table_sends_records_back_instead_of_crashing_the_batch() -> None:
    h = Harness()

    def throttled(settlements: Sequence[Settlement], *, now: float) -> None:
        raise StateStoreError("DynamoDB kept returning unprocessed items (throttled)")

    h.state.settle = throttled  # type: ignore[method-assign]
    results = h.run(msg("m1", body(users=["u1"], key="m1")), msg("bad", "not json"))

    assert results == {"m1": Disposition.RETRY, "bad": Disposition.DEAD_LETTERED}


def test_a_redriven_keyless_request_resumes_where_it_stopped() -> None:
    """A raw request without idempotencyKey is keyed by its SQS message id; redriven from the DLQ it gets a new
    one. The dead letter carries the key, so the recipients IMSHOP already has are not sent again."""
    h = Harness(max_recipients=1)
    h.api.script = [SENT, CallOutcome(CallResult.REJECTED, "IMSHOP answered 400: Bad Request", 400)]
    original = msg("m1", body(users=["u1", "u2"]), producer="crm")

    assert h.run(original) == {"m1": Disposition.DEAD_LETTERED}
    entry = dead_letter_entry(h.dlq.received[0])
    assert entry["MessageBody"] == original.body, "the dead letter keeps the original body"
    assert entry["MessageAttributes"]["idempotencyKey"]["StringValue"] == "m1"
    assert entry["MessageAttributes"]["producer"]["StringValue"] == "crm"

    redriven = InboundMessage("redriven-1", entry["MessageBody"], QUEUE_ARN, 1, lambda_attributes(entry))
    assert h.run(redriven) == {"redriven-1": Disposition.DELIVERED}, "the cause was fixed, IMSHOP takes u2 now"
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u1")], [("userIds", "u2")], [("userIds", "u2")]]


def test_a_producers_retry_with_a_later_expiry_is_sent_although_the_first_copy_expired() -> None:
    h = Harness()
    expired = msg("m1", body(users=["u1"], key="reminder-1", expires_at=h.clock() - 60))
    retried = msg("m2", body(users=["u1"], key="reminder-1", expires_at=h.clock() + 3600))

    assert h.run(expired, retried) == {"m1": Disposition.EXPIRED, "m2": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", "u1"): 1})


# --- hardening: keys, copies and expiry -------------------------------------------------------------------


def test_a_keyless_request_that_reached_imshop_is_retried_as_a_keyed_copy_so_sqs_redrive_cannot_resend_it() -> None:
    """SQS's own move to the DLQ (maxReceiveCount) adds no attribute, and a redriven copy has a new message id:
    a keyless request must not go that way once IMSHOP may have part of it."""
    h = Harness(max_recipients=1)
    h.api.script = [SENT, FAILED]
    original = msg("m1", body(users=["u1", "u2"]))

    assert h.run(original) == {"m1": Disposition.REQUEUED}
    (retry,) = h.backlog.received
    copy = requeued_copy(retry, "copy-1")
    key = copy.message_attributes.get("idempotencyKey", {}).get("stringValue")
    assert parse_body(copy.body, message_id="copy-1", key_attribute=key).idempotency_key == "m1"

    h.api.script = [FAILED]
    h.clock.now += 120
    assert h.run(copy) == {"copy-1": Disposition.RETRY}, "keyed now: ordinary retries, towards the DLQ"
    # SQS dead-letters it after maxReceiveCount, keeping its attributes; a redrive gives it a new message id.
    redriven = InboundMessage("redriven-1", copy.body, QUEUE_ARN, 1, copy.message_attributes)
    h.clock.now += 120
    assert h.run(redriven) == {"redriven-1": Disposition.DELIVERED}
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u1")]] + [[("userIds", "u2")]] * 3, (
        "u1 once (confirmed); u2 failed twice, then was sent"
    )
    assert h.metrics["RetriesRequeued"] == 1


def test_a_keyless_request_whose_calls_all_failed_goes_back_to_sqs_as_usual() -> None:
    h = Harness()
    h.api.script = [FAILED]

    assert h.run(msg("m1", body(users=["u1"]))) == {"m1": Disposition.RETRY}
    assert h.backlog.received == []


@pytest.mark.parametrize(("receive_count", "expected"), [(1, Disposition.RETRY), (2, Disposition.REQUEUED)])
def test_a_keyless_redelivery_that_cannot_be_claimed_keeps_its_key_if_it_may_have_history(
    receive_count: int, expected: Disposition
) -> None:
    """An earlier receive may have sent part of it (and died): unknown history is treated as history."""
    h = Harness()
    h.state.failing = {"claim_many"}
    message = msg("m1", body(users=["u1"]))._replace(receive_count=receive_count)

    assert h.run(message) == {"m1": expected}


def test_a_failed_keyed_copy_falls_back_to_an_sqs_retry_when_it_cannot_be_written() -> None:
    h = Harness()
    h.api.script = [AMBIGUOUS]
    h.backlog.fail_ids = {"m1"}

    assert h.run(msg("m1", body(users=["u1"]))) == {"m1": Disposition.RETRY}


def test_the_same_sqs_message_twice_in_a_batch_is_not_acknowledged_when_its_call_failed() -> None:
    h = Harness()
    a = msg("a", body(users=["u1"], key="a"))
    h.api.script = [FAILED]

    assert h.results(a, a)["a"].disposition is Disposition.RETRY
    h.clock.now += 60
    assert h.run(a) == {"a": Disposition.DELIVERED}, "not a duplicate of itself: its call failed"
    assert [c.recipients for c in h.api.calls] == [[("userIds", "u1")]] * 2


def test_a_redelivery_is_not_poisoned_by_a_conflicting_message_with_its_key_earlier_in_the_batch() -> None:
    h = Harness()
    original = msg("x", body(users=["u1"], key="order-1"))
    assert h.run(original) == {"x": Disposition.DELIVERED}
    h.clock.now += 60
    impostor = msg("y", body(users=["u1"], key="order-1", message=BONUS))

    assert h.run(impostor, original) == {"y": Disposition.DEAD_LETTERED, "x": Disposition.DUPLICATE}
    assert [p.message.message_id for p in h.dlq.received] == ["y"]


def test_a_waiting_request_wins_its_key_over_a_conflicting_content_first_in_the_batch() -> None:
    h = Harness(limit=1, max_recipients=1)
    waiting = msg("x", body(users=["u1", "u2"], key="order-1"))
    assert h.run(waiting, seconds=20) == {"x": Disposition.DEFERRED}
    h.clock.now += 70
    impostor = msg("y", body(users=["u3"], key="order-1", message=BONUS))
    back = requeued_copy(h.backlog.received[0], "x-2")

    assert h.run(impostor, back) == {"y": Disposition.DEAD_LETTERED, "x-2": Disposition.DELIVERED}
    assert h.api.delivered() == Counter({(SHIPPED["title"], "userIds", u): 1 for u in ("u1", "u2")})


def test_without_state_the_first_content_in_the_batch_wins_its_key() -> None:
    h = Harness()
    first = msg("x", body(users=["u1"], key="order-1"))
    second = msg("y", body(users=["u1"], key="order-1", message=BONUS))

    assert h.run(first, second) == {"x": Disposition.DELIVERED, "y": Disposition.DEAD_LETTERED}
    assert "key reused with different content" in h.dlq.received[0].reason


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
