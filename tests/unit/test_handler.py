"""The Lambda entry point with a realistic SQS event: partial batch responses, configuration errors, and what
reaches the logs (docs/contract.md#partial-batch-response, #secrets-and-personal-data, #observability).

The handler builds its Runtime from the environment on its first invocation, as in Lambda; the Runtime is given
in-process fakes of the IMSHOP client and the SQS writers, so nothing leaves the process.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext
from fakes import FakeBacklog, FakeDeadLetters, FakeImshopClient
from hypothesis import given, settings
from hypothesis import strategies as st

import app
from imshop_push.domain.model import Deferral, Poison
from imshop_push.entrypoints.config import ParameterUnreadableError, Settings
from imshop_push.entrypoints.runtime import Runtime

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

API_KEY = "imshop-live-key-5d41402abc4b2a76"
URL_TOKEN = "c9f0f895fb98ab9159f51fd0297e236d"
API_URL = f"https://push.imshop.example/api/v1/integration/{URL_TOKEN}/push"
DLQ_URL = "https://sqs.eu-central-1.amazonaws.com/123456789012/imshop-push-dlq"
QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:imshop-push-requests"
PHONE = "79161234567"
OTHER_PHONE = "79267654321"

ENV_VARS = (
    "IMSHOP_API_URL",
    "IMSHOP_API_URL_PARAMETER",
    "IMSHOP_API_KEY",
    "IMSHOP_API_KEY_PARAMETER",
    "STATE_TABLE_NAME",
    "DEAD_LETTER_QUEUE_URL",
    "RATE_LIMIT_REQUESTS",
    "RATE_LIMIT_WINDOW_SECONDS",
    "RATE_LIMIT_MARGIN_SECONDS",
    "MAX_RECIPIENTS_PER_REQUEST",
    "HTTP_TIMEOUT_SECONDS",
    "HTTP_CONNECT_TIMEOUT_SECONDS",
)


# --- fakes ----------------------------------------------------------------------------------------------


@dataclass
class Outbox:
    """What the fake SQS writers received, and which message ids they are told to refuse."""

    dead_letters: list[Poison] = field(default_factory=list)
    requeued: list[Deferral] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    parameters: dict[str, str] = field(default_factory=dict)  # SSM SecureStrings by name, as stored
    parameter_reads: list[str] = field(default_factory=list)

    def parameter(self, name: str) -> str:
        """`config.read_secure_string` over `parameters`: what it returns for the value SSM holds."""
        self.parameter_reads.append(name)
        if name not in self.parameters:
            raise ParameterUnreadableError("ParameterNotFound")
        return self.parameters[name].strip()

    def dead_letter_queue(self, client: Callable[[], Any], queue_url: str) -> FakeDeadLetters:
        assert queue_url == DLQ_URL
        sink = FakeDeadLetters(self.dead_letters)
        sink.fail_ids = self.refuse
        return sink

    def source_queue(self, client: Callable[[], Any]) -> FakeBacklog:
        sink = FakeBacklog(self.requeued)
        sink.fail_ids = self.refuse
        return sink


class ExecutionEnvironment:
    """One Lambda execution environment: the handler, and the Runtime it builds from the environment on its first
    invocation (as `app.runtime` does), wired to in-process fakes of IMSHOP and the SQS writers."""

    current: ExecutionEnvironment | None = None

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.handler = app.make_handler(self.runtime)
        self._runtime: Runtime | None = None
        self.runtimes_built = 0

    def runtime(self) -> Runtime:
        if self._runtime is None:
            self._runtime = Runtime(
                Settings.from_env(),
                metric=app.count,
                api_client=FakeImshopClient,
                dead_letter_sink=self.outbox.dead_letter_queue,
                backlog_sink=self.outbox.source_queue,
                parameter=self.outbox.parameter,
            )
            self.runtimes_built += 1
        return self._runtime

    def restart(self) -> None:
        """A new execution environment: the next invocation reads the environment again."""
        self._runtime = None


@dataclass
class FakeContext:
    function_name: str = "imshop-push-SendNotifications"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:imshop-push-SendNotifications"
    memory_limit_in_mb: int = 256
    aws_request_id: str = "6f1b0c5e-3f3a-4b8e-9a64-1f7f0c2d9b11"
    log_group_name: str = "/aws/lambda/imshop-push-SendNotifications"
    log_stream_name: str = "2026/11/26/[$LATEST]0123456789abcdef"
    remaining_ms: int = 90_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def record(message_id: str, body: str, **attributes: str) -> dict[str, Any]:
    """One record as Lambda's SQS event source delivers it."""
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}==",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764186000000",
            "SenderId": "AROAEXAMPLE:order-service",
            "ApproximateFirstReceiveTimestamp": "1764186000123",
        },
        "messageAttributes": {
            name: {"stringValue": value, "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            for name, value in attributes.items()
        },
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "eu-central-1",
    }


def request(title: str, *users: str, **extra: Any) -> str:
    return json.dumps(
        {"userIds": list(users), "message": {"title": title, "summary": "Подробности в приложении"}, **extra}
    )


def invoke(*records: dict[str, Any], context: FakeContext | None = None) -> dict[str, Any]:
    environment = ExecutionEnvironment.current
    assert environment is not None, "use the outbox fixture"
    response: dict[str, Any] = environment.handler(
        {"Records": list(records)}, cast(LambdaContext, context or FakeContext())
    )
    assert set(response) == {"batchItemFailures"}
    return response


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    """A fresh execution environment: env as deployed (minus SSM and DynamoDB), fakes for the I/O."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMSHOP_API_URL", API_URL)
    monkeypatch.setenv("IMSHOP_API_KEY", API_KEY)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", DLQ_URL)
    monkeypatch.setattr(app.metrics.provider, "namespace", "ImshopPushTest")
    box = Outbox()
    ExecutionEnvironment.current = ExecutionEnvironment(box)
    FakeImshopClient.instances = []
    yield box
    FakeImshopClient.instances = []
    ExecutionEnvironment.current = None


def sent_payloads() -> list[dict[str, Any]]:
    return [p for client in FakeImshopClient.instances for p in client.payloads]


class CurrentStdout:
    """Writes to whatever `sys.stdout` is at the moment of writing (capsys swaps it in for the test call)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every stdout line of the invocation, parsed. The log handler bound the stdout of import time, so it
    writes through `CurrentStdout` for the test; levels go to DEBUG, to see everything that could leak."""
    loggers = [logging.getLogger(app.logger.name), logging.getLogger("imshop_push")]
    handlers = [h for h in app.logger.handlers if isinstance(h, logging.StreamHandler)]  # shared by both loggers
    assert handlers, "the handler's logger has no stream handler"
    streams = {h: h.stream for h in handlers}
    for h in handlers:
        h.stream = CurrentStdout()
    levels = {lg: lg.level for lg in loggers}
    for lg in loggers:
        lg.setLevel(logging.DEBUG)

    def read() -> list[dict[str, Any]]:
        lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON log line: {line!r}")
        return parsed

    yield read
    for h, stream in streams.items():
        h.stream = stream
    for lg, level in levels.items():
        lg.setLevel(level)


# --- partial batch response -----------------------------------------------------------------------------


def test_partial_batch_response_names_exactly_the_failed_records(outbox: Outbox) -> None:
    outbox.refuse = {"poison-dlq-down"}

    response = invoke(
        record("sent", request("Заказ отправлен", PHONE)),
        record("transient", request("FAIL", OTHER_PHONE)),
        record("poison", "not json"),
        record("poison-dlq-down", json.dumps({"userId": [PHONE], "message": {"title": "t", "summary": "s"}})),
        record("rejected", request("REJECT", "79035550000")),
        record("expired", request("Поздно", PHONE, expiresAt="2020-01-01T00:00:00Z")),
    )

    assert sorted(failures(response)) == ["poison-dlq-down", "transient"]
    assert len(failures(response)) == len(set(failures(response)))
    assert sorted(p.message.message_id for p in outbox.dead_letters) == ["poison", "rejected"]


def test_the_handler_wires_url_key_and_dead_letters_from_the_environment(outbox: Outbox) -> None:
    response = invoke(
        record("m1", request("Заказ отправлен", PHONE), source="orders"),
        record("m2", json.dumps({"userIds": [PHONE], "message": {"title": "t"}}), source="crm"),
    )

    assert failures(response) == []
    [client] = FakeImshopClient.instances
    assert client.url == API_URL
    assert client.api_key == API_KEY
    assert client.payloads == [
        {"userIds": [PHONE], "message": {"title": "Заказ отправлен", "summary": "Подробности в приложении"}}
    ]
    [poison] = outbox.dead_letters
    assert poison.reason == "message.summary: is a required property"
    assert poison.message.message_attributes["source"]["stringValue"] == "crm"
    assert poison.message.event_source_arn == QUEUE_ARN


def test_envelopes_from_eventbridge_and_sns_are_merged_with_raw_requests(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full call goes at once; a partial one of a text more than one request carries would wait to fill.
    monkeypatch.setenv("MAX_RECIPIENTS_PER_REQUEST", "2")
    detail = {"userIds": [OTHER_PHONE], "message": {"title": "Бонусы", "summary": "Сгорают завтра"}}
    eventbridge = {
        "version": "0",
        "id": "9a1b2c3d-0000-4000-8000-000000000001",
        "detail-type": "Bonus reminder",
        "source": "retailer.crm",
        "account": "123456789012",
        "time": "2026-11-26T09:00:00Z",
        "region": "eu-central-1",
        "resources": [],
        "detail": detail,
    }
    sns = {
        "Type": "Notification",
        "MessageId": "2d6f5c0e-0000-4000-8000-000000000002",
        "TopicArn": "arn:aws:sns:eu-central-1:123456789012:bonus",
        "Message": json.dumps({**detail, "userIds": [PHONE]}),
        "Timestamp": "2026-11-26T09:00:00.000Z",
    }

    response = invoke(record("eb", json.dumps(eventbridge)), record("sns", json.dumps(sns)))

    assert failures(response) == []
    assert sent_payloads() == [{"userIds": [OTHER_PHONE, PHONE], "message": detail["message"]}]


def test_a_batch_in_which_every_record_fails_transiently_lists_them_all_without_raising(outbox: Outbox) -> None:
    ids = [f"m{i}" for i in range(5)]

    response = invoke(*[record(mid, request(f"FAIL {mid}", f"7916000000{i}")) for i, mid in enumerate(ids)])

    assert sorted(failures(response)) == ids


def test_a_bad_variable_sends_the_whole_batch_back_and_logs_an_error_naming_it(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    monkeypatch.setenv("RATE_LIMIT_REQUESTS", "abc")

    response = invoke(record("m1", request("Заказ", PHONE)), record("m2", "not json"))

    assert sorted(failures(response)) == ["m1", "m2"]
    assert FakeImshopClient.instances == []
    assert outbox.dead_letters == []  # nothing is decided while the configuration is broken
    errors = [line for line in logs() if line.get("level") == "ERROR"]
    assert errors
    assert any("RATE_LIMIT_REQUESTS" in json.dumps(line, ensure_ascii=False) for line in errors)


def test_a_fixed_variable_takes_effect_on_the_next_invocation(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATE_LIMIT_REQUESTS", "abc")
    assert failures(invoke(record("m1", request("Заказ", PHONE)))) == ["m1"]
    monkeypatch.setenv("RATE_LIMIT_REQUESTS", "10")

    assert failures(invoke(record("m1", request("Заказ", PHONE)))) == []
    assert len(sent_payloads()) == 1


def test_no_url_at_all_is_a_retry_not_a_crash(outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMSHOP_API_URL")

    assert failures(invoke(record("m1", request("Заказ", PHONE)))) == ["m1"]


# --- logs -----------------------------------------------------------------------------------------------


def test_logs_are_json_and_name_the_message_id_of_a_poison_record(
    outbox: Outbox, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    invoke(record("ok", request("Заказ", PHONE)), record("poison-1", "{"))

    lines = logs()
    poison_lines = [line for line in lines if line.get("message_id") == "poison-1"]
    assert poison_lines
    assert poison_lines[0]["level"] == "WARNING"
    assert "body: is not valid JSON" in poison_lines[0]["reason"]
    assert any(line.get("function_request_id") == FakeContext.aws_request_id for line in lines)


def test_every_record_has_a_log_line_carrying_its_message_id(
    outbox: Outbox, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    # The SQS message id is the correlation id (docs/contract.md#observability). An operator looking up a failed
    # or delivered record must find it in the logs.
    ids = ["delivered-1", "failed-1", "poison-1"]

    invoke(
        record("delivered-1", request("Заказ", PHONE)),
        record("failed-1", request("FAIL", OTHER_PHONE)),
        record("poison-1", "[]"),
    )

    lines = logs()
    for mid in ids:
        assert any(mid in (line.get("correlation_id"), line.get("message_id")) for line in lines), mid
    retried = [line for line in lines if line.get("correlation_id") == "failed-1" and line["level"] == "WARNING"]
    assert retried, "a record sent back to SQS is logged at WARNING with its message id"


def test_logs_never_contain_the_key_the_url_token_or_a_full_phone_number(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, logs: Callable[[], list[dict[str, Any]]]
) -> None:
    phones = [f"7916{n:07d}" for n in range(12)]
    invoke(
        record("sent", request("Заказ отправлен", *phones[:3])),
        record("transient", request("FAIL", *phones[3:6])),
        record("rejected", request("REJECT", phones[6])),
        record("expired", request("Поздно", phones[7], expiresAt="2020-01-01T00:00:00Z")),
        record("wrong-type", json.dumps({"userIds": [int(phones[8])], "message": {"title": "t", "summary": "s"}})),
        record("sns-bad", json.dumps({"Type": "Notification", "MessageId": "x", "Message": f"userIds={phones[9]}"})),
        record("bad-json", f'{{"userIds": ["{phones[10]}"], '),
    )
    # ...and a misconfigured stack whose URL is plain http
    assert ExecutionEnvironment.current is not None
    ExecutionEnvironment.current.restart()
    monkeypatch.setenv("IMSHOP_API_URL", API_URL.replace("https://", "http://"))
    invoke(record("after", request("Заказ", phones[11])))

    assert set(phones[:7]) <= {u for p in sent_payloads() for u in p.get("userIds", [])}  # they were in play
    text = json.dumps(logs(), ensure_ascii=False)
    assert API_KEY not in text
    assert URL_TOKEN not in text
    assert "push.imshop.example" not in text
    for phone in phones:
        assert phone not in text, phone


def test_transport_libraries_stay_quiet_whatever_the_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib3 logs request paths at DEBUG (the URL's path is its secret token), botocore logs responses (SSM's
    carry the decrypted URL and key): with Lambda's application log level at DEBUG they must still say nothing."""
    monkeypatch.setattr(logging.getLogger(), "level", logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "botocore", "botocore.parsers", "botocore.endpoint"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_without_created_at_the_records_sent_timestamp_decides_which_status_is_the_latest(outbox: Outbox) -> None:
    older = record("older", request("Заказ оплачен", PHONE, collapseKey="order-1042-status"))
    newer = record("newer", request("Заказ отправлен", PHONE, collapseKey="order-1042-status"))
    newer["attributes"] = {**newer["attributes"], "SentTimestamp": "1764186000500"}

    assert failures(invoke(newer, older)) == []

    assert [p["message"]["title"] for p in sent_payloads()] == ["Заказ отправлен"]


# --- keys that no header can carry (docs/contract.md#secrets-and-personal-data) ------------------------------

KEY_PARAMETER = "/imshop-push/api-key"


def test_a_key_parameter_stored_with_a_final_newline_is_sent_without_it(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IMSHOP_API_KEY")
    monkeypatch.setenv("IMSHOP_API_KEY_PARAMETER", KEY_PARAMETER)
    outbox.parameters[KEY_PARAMETER] = API_KEY + "\n"  # aws ssm put-parameter --value file://key.txt

    assert failures(invoke(record("m1", request("Заказ", PHONE)))) == []
    [client] = FakeImshopClient.instances
    assert client.api_key == API_KEY


@pytest.mark.parametrize("inner", ["\n", "\r\n", "\x01", "\x1b[2J", " ", "\x7f", "ё"])
@pytest.mark.parametrize("where", ["IMSHOP_API_KEY", "IMSHOP_API_KEY_PARAMETER"])
def test_a_key_no_header_can_carry_sends_the_batch_back_naming_where_it_came_from_never_the_key(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, logs: Callable[[], list[dict[str, Any]]], inner: str, where: str
) -> None:
    head, tail = API_KEY[:12], API_KEY[12:]
    if where == "IMSHOP_API_KEY":
        monkeypatch.setenv("IMSHOP_API_KEY", head + inner + tail)
    else:
        monkeypatch.delenv("IMSHOP_API_KEY")
        monkeypatch.setenv("IMSHOP_API_KEY_PARAMETER", KEY_PARAMETER)
        outbox.parameters[KEY_PARAMETER] = head + inner + tail

    response = invoke(record("m1", request("Заказ", PHONE)), record("m2", "not json"))

    assert sorted(failures(response)) == ["m1", "m2"]
    assert sent_payloads() == []
    assert outbox.dead_letters == []
    lines = logs()
    errors = json.dumps([line for line in lines if line["level"] == "ERROR"], ensure_ascii=False)
    assert where in errors
    text = json.dumps(lines, ensure_ascii=False)
    assert head not in text
    assert tail not in text


# --- events that are not SQS batches ----------------------------------------------------------------------

SNS_TRIGGER_EVENT = {  # what Lambda's own SNS trigger hands a function
    "Records": [
        {
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:eu-central-1:123456789012:bonus:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
            "Sns": {
                "Type": "Notification",
                "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                "TopicArn": "arn:aws:sns:eu-central-1:123456789012:bonus",
                "Message": request("Бонусы сгорают", PHONE),
                "Timestamp": "2026-11-26T09:00:00.000Z",
            },
        }
    ]
}


def foreign_events() -> list[Any]:
    events = Path(__file__).parent / "aws_events"
    return [
        json.loads((events / "eventbridge_scheduled_event.json").read_text()),
        json.loads((events / "eventbridge_ec2_state_change.json").read_text()),
        json.loads((events / "s3_object_created.json").read_text()),  # an S3 trigger's event, as is
        SNS_TRIGGER_EVENT,
        {"Records": [record("m1", request("Заказ", PHONE)), SNS_TRIGGER_EVENT["Records"][0]]},
        {"Records": [{k: v for k, v in record("m1", request("Заказ", PHONE)).items() if k != "messageId"}]},
        {"Records": [{k: v for k, v in record("m1", request("Заказ", PHONE)).items() if k != "eventSource"}]},
        {"Records": [request("Заказ", PHONE)]},
        {"Records": {"messageId": "m1"}},
        {"body": request("Заказ", PHONE)},
        {},
        [record("m1", request("Заказ", PHONE))],
        request("Заказ", PHONE),
        None,
    ]


class SetUpReachedError(Exception):
    """The handler asked for its Runtime (configuration, secrets, clients)."""


def handler_without_set_up() -> app.Handler:
    def no_runtime() -> Runtime:
        raise SetUpReachedError

    return app.make_handler(no_runtime)


def test_an_empty_batch_answers_no_failures_without_any_set_up(outbox: Outbox) -> None:
    assert ExecutionEnvironment.current is not None

    response = ExecutionEnvironment.current.handler({"Records": []}, cast(LambdaContext, FakeContext()))

    assert response == {"batchItemFailures": []}
    assert ExecutionEnvironment.current.runtimes_built == 0
    assert outbox.parameter_reads == []


@pytest.mark.parametrize("event", foreign_events(), ids=lambda e: type(e).__name__)
def test_an_event_that_is_not_an_sqs_batch_is_refused_with_one_error_before_any_set_up(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, event: Any
) -> None:
    monkeypatch.delenv("IMSHOP_API_KEY")
    monkeypatch.setenv("IMSHOP_API_KEY_PARAMETER", KEY_PARAMETER)
    outbox.parameters[KEY_PARAMETER] = API_KEY
    assert ExecutionEnvironment.current is not None

    with pytest.raises(app.NotAnSqsBatchError) as caught:
        ExecutionEnvironment.current.handler(event, cast(LambdaContext, FakeContext()))

    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("not an SQS batch: ")
    assert ExecutionEnvironment.current.runtimes_built == 0
    assert outbox.parameter_reads == []
    assert PHONE not in str(caught.value)
    assert "Заказ" not in str(caught.value)


def test_the_refusal_names_what_came() -> None:
    def refusal(event: Any) -> str:
        with pytest.raises(app.NotAnSqsBatchError) as caught:
            handler_without_set_up()(event, cast(LambdaContext, FakeContext()))
        return str(caught.value)

    eventbridge, _, s3, sns, mixed, no_id, no_source, *_ = foreign_events()
    assert "an EventBridge event" in refusal(eventbridge)
    assert "records from 'aws:s3'" in refusal(s3)
    assert "records from 'aws:sns'" in refusal(sns)
    assert "records from 'aws:sns'" in refusal(mixed)
    assert "without a messageId" in refusal(no_id)
    assert "without an eventSource" in refusal(no_source)
    assert "an empty object" in refusal({})
    assert "a notification request itself" in refusal(json.loads(request("Заказ", PHONE)))
    assert "a JSON list" in refusal([])
    assert "null" in refusal(None)


PAYLOAD = "PAYLOAD-8c1e"  # every value a producer could have written carries this
payload_values = st.text(max_size=8).map(lambda t: PAYLOAD + t)
sources = st.sampled_from(["aws:sqs", "aws:sns", "aws:s3", "aws:kinesis", "aws:dynamodb"]) | payload_values
records_of_any_source = st.one_of(
    st.builds(record, st.text(min_size=1, max_size=8), payload_values),
    st.builds(lambda source, body: {"EventSource": source, "Sns": {"Message": body}}, sources, payload_values),
    st.builds(lambda source, body: {"eventSource": source, "body": body}, sources, payload_values),
    st.dictionaries(payload_values, payload_values, max_size=3),
    st.none() | st.integers() | payload_values,
)
any_event = st.one_of(
    st.builds(lambda records: {"Records": records}, st.lists(records_of_any_source, max_size=4)),
    st.builds(lambda value: {"Records": value}, st.none() | st.integers() | payload_values),
    st.dictionaries(payload_values, payload_values | st.integers(), max_size=4),
    st.builds(lambda detail: {"version": "0", "source": "x", "detail-type": "y", "detail": detail}, payload_values),
    st.lists(payload_values, max_size=3),
    st.none() | st.integers() | payload_values,
)


@settings(max_examples=300, deadline=None)
@given(event=any_event)
def test_whatever_the_event_the_handler_sets_up_only_for_a_batch_of_sqs_records(event: Any) -> None:
    records = event.get("Records") if isinstance(event, dict) else None
    is_batch = isinstance(records, list) and all(
        isinstance(r, dict) and r.get("eventSource") == "aws:sqs" and isinstance(r.get("messageId"), str)
        for r in records
    )
    handler = handler_without_set_up()
    context = cast(LambdaContext, FakeContext())

    if is_batch and not records:
        assert handler(event, context) == {"batchItemFailures": []}
    elif is_batch:
        with pytest.raises(SetUpReachedError):
            handler(event, context)
    else:
        with pytest.raises(app.NotAnSqsBatchError) as caught:
            handler(event, context)
        assert PAYLOAD not in str(caught.value)
