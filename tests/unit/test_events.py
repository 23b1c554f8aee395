"""The sample events in events/ are what `sam local invoke` and the local runner feed the real handler, so they
must be genuine SQS Lambda events whose bodies fall exactly into the valid/poison split they advertise."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from imshop_push.domain.parsing import PoisonMessageError, parse_body
from imshop_push.entrypoints.config import Settings

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"
QUEUE_ARN = re.compile(r"^arn:aws:sqs:eu-central-1:123456789012:[A-Za-z0-9_-]{1,80}$")
RECORD_KEYS = {
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
}
SYSTEM_ATTRIBUTES = {"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"}
EVENT_FILES = ["order_status.json", "bonus_reminder_eventbridge.json", "offer_sns.json", "mixed_batch.json"]


def _records(name: str) -> list[dict[str, Any]]:
    event = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    assert set(event) == {"Records"}
    records: list[dict[str, Any]] = event["Records"]
    return records


def _outcome(record: dict[str, Any]) -> str:
    try:
        parse_body(record["body"], message_id=record["messageId"])
    except PoisonMessageError as e:
        return e.reason
    return "valid"


def test_every_event_file_is_covered() -> None:
    assert sorted(p.name for p in EVENTS.glob("*.json")) == sorted([*EVENT_FILES, "env.json"])


@pytest.mark.parametrize("name", EVENT_FILES)
def test_events_are_sqs_lambda_events(name: str) -> None:
    records = _records(name)
    assert 1 <= len(records) <= 10
    assert len({r["messageId"] for r in records}) == len(records)
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["eventSource"] == "aws:sqs"
        assert QUEUE_ARN.match(record["eventSourceARN"])
        assert record["awsRegion"] == "eu-central-1"
        assert isinstance(record["body"], str)
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert record["messageAttributes"] == {}
        attributes = record["attributes"]
        assert set(attributes) == SYSTEM_ATTRIBUTES
        assert all(isinstance(v, str) for v in attributes.values())  # Lambda delivers them as strings
        assert int(attributes["ApproximateReceiveCount"]) >= 1
        assert int(attributes["ApproximateFirstReceiveTimestamp"]) >= int(attributes["SentTimestamp"])
        assert record["receiptHandle"].startswith("AQEB")


def test_order_status_is_one_valid_request_with_the_producers_key() -> None:
    [record] = _records("order_status.json")
    request = parse_body(record["body"], message_id=record["messageId"])
    assert request.idempotency_key == "order-123-shipped"
    assert request.content.deeplink == "myshop://orders/123"
    assert request.recipients == (("userIds", "79991234567"),)
    assert request.expires_at is None


def test_bonus_reminder_is_an_eventbridge_event_for_three_users() -> None:
    [record] = _records("bonus_reminder_eventbridge.json")
    body = json.loads(record["body"])
    assert body["detail-type"] == "Bonus reminder"
    assert body["source"] == "retailer.crm"
    assert {"version", "id", "account", "time", "region", "resources"} <= set(body)
    request = parse_body(record["body"], message_id=record["messageId"])
    assert request.idempotency_key == body["id"]  # the envelope id, the same when EventBridge redelivers
    assert len(request.recipients) == 3
    assert request.expires_at is not None
    assert request.expires_at.year == 2099


def test_offer_is_an_sns_notification_with_users_and_installs() -> None:
    [record] = _records("offer_sns.json")
    body = json.loads(record["body"])
    assert body["Type"] == "Notification"
    for field in ("MessageId", "TopicArn", "Subject", "Timestamp", "SignatureVersion", "Signature"):
        assert body[field]
    assert body["SigningCertURL"].startswith("https://sns.eu-central-1.amazonaws.com/")
    assert body["UnsubscribeURL"].startswith("https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe")
    assert isinstance(body["Message"], str)
    request = parse_body(record["body"], message_id=record["messageId"])
    fields = {field for field, _ in request.recipients}
    assert fields == {"userIds", "installIds"}


def test_mixed_batch_splits_into_three_valid_and_three_poison() -> None:
    records = _records("mixed_batch.json")
    assert len(records) == 6
    outcomes = [_outcome(r) for r in records]

    assert outcomes[:3] == ["valid", "valid", "valid"]
    assert outcomes[3] == "userId: is not an allowed field (did you mean userIds?)"
    assert outcomes[4].startswith("body: is not valid JSON")
    assert outcomes[5] == "message.summary: is a required property"


def test_mixed_batch_has_two_requests_to_merge_and_one_eventbridge_event() -> None:
    records = _records("mixed_batch.json")
    first, second, third = (parse_body(r["body"], message_id=r["messageId"]) for r in records[:3])
    assert first.content == second.content
    assert first.recipients != second.recipients
    assert set(first.recipients) & set(second.recipients)  # merging de-duplicates the shared recipient
    assert third.content != first.content
    assert "detail-type" in json.loads(records[2]["body"])
    assert third.idempotency_key == json.loads(records[2]["body"])["id"]


# --------------------------------------------------------------------------- env.json


def _env_json() -> tuple[str, dict[str, str]]:
    document = json.loads((EVENTS / "env.json").read_text(encoding="utf-8"))
    [(function, variables)] = document.items()
    assert all(isinstance(v, str) for v in variables.values())  # Lambda environments hold strings only
    return function, variables


# A SafeLoader that reads CloudFormation short tags (!Ref, !Sub, ...) as null: only the structure matters here.
_CFN_LOADER: Any = type("CfnLoader", (yaml.SafeLoader,), {})
_CFN_LOADER.add_multi_constructor("!", lambda loader, suffix, node: None)


def _template_functions() -> dict[str, Any]:
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CFN_LOADER)
    resources: dict[str, Any] = template["Resources"]
    return {k: v for k, v in resources.items() if v.get("Type") == "AWS::Serverless::Function"}


def test_env_json_names_the_templates_function() -> None:
    function, variables = _env_json()
    assert function in _template_functions()
    assert variables["RATE_LIMIT_REQUESTS"] == "10"
    assert variables["IMSHOP_API_URL"].startswith("http://host.docker.internal:8080/")


def test_env_json_only_sets_variables_the_template_declares() -> None:
    function, variables = _env_json()
    declared = set(_template_functions()[function]["Properties"]["Environment"]["Variables"])
    assert set(variables) - declared == set()


def test_env_json_is_a_configuration_the_function_accepts() -> None:
    _, variables = _env_json()
    settings = Settings.from_env({**variables, "AWS_SAM_LOCAL": "true"})
    assert settings.api_url == variables["IMSHOP_API_URL"]
    assert settings.state_table_name is None


# --------------------------------------------------------------------------- messages AWS services send by themselves

AWS_EVENTS = Path(__file__).resolve().parent / "aws_events"
FUNCTION_ARN = "arn:aws:lambda:eu-central-1:123456789012:function:campaign-builder:$LATEST"
NOT_A_REQUEST = "it is not a notification request"

# Each sample is a message body in the shape AWS puts it on a queue; the reason must start by naming what it is.
# Deliveries: "sqs" as the body itself, "sns" inside an SNS notification (S3, EventBridge and Lambda destinations
# can all publish to a topic that an SQS queue subscribes to).
AWS_SHAPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sns_subscription_confirmation.json": (
        'SNS subscription confirmation for topic "arn:aws:sns:eu-central-1:210987654321:retailer-campaigns":'
        " confirm it with its SubscribeURL",
        ("sqs",),
    ),
    "sns_unsubscribe_confirmation.json": (
        'SNS unsubscribe confirmation for topic "arn:aws:sns:eu-central-1:210987654321:retailer-campaigns"',
        ("sqs",),
    ),
    "s3_object_created.json": (
        'S3 event notification ("ObjectCreated:Put" in bucket "retailer-exports", 1 record)',
        ("sqs", "sns"),
    ),
    "s3_objects_removed.json": (
        'S3 event notification ("ObjectRemoved:Delete" in bucket "retailer-exports", 2 records)',
        ("sqs", "sns"),
    ),
    "s3_test_event.json": ('S3 test event from bucket "retailer-exports"', ("sqs", "sns")),
    "eventbridge_scheduled_event.json": (
        'EventBridge scheduled event from "arn:aws:events:eu-central-1:123456789012:rule/daily-bonus-reminder"',
        ("sqs", "sns"),
    ),
    "eventbridge_s3_object_created.json": (
        'EventBridge event "Object Created" from "aws.s3" is an AWS service event (detail.message:',
        ("sqs", "sns"),
    ),
    "eventbridge_ec2_state_change.json": (
        'EventBridge event "EC2 Instance State-change Notification" from "aws.ec2" is an AWS service event',
        ("sqs", "sns"),
    ),
    "scheduler_eventbridge_target.json": (
        "detail.message.summary: is a required property (the event comes from EventBridge Scheduler schedule"
        ' "arn:aws:scheduler:eu-central-1:123456789012:schedule/default/bonus-reminder"',
        ("sqs", "sns"),
    ),
    "empty_input.json": ("body: is an empty JSON object (message: is a required property)", ("sqs",)),
    "lambda_destination_success.json": (
        f'Lambda invocation record of function "{FUNCTION_ARN}" (condition "Success")',
        ("sqs", "sns"),
    ),
    "lambda_destination_failure.json": (
        f'Lambda invocation record of function "{FUNCTION_ARN}" (condition "RetriesExhausted")',
        ("sqs", "sns"),
    ),
    "sns_cloudwatch_alarm.json": (
        'CloudWatch alarm notification for alarm "imshop-push-dlq-not-empty" (state "ALARM")',
        ("sqs",),
    ),
    "sns_text_notification.json": (
        'Message: is not valid JSON (Expecting value): the SNS notification from topic "arn:aws:sns:eu-central-1:'
        '123456789012:billing-alerts" (subject "AWS Budgets: monthly-limit has exceeded your alert threshold")',
        ("sqs",),
    ),
}
AWS_CASES = [(name, delivery) for name, (_, deliveries) in AWS_SHAPES.items() for delivery in deliveries]


def _aws_sample(name: str) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((AWS_EVENTS / name).read_text(encoding="utf-8"))
    return sample


def _delivered(sample: Any, delivery: str) -> str:
    if delivery == "sns":
        sample = {
            "Type": "Notification",
            "MessageId": "0f1e2d3c-4b5a-5968-8776-a5b4c3d2e1f0",
            "TopicArn": "arn:aws:sns:eu-central-1:123456789012:retailer-events",
            "Message": json.dumps(sample),
            "Timestamp": "2026-05-01T09:00:01.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-example.pem",
            "UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe",
        }
    return json.dumps(sample)


def _reason(body: str) -> str:
    with pytest.raises(PoisonMessageError) as caught:
        parse_body(body, message_id="9f1c1b52-5c2e-4a4e-8a3c-3f2d7c0f6a11")
    return caught.value.reason


def test_every_aws_sample_is_covered() -> None:
    assert sorted(p.name for p in AWS_EVENTS.glob("*.json")) == sorted(AWS_SHAPES)


@pytest.mark.parametrize(("name", "delivery"), AWS_CASES, ids=[f"{n.removesuffix('.json')}-{d}" for n, d in AWS_CASES])
def test_a_message_an_aws_service_sent_is_named_with_what_to_do(name: str, delivery: str) -> None:
    expected, _ = AWS_SHAPES[name]

    sample = _aws_sample(name)

    reason = _reason(_delivered(sample, delivery))

    assert reason.startswith(expected)
    if not name.startswith(("scheduler_", "empty_")):  # a producer's own event or body: the path says what to fix
        assert NOT_A_REQUEST in reason
    # Whoever reads the reason (logs, a DLQ attribute) must not be able to subscribe or unsubscribe the queue with it.
    assert "https://" not in reason
    for secret in (sample.get("SubscribeURL"), sample.get("Token")):
        assert secret is None or secret not in reason


# Fields each shape quotes in its reason; whatever value is there (any length, any text), the message is still
# named as what it is, in a reason of bounded size that quotes at most the start of the value.
QUOTED_FIELDS: list[tuple[str, tuple[Any, ...], str]] = [
    ("sns_subscription_confirmation.json", ("TopicArn",), "SNS subscription confirmation for topic "),
    ("s3_object_created.json", ("Records", 0, "s3", "bucket", "name"), "S3 event notification ("),
    ("s3_object_created.json", ("Records", 0, "eventName"), "S3 event notification ("),
    ("s3_test_event.json", ("Bucket",), "S3 test event from bucket "),
    ("eventbridge_scheduled_event.json", ("resources", 0), "EventBridge scheduled event from "),
    ("eventbridge_ec2_state_change.json", ("detail-type",), "EventBridge event "),
    ("scheduler_eventbridge_target.json", ("resources", 0), "detail.message.summary: is a required property"),
    ("lambda_destination_failure.json", ("requestContext", "functionArn"), "Lambda invocation record of function "),
    ("sns_cloudwatch_alarm.json", ("Message", "AlarmName"), "CloudWatch alarm notification for alarm "),
    ("sns_text_notification.json", ("Subject",), "Message: is not valid JSON (Expecting value): the SNS notification"),
]


def _replaced(sample: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    sample = json.loads(json.dumps(sample))
    if path[0] == "Message":  # an SNS Message is JSON inside a string
        inner = json.loads(sample["Message"])
        inner[path[1]] = value
        sample["Message"] = json.dumps(inner)
        return sample
    target: Any = sample
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return sample


# A busy machine must not fail a property test: none of these properties is about time.
UNTIMED = settings(deadline=None)


@UNTIMED
@given(
    case=st.sampled_from(QUOTED_FIELDS),
    value=st.none()
    | st.integers()
    | st.lists(st.text(max_size=3), max_size=2)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=5000),
)
def test_any_value_in_a_quoted_field_gives_a_bounded_reason(case: tuple[str, tuple[Any, ...], str], value: Any) -> None:
    name, path, kind = case

    reason = _reason(_delivered(_replaced(_aws_sample(name), path, value), "sqs"))

    assert reason.startswith(kind)
    assert len(reason) <= 600
