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

from imshop_push.config import Settings
from imshop_push.parsing import PoisonMessageError, parse_body

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
