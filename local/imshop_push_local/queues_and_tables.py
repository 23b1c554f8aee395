"""The template's SQS queues and DynamoDB tables, created in moto from their resolved properties.

Kept apart from the walk over the template (``stack_builder``) because this is where the template's
properties become API requests: the one place that knows which properties SQS and DynamoDB take as
they are, which need translating, and which the local stack time-scales or overrides.
"""

from __future__ import annotations

import json
from typing import Any

from imshop_push_local.aws_clients import make_client
from imshop_push_local.local_tuning import LocalTuning
from imshop_push_local.stack_model import LocalQueue


def create_queue(
    properties: dict[str, Any],
    *,
    logical_id: str,
    name: str,
    consumed: bool,
    tuning: LocalTuning,
    endpoint_url: str,
    region: str,
) -> LocalQueue:
    """Create one queue; ``consumed`` (a function's event source reads it) is where the visibility and
    redrive overrides apply, as they are the event source's settings in disguise."""
    if "VisibilityTimeout" in properties:
        properties["VisibilityTimeout"] = max(1, round(float(properties["VisibilityTimeout"]) * tuning.time_scale))
    redrive = properties.get("RedrivePolicy")
    if consumed:
        if tuning.visibility_timeout_seconds is not None:
            properties["VisibilityTimeout"] = tuning.visibility_timeout_seconds
        if tuning.max_receive_count is not None and isinstance(redrive, dict):
            redrive["maxReceiveCount"] = tuning.max_receive_count
    attributes = {key: _queue_attribute(value) for key, value in properties.items() if key not in ("Tags",)}
    sqs = make_client("sqs", endpoint_url, region)
    url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    dead_letter_arn = str(redrive["deadLetterTargetArn"]) if isinstance(redrive, dict) else None
    return LocalQueue(logical_id=logical_id, name=name, url=url, arn=arn, dead_letter_arn=dead_letter_arn)


def create_table(properties: dict[str, Any], *, name: str, endpoint_url: str, region: str) -> None:
    """Create one table and wait until it exists: the function's first write must not race its creation."""
    request: dict[str, Any] = {
        key: properties[key]
        for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")
        if key in properties
    }
    request["BillingMode"] = properties.get("BillingMode", "PROVISIONED")
    if "ProvisionedThroughput" in properties:
        request["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
    if "StreamSpecification" in properties:
        request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    dynamodb = make_client("dynamodb", endpoint_url, region)
    dynamodb.create_table(TableName=name, **request)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": bool(ttl.get("Enabled")), "AttributeName": ttl["AttributeName"]},
        )


def _queue_attribute(value: Any) -> str:
    """SQS takes every attribute as a string; the template writes booleans, numbers and the redrive policy's
    mapping as YAML values."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
