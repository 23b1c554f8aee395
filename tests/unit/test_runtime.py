"""Runtime: the deadline an invocation works to, measured from the moment the handler was called."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fakes import FakeBacklog, FakeDeadLetters, FakeImshopClient

from fake_clock import T0, FakeClock
from imshop_push.config import Settings
from imshop_push.dispatcher import Deadline, Dispatcher, Disposition, RecordResult
from imshop_push.factories import AwsClients
from imshop_push.inbound import InboundMessage
from imshop_push.rate_limit import PRE_CALL_ALLOWANCE_SECONDS, InProcessRateLimiter, RateLimiter, WindowPolicy
from imshop_push.runtime import Runtime
from imshop_push.state import InProcessStateStore, StateStore


class DeadlineProbe:
    """Stands in for the pipeline (same constructor): notes each deadline it is given."""

    def __init__(self, seen: list[Deadline], **collaborators: Any) -> None:
        self.seen = seen
        self.dispatcher = Dispatcher(**collaborators)

    def dispatch(self, messages: Sequence[InboundMessage], *, deadline: Deadline) -> dict[str, RecordResult]:
        self.seen.append(deadline)
        self.dispatcher.dispatch([], deadline=deadline)
        return {m.message_id: RecordResult(Disposition.DELIVERED) for m in messages}


def test_setup_time_of_a_cold_start_comes_out_of_the_invocations_budget() -> None:
    clock = FakeClock()
    seen: list[Deadline] = []

    def slow_client(url: str, **timeouts: Any) -> FakeImshopClient:
        clock.now += 2.0  # SSM reads and imports on a cold start
        return FakeImshopClient(url, **timeouts)

    runtime = Runtime(
        Settings.from_env({"IMSHOP_API_URL": "https://imshop.example/push/token", "HTTP_TIMEOUT_SECONDS": "10"}),
        metric=lambda _name, _value: None,
        clock=clock,
        sleep=clock.sleep,
        api_client=slow_client,
        pipeline=lambda **collaborators: DeadlineProbe(seen, **collaborators),
    )
    runtime.handle([InboundMessage("m1", "{}")], remaining_seconds=60.0)

    (deadline,) = seen
    assert deadline.hard == T0 + 60.0, "the function times out 60 s after the handler was called, not after setup"
    assert deadline.last_call_start <= deadline.hard - 10.0 - 3.0, "room for a whole call and the settling"


def test_a_large_batch_keeps_more_time_for_settling() -> None:
    clock = FakeClock()
    seen: list[Deadline] = []
    runtime = Runtime(
        Settings.from_env({"IMSHOP_API_URL": "https://imshop.example/push/token"}),
        metric=lambda _name, _value: None,
        clock=clock,
        sleep=clock.sleep,
        pipeline=lambda **collaborators: DeadlineProbe(seen, **collaborators),
    )

    runtime.handle([InboundMessage(f"m{i}", "{}") for i in range(10)], remaining_seconds=90.0)
    runtime.handle([InboundMessage(f"m{i}", "{}") for i in range(10_000)], remaining_seconds=90.0)

    small, large = seen
    assert large.hard - large.last_call_start > small.hard - small.last_call_start + 10
    assert large.last_call_start > clock.now, "still time for calls"


def test_every_collaborator_comes_from_the_factories_it_was_given_and_aws_clients_are_made_once() -> None:
    clock = FakeClock()
    made: list[str] = []
    outbox = FakeBacklog()
    dead_letters = FakeDeadLetters()
    clients: list[FakeImshopClient] = []

    def api_client(url: str, **timeouts: Any) -> FakeImshopClient:
        clients.append(FakeImshopClient(url, **timeouts))
        return clients[-1]

    def aws_client(service: str) -> object:
        made.append(service)
        return object()

    def state(settings: Settings, aws: AwsClients) -> StateStore:
        assert settings.state_table_name == "state"
        aws("dynamodb")
        return InProcessStateStore()

    def limiter(settings: Settings, policy: WindowPolicy, aws: AwsClients) -> RateLimiter:
        aws("dynamodb")
        # The slot covers the whole call and the checks between its permit and the call.
        assert policy.worst_case_call_seconds == clients[-1].worst_case_seconds + PRE_CALL_ALLOWANCE_SECONDS
        assert policy.start_allowance_seconds == PRE_CALL_ALLOWANCE_SECONDS
        return InProcessRateLimiter(policy)

    def dead_letter_sink(sqs: Callable[[], Any], queue_url: str) -> FakeDeadLetters:
        assert queue_url == "https://sqs.example/dlq"
        sqs()
        return dead_letters

    runtime = Runtime(
        Settings.from_env(
            {
                "IMSHOP_API_URL": "https://imshop.example/push/token",
                "STATE_TABLE_NAME": "state",
                "DEAD_LETTER_QUEUE_URL": "https://sqs.example/dlq",
            }
        ),
        metric=lambda _name, _value: None,
        clock=clock,
        sleep=clock.sleep,
        api_client=api_client,
        state_store=state,
        limiter=limiter,
        dead_letter_sink=dead_letter_sink,
        backlog_sink=lambda _sqs: outbox,
        aws_client=aws_client,
    )
    body = '{"userIds": ["u1"], "message": {"title": "t", "summary": "s"}}'

    results = runtime.handle([InboundMessage("m1", body), InboundMessage("bad", "{")], remaining_seconds=60.0)

    assert {mid: r.disposition for mid, r in results.items()} == {
        "m1": Disposition.DELIVERED,
        "bad": Disposition.DEAD_LETTERED,
    }
    [client] = clients
    assert [p["userIds"] for p in client.payloads] == [["u1"]]
    assert [p.message.message_id for p in dead_letters.received] == ["bad"]
    assert sorted(made) == ["dynamodb", "sqs"], "one client per service, shared by the stores"
