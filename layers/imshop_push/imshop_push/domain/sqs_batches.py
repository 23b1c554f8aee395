"""SQS's size rules for SendMessage(Batch), shared by everything in the layer that writes to a queue: the
producers' publisher and the dispatcher's dead letters and re-enqueued copies.

Standard library only: the publisher promises producers that importing it loads no boto3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

SQS_MAX_MESSAGE_BYTES = 262_144
"""One message (body + attributes) and one SendMessageBatch call (all its entries) alike: the queues' default
MaximumMessageSize, which moto and the local emulator enforce too. Raise it only with the queues' setting. A single
larger message is still sent, on its own: SQS then judges it by the queue's own setting."""
SQS_MAX_BATCH_ENTRIES = 10


def batches[T](items: Iterable[T], entry: Callable[[T], Mapping[str, Any]]) -> Iterator[list[T]]:
    """At most 10 entries and SQS_MAX_MESSAGE_BYTES a call, in order: SQS refuses a whole batch over its payload
    limit, and a backlog of requests with thousands of recipients each would otherwise never leave."""
    chunk: list[T] = []
    size = 0
    for item in items:
        entry_size = payload_size(entry(item))
        if chunk and (len(chunk) == SQS_MAX_BATCH_ENTRIES or size + entry_size > SQS_MAX_MESSAGE_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += entry_size
    if chunk:
        yield chunk


def payload_size(entry: Mapping[str, Any]) -> int:
    """What SQS counts against its limit: the body, and each attribute's name, type and value."""
    return utf8_size(entry["MessageBody"]) + attributes_size(entry.get("MessageAttributes") or {})


def attributes_size(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(attribute_size(name, value) for name, value in attributes.items())


def attribute_size(name: str, value: Mapping[str, Any]) -> int:
    size = utf8_size(name) + utf8_size(value.get("DataType", ""))
    data = value.get("StringValue", value.get("BinaryValue", b""))
    if isinstance(data, str):
        return size + utf8_size(data)
    return size + (len(data) if isinstance(data, (bytes, bytearray)) else 0)


def utf8_size(text: str) -> int:
    return len(text.encode())
