"""The Lambda side of the contract: the event an SQS batch becomes, the context object, the handler
spec, and how Lambda judges the function's answer. Pure: no processes, no clients."""

from __future__ import annotations

import base64
import importlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

    from imshop_push_local.event_source.messages import EventSourceConfig

Handler = Callable[[dict[str, Any], Any], Any]


class LambdaContext:
    """The parts of the Python runtime's context object that handlers and Powertools read."""

    def __init__(
        self,
        *,
        function_name: str,
        memory_limit_in_mb: int,
        invoked_function_arn: str,
        aws_request_id: str,
        log_group_name: str,
        log_stream_name: str,
        timeout_seconds: float,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(spec: str) -> Handler:
    """Resolve a Lambda-style handler spec, ``module:function`` (``module.function`` also accepted)."""
    module_name, function_name = split_handler(spec)
    handler = getattr(importlib.import_module(module_name), function_name)
    if not callable(handler):
        raise TypeError(f"handler {spec!r} is not callable")
    return handler  # type: ignore[no-any-return]


def split_handler(spec: str) -> tuple[str, str]:
    module_name, sep, function_name = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not sep or not module_name or not function_name:
        raise ValueError(f"handler must look like 'module:function', got {spec!r}")
    return module_name, function_name


def to_event(messages: list[MessageTypeDef], config: EventSourceConfig) -> dict[str, Any]:
    """The event of one invocation. Lambda hands the function parsed JSON: a fresh structure with
    nothing shared with the poller."""
    return json.loads(json.dumps({"Records": [to_event_record(m, config) for m in messages]}))  # type: ignore[no-any-return]


def to_event_record(message: MessageTypeDef, config: EventSourceConfig) -> dict[str, Any]:
    """One SQS API message as Lambda presents it: lower-camel keys, base64 binaries, list fields."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _to_event_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(
        {
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": config.queue_arn,
            "awsRegion": config.region,
        }
    )
    return record


def _to_event_attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _b64(value["BinaryValue"])
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [_b64(item) for item in value.get("BinaryListValues", [])]
    attribute["dataType"] = value["DataType"]
    return attribute


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


MAX_ERROR_CHARS = 2000


def function_error(exc: BaseException) -> str:
    """The error Lambda reports for a handler that raised: the exception's type and text, capped."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def interpret_response(
    result: Any, message_ids: list[str], *, report_batch_item_failures: bool = True
) -> tuple[list[str], str | None]:
    """Judge a handler's return value the way Lambda does.

    Returns the ids to leave on the queue and an error when the whole batch counts as failed.
    Without ReportBatchItemFailures any return is success. With it, success: None, ``{}``, no or an
    empty ``batchItemFailures``; whole batch failed: anything that is not JSON, not an object, or
    names an item that is empty, unnamed or not in the batch.
    """
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return list(message_ids), f"Runtime.MarshalError: response is not JSON serializable: {exc}"
    if result is None or not report_batch_item_failures:
        return [], None
    if not isinstance(result, dict):
        return list(message_ids), f"malformed response: expected an object, got {type(result).__name__}"
    failures = result.get("batchItemFailures")
    if failures is None:
        return [], None
    if not isinstance(failures, list):
        return list(message_ids), "malformed response: batchItemFailures is not a list"
    known = set(message_ids)
    failed: list[str] = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier:
            return list(message_ids), f"malformed response: bad batch item failure {item!r}"
        if identifier not in known:
            return list(message_ids), f"malformed response: itemIdentifier {identifier!r} is not in the batch"
        if identifier not in failed:
            failed.append(identifier)
    return failed, None
