"""Messages AWS services put on a queue by themselves, named with what to do about them.

A subscription confirmation, an S3 event or a Lambda destination record on the notification queue is a wiring
mistake, not a malformed request: "message: is a required property" sends the reader looking for a producer bug.
Each recogniser here runs only once a body has failed as a request, so valid traffic never pays for it. Values
quoted from a body are cut short and never include what could act on the reader's behalf (a SubscribeURL, a Token).
"""

from __future__ import annotations

import json
from typing import Any

NOT_A_REQUEST = "it is not a notification request"
_QUOTE_LIMIT = 120


def describe(document: dict[str, Any]) -> str | None:
    """What an AWS service's own message is and what to do, or None when `document` is no such message."""
    kind = document.get("Type")
    if kind == "SubscriptionConfirmation":
        return (
            f"SNS subscription confirmation for topic {_quoted(document.get('TopicArn'))}: confirm it with its"
            f" SubscribeURL (in this message's body) and SNS starts delivering; {NOT_A_REQUEST}"
        )
    if kind == "UnsubscribeConfirmation":
        return (
            f"SNS unsubscribe confirmation for topic {_quoted(document.get('TopicArn'))}: the queue's subscription"
            f" was deleted; to subscribe again, visit its SubscribeURL (in this message's body); {NOT_A_REQUEST}"
        )
    if document.get("Event") == "s3:TestEvent":
        return (
            f"S3 test event from bucket {_quoted(document.get('Bucket'))}: S3 sends it when an event notification"
            f" to this queue is set up; {NOT_A_REQUEST}: remove that notification unless it is meant for this queue,"
            " and delete this message"
        )
    records = document.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        described = _describe_records(records)
        if described is not None:
            return described
    if isinstance(document.get("requestContext"), dict) and "responseContext" in document:
        context = document["requestContext"]
        return (
            f"Lambda invocation record of function {_quoted(context.get('functionArn'))} (condition"
            f" {_quoted(context.get('condition'))}): a Lambda destination targets this queue; {NOT_A_REQUEST}:"
            " point the destination elsewhere, or have the function send the request itself"
        )
    if "AlarmName" in document and "NewStateValue" in document:
        return (
            f"CloudWatch alarm notification for alarm {_quoted(document.get('AlarmName'))} (state"
            f" {_quoted(document.get('NewStateValue'))}): the alarm's SNS topic delivers to this queue;"
            f" {NOT_A_REQUEST}: unsubscribe this queue from that topic"
        )
    return None


def describe_event(event: dict[str, Any], reason: str) -> str | None:
    """An EventBridge event whose `detail` is not a request, when an AWS service or a schedule emitted it.

    Any other event gets `reason` alone: its path (`detail.…`) already says what to fix.
    """
    source = event.get("source")
    detail_type = event.get("detail-type")
    if detail_type == "Scheduled Event" and source in ("aws.events", "aws.scheduler"):
        resources = event.get("resources")
        origin = resources[0] if isinstance(resources, list) and resources else source
        return (
            f"EventBridge scheduled event from {_quoted(origin)} ({reason}); {NOT_A_REQUEST}: set the target's"
            " input to the request (constant JSON)"
        )
    if isinstance(source, str) and source.startswith("aws."):
        return (
            f"EventBridge event {_quoted(detail_type)} from {_quoted(source)} is an AWS service event ({reason});"
            f" {NOT_A_REQUEST}: narrow the event pattern of the rule that targets this queue"
        )
    schedule = _schedule_of(event.get("resources"))
    if schedule is not None:
        return f"{reason} (the event comes from EventBridge Scheduler schedule {_quoted(schedule)}: fix its detail)"
    return None


def describe_empty_body(reason: str) -> str:
    """`{}`: what a schedule or a rule sends when its target input was left empty, as often as a producer bug."""
    return (
        f"body: is an empty JSON object ({reason}); if a schedule or rule sends it, set its target input to the"
        " notification request"
    )


def describe_text_notification(envelope: dict[str, Any], error: str) -> str:
    """An SNS notification whose `Message` is not JSON: an alert, a console test, or a topic shared with people."""
    subject = envelope.get("Subject")
    about = f" (subject {_quoted(subject)})" if isinstance(subject, str) and subject else ""
    return (
        f"Message: is not valid JSON ({error}): the SNS notification from topic"
        f" {_quoted(envelope.get('TopicArn'))}{about} carries text; {NOT_A_REQUEST}: publish the request's JSON"
        " as the message"
    )


def describe_non_object(where: str, value: Any, json_type: str) -> str:
    """A body (or SNS `Message`) that is valid JSON but no object; a JSON string of an object's JSON is the common
    slip (a producer serialising twice) and is named as such."""
    reason = f"{where}: must be a JSON object, got {json_type}"
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            inner = json.loads(value)
        except ValueError:
            return reason
        if isinstance(inner, dict):
            return f"{reason} holding JSON (serialised twice?): send the object itself"
    return reason


def _describe_records(records: list[Any]) -> str | None:
    first = records[0]
    source = first.get("eventSource") or first.get("EventSource")
    if not isinstance(source, str) or not source.startswith("aws:"):
        return None
    count = f"{len(records)} record{'s' if len(records) != 1 else ''}"
    if source == "aws:s3":
        s3 = first.get("s3")
        bucket = s3.get("bucket") if isinstance(s3, dict) else None
        name = bucket.get("name") if isinstance(bucket, dict) else None
        return (
            f"S3 event notification ({_quoted(first.get('eventName'))} in bucket {_quoted(name)}, {count}): the"
            f" bucket's event notification targets this queue; {NOT_A_REQUEST}: remove that notification or point it"
            " at another queue"
        )
    return (
        f"{_quoted(source)} event records ({count}), as a Lambda function receives them: {NOT_A_REQUEST}: send the"
        " request itself, not the event that triggered a function"
    )


def _schedule_of(resources: Any) -> str | None:
    """EventBridge Scheduler names the schedule in `resources` of the events its PutEvents target sends."""
    if isinstance(resources, list):
        for resource in resources:
            if isinstance(resource, str) and resource.startswith("arn:") and ":scheduler:" in resource:
                return resource
    return None


def _quoted(value: Any) -> str:
    """A value from the body, as JSON text and cut short: it may be anything, of any length."""
    if not isinstance(value, str) or not value:
        return "(none)"
    text = value if len(value) <= _QUOTE_LIMIT else value[:_QUOTE_LIMIT] + "…"
    return json.dumps(text, ensure_ascii=False)
