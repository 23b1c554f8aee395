"""The slice of an SQS record the dispatcher needs, independent of Powertools' event classes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

NO_ATTRIBUTES: Mapping[str, Mapping[str, Any]] = MappingProxyType({})


class InboundMessage(NamedTuple):
    message_id: str
    body: str
    event_source_arn: str = ""
    receive_count: int = 1
    message_attributes: Mapping[str, Mapping[str, Any]] = NO_ATTRIBUTES
    """As Lambda delivers them: {name: {"dataType", "stringValue" | "binaryValue", ...}}."""
    sent_timestamp_ms: int | None = None  # SQS's SentTimestamp: when this message reached the queue
    first_received_ms: int | None = None  # SQS's ApproximateFirstReceiveTimestamp (the same on every redelivery)


def to_send_attributes(lambda_attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Lambda's lower-camel attribute shape back into what SendMessage takes."""
    converted: dict[str, dict[str, Any]] = {}
    for name, attribute in lambda_attributes.items():
        data_type = attribute.get("dataType") or attribute.get("DataType") or "String"
        value: dict[str, Any] = {"DataType": data_type}
        if attribute.get("stringValue") is not None:
            value["StringValue"] = attribute["stringValue"]
        elif attribute.get("binaryValue") is not None:
            binary = attribute["binaryValue"]
            value["BinaryValue"] = binary if isinstance(binary, bytes) else _b64(binary)
        else:
            continue
        converted[name] = value
    return converted


def _b64(text: str) -> bytes:
    import base64  # noqa: PLC0415 - rare path: binary attributes

    return base64.b64decode(text)
