"""Runtime: the deadline an invocation works to, measured from the moment the handler was called."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from fakes import FakeBacklog, FakeDeadLetters, FakeImshopClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_clock import T0, FakeClock
from imshop_push.dispatch.dispatcher import Deadline, Dispatcher, Disposition, RecordResult
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import FINISH_RESERVE_FRACTION, FINISH_RESERVE_SECONDS
from imshop_push.domain.rate_limit import PRE_CALL_ALLOWANCE_SECONDS, InProcessRateLimiter, RateLimiter, WindowPolicy
from imshop_push.domain.state import InProcessStateStore, StateStore
from imshop_push.entrypoints.config import Settings
from imshop_push.entrypoints.factories import AwsClients
from imshop_push.entrypoints.runtime import Runtime


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


# --- the warning about missing dead-letter queues ------------------------------------------------------------

TRANSACTIONAL_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-requests"
BULK_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-bulk"


def dead_letters_and_warnings(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> tuple[dict[str, list[str]], str]:
    sinks: dict[str, FakeDeadLetters] = {}

    def dead_letter_sink(_sqs: Callable[[], Any], queue_url: str) -> FakeDeadLetters:
        return sinks.setdefault(queue_url, FakeDeadLetters())

    settings = Settings.from_env(
        {"IMSHOP_API_URL": "https://imshop.example/push/token", "BULK_QUEUE_ARN": BULK_ARN, **env}
    )
    with caplog.at_level(logging.WARNING, logger="imshop_push.entrypoints.runtime"):
        runtime = Runtime(
            settings,
            metric=lambda _name, _value: None,
            api_client=FakeImshopClient,
            dead_letter_sink=dead_letter_sink,
            backlog_sink=lambda _sqs: FakeBacklog(),
            aws_client=lambda _service: object(),
        )
    runtime.handle(
        [InboundMessage("t-bad", "{", TRANSACTIONAL_ARN), InboundMessage("b-bad", "{", BULK_ARN)], remaining_seconds=60
    )
    warnings = " ".join(r.getMessage() for r in caplog.records if "DEAD_LETTER_QUEUE_URL" in r.getMessage())
    return {url: sorted(p.message.message_id for p in sink.received) for url, sink in sinks.items()}, warnings


def test_with_only_the_bulk_dlq_the_warning_says_where_transactional_poison_goes_and_none_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bulk_dlq = "https://sqs.example/bulk-dlq"

    dead_letters, warning = dead_letters_and_warnings({"BULK_DEAD_LETTER_QUEUE_URL": bulk_dlq}, caplog)

    assert dead_letters == {bulk_dlq: ["b-bad", "t-bad"]}, "both lanes' poison is kept, in the one DLQ there is"
    assert "dropped" not in warning
    assert "transactional" in warning
    assert "BULK_DEAD_LETTER_QUEUE_URL" in warning


def test_without_any_dlq_the_warning_says_poison_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    dead_letters, warning = dead_letters_and_warnings({}, caplog)

    assert dead_letters == {}
    assert "dropped" in warning


@pytest.mark.parametrize(
    "env",
    [
        {"DEAD_LETTER_QUEUE_URL": "https://sqs.example/dlq"},
        {"DEAD_LETTER_QUEUE_URL": "https://sqs.example/dlq", "BULK_DEAD_LETTER_QUEUE_URL": "https://sqs.example/b"},
    ],
)
def test_with_the_transactional_dlq_nothing_is_warned(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    dead_letters, warning = dead_letters_and_warnings(env, caplog)

    assert sum(len(ids) for ids in dead_letters.values()) == 2
    assert warning == ""


# --- an HTTP timeout the function's timeout cannot hold -------------------------------------------------------


class TimedClient(FakeImshopClient):
    """The fake IMSHOP client, budgeted as the real one is: a call takes at most HTTP_TIMEOUT_SECONDS."""

    def __init__(self, url: str, *, api_key: str | None, connect_timeout_seconds: float, read_timeout_seconds: float):
        super().__init__(
            url,
            api_key=api_key,
            connect_timeout_seconds=connect_timeout_seconds,
            read_timeout_seconds=read_timeout_seconds,
        )
        self.worst_case_seconds = read_timeout_seconds


def run_with_timeouts(
    http_timeout: float, function_timeout: float, caplog: pytest.LogCaptureFixture
) -> tuple[dict[str, Disposition], FakeBacklog, list[FakeImshopClient], str]:
    FakeImshopClient.instances = []
    backlog = FakeBacklog()
    dead_letters = FakeDeadLetters()
    clock = FakeClock()
    runtime = Runtime(
        Settings.from_env(
            {
                "IMSHOP_API_URL": "https://imshop.example/push/token",
                "HTTP_TIMEOUT_SECONDS": f"{http_timeout}",
                "HTTP_CONNECT_TIMEOUT_SECONDS": f"{min(http_timeout, 3.0)}",
                "DEAD_LETTER_QUEUE_URL": "https://sqs.example/dlq",
            }
        ),
        metric=lambda _name, _value: None,
        clock=clock,
        sleep=clock.sleep,
        api_client=TimedClient,
        dead_letter_sink=lambda _sqs, _url: dead_letters,
        backlog_sink=lambda _sqs: backlog,
    )
    body = '{"userIds": ["u1"], "message": {"title": "t", "summary": "s"}}'
    with caplog.at_level(logging.ERROR, logger="imshop_push.entrypoints.runtime"):
        results = runtime.handle(
            [InboundMessage("m1", body), InboundMessage("bad", "{")], remaining_seconds=function_timeout
        )
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    caplog.clear()
    clients = FakeImshopClient.instances
    FakeImshopClient.instances = []
    return {mid: r.disposition for mid, r in results.items()}, backlog, clients, errors


@pytest.mark.parametrize(("http_timeout", "function_timeout"), [(10, 10), (10, 9), (90, 90), (12, 15), (1, 1.2)])
def test_an_http_timeout_that_leaves_no_call_room_in_the_function_timeout_is_a_configuration_error(
    http_timeout: float, function_timeout: float, caplog: pytest.LogCaptureFixture
) -> None:
    results, backlog, clients, errors = run_with_timeouts(http_timeout, function_timeout, caplog)

    assert results == {"m1": Disposition.RETRY, "bad": Disposition.RETRY}, "the whole batch goes back, as for any"
    assert backlog.received == [], "nothing is deferred: a copy would be as stuck as its original"
    assert [c.payloads for c in clients] == [[]]
    assert "HTTP_TIMEOUT_SECONDS" in errors
    assert "Timeout" in errors.replace("HTTP_TIMEOUT_SECONDS", "")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    function_timeout=st.floats(0.5, 900, allow_nan=False),
    share=st.floats(0.001, 2.0, allow_nan=False),
)
def test_a_call_is_refused_exactly_when_it_and_the_settling_cannot_fit_the_function_timeout(
    function_timeout: float, share: float, caplog: pytest.LogCaptureFixture
) -> None:
    http_timeout = round(function_timeout * share, 3)
    results, _, clients, errors = run_with_timeouts(http_timeout, function_timeout, caplog)

    settling = min(FINISH_RESERVE_SECONDS, function_timeout * FINISH_RESERVE_FRACTION)
    refused = results["bad"] is Disposition.RETRY
    assert refused == (function_timeout - settling - http_timeout <= 0)
    if http_timeout >= function_timeout:
        assert refused, "at or above the function timeout: never a call"
    if refused:
        assert "HTTP_TIMEOUT_SECONDS" in errors
    else:
        assert results == {"m1": Disposition.DELIVERED, "bad": Disposition.DEAD_LETTERED}
        assert [len(c.payloads) for c in clients] == [1]
