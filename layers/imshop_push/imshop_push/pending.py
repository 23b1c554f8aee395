"""Shared waiting: requests of one content that wait for rate budget wait *together*, whichever batch or
execution deferred them, so that the call that finally gets a slot carries all of them.

Re-enqueueing each deferred request as its own copy scatters them again: they come back in whatever batches
the poller forms, and every batch that gets a slot sends the few it holds (a CRM that writes one message per
recipient then costs one call per batch). So a deferred group of one content goes into the *pending pool*
instead, one item per request (its copy exactly as SQS would have held it), and one *wake* message per group
goes to its queue, delayed to the group's turn. The execution that receives the wake takes the group's
requests out of the pool and sends them as the merged calls of one batch; all the rest is the pipeline as
usual (claims keep each request once, whatever two wakes or a redelivered original do).

The wake is *armed* in the pool before it is written, and disarmed when it is received and before the pool is
read: a deferral that finds a wake armed (and not yet received) needs none of its own, since whatever it put
in the pool is read after it. A wake that was armed but never written is given up after a grace period.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from imshop_push.inbound import InboundMessage
from imshop_push.lanes import Lane
from imshop_push.model import Content

GROUP_ATTRIBUTE = "pendingGroup"
"""Written on a wake for whoever reads the queue (the console, a DLQ listing); never read back: a producer can set
any attribute, so a wake is known by its body alone (`wake_group`)."""
_WAKE_FIELD = "pendingWake"
_WAKE_ABOUT = "releases requests of one content waiting for rate budget"
_WAKE_PREFIX = f'{{"{_WAKE_FIELD}": '
VIRTUAL_PREFIX = "pending:"
"""Message ids of requests taken out of the pool: never an SQS message id, so never in a batch response."""
TAKE_MAX_ITEMS = 2_000
"""Requests one wake takes at most: enough for two full calls of single-recipient requests, little enough that
the claims and settlement of the taken requests fit an invocation's reserve."""
TAKE_MIN_ITEMS = 50
TAKE_SECONDS_PER_ITEM = 0.01
"""A taken request is claimed before the first call may start: a wake takes no more than the time until then
can claim (a generous 10 ms each), or it would defer them all again, every time."""


class PendingCopy(NamedTuple):
    key: str  # the request's idempotency key: one item per request, so pooling it twice is pooling it once
    body: str
    attributes: Mapping[str, Mapping[str, Any]]  # as SendMessage takes them (the copy's MessageAttributes)
    event_source_arn: str
    sent_timestamp_ms: int | None


class PendingPool(Protocol):
    """Every method raises `StoreError` when the pool is unavailable."""

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None: ...

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        """Up to `limit` requests of the group, read after every earlier `put` (a consistent read)."""
        ...

    def remove(self, group: str, keys: Collection[str]) -> None: ...

    def arm(self, group: str, *, wake_at: float, stale_before: float, now: float) -> bool:
        """Record a wake for `wake_at` unless one is armed for no later than that and was armed for after
        `stale_before` (an older one is presumed lost). True: the caller must write the wake message."""
        ...

    def disarm(self, group: str) -> None: ...

    def armed(self, group: str) -> float | None:
        """When the group's armed wake is due; None when none is armed (nothing of it waits, or it is being
        taken right now)."""
        ...


def group_of(lane: Lane, event_source_arn: str, content: Content) -> str:
    """Requests of one content on one queue: what one wake releases and one merged call may carry."""
    text = "\x1f".join((event_source_arn, content.title, content.summary, content.deeplink or ""))
    return f"{lane.value}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def pending_copy(key: str, message: InboundMessage, entry: Mapping[str, Any]) -> PendingCopy:
    """The pooled form of a deferral copy (`sqs_copies.requeue_entry`): what SQS would have held."""
    attributes = entry.get("MessageAttributes", {})
    return PendingCopy(key, entry["MessageBody"], attributes, message.event_source_arn, message.sent_timestamp_ms)


def inbound_of(copy: PendingCopy) -> InboundMessage:
    """The request taken out of the pool, as if SQS delivered its copy for the first time."""
    return InboundMessage(
        message_id=f"{VIRTUAL_PREFIX}{copy.key}",
        body=copy.body,
        event_source_arn=copy.event_source_arn,
        message_attributes={name: _lambda_attribute(value) for name, value in copy.attributes.items()},
        sent_timestamp_ms=copy.sent_timestamp_ms,
    )


def is_virtual(message: InboundMessage) -> bool:
    return message.message_id.startswith(VIRTUAL_PREFIX)


def wake_group(message: InboundMessage) -> str | None:
    """The group a wake releases, or None for any other message.

    A wake is a body that is exactly `wake_body(group)`: never a valid request (no `message`, and a request
    refuses any other field), so no producer's request can be taken for one, whatever attributes it carries. A
    producer who writes such a body by hand costs one read of the pool: the group's requests are sent or
    pooled again as usual."""
    body = message.body
    if not body.startswith(_WAKE_PREFIX):  # every other record: no JSON decoding
        return None
    try:
        group = json.loads(body).get(_WAKE_FIELD)
    except (ValueError, RecursionError):
        return None
    return group if isinstance(group, str) and group and body == wake_body(group) else None


def wake_body(group: str) -> str:
    """Readable in the console or a DLQ listing: a wake holds no request and no recipient."""
    return json.dumps({_WAKE_FIELD: group, "about": _WAKE_ABOUT})


def encode_copy(copy: PendingCopy) -> str:
    return json.dumps(
        {
            "body": copy.body,
            "attributes": _jsonable(copy.attributes),
            "arn": copy.event_source_arn,
            "sent": copy.sent_timestamp_ms,
        },
        ensure_ascii=False,
    )


def decode_copy(key: str, text: str) -> PendingCopy:
    data = json.loads(text)
    attributes = {
        name: {**value, "BinaryValue": base64.b64decode(value["BinaryValue"])} if "BinaryValue" in value else value
        for name, value in data["attributes"].items()
    }
    return PendingCopy(key, data["body"], attributes, data["arn"], data["sent"])


def _jsonable(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        item = dict(value)
        if isinstance(item.get("BinaryValue"), bytes):
            item["BinaryValue"] = base64.b64encode(item["BinaryValue"]).decode()
        out[name] = item
    return out


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SendMessage's attribute shape into the lower-camel shape Lambda delivers."""
    out: dict[str, Any] = {"dataType": value.get("DataType", "String")}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        binary = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary
    return out


class InProcessPendingPool:
    """The same semantics in memory, for local runs without a table."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, PendingCopy]] = {}
        self._wakes: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None:
        with self._lock:
            self._groups.setdefault(group, {}).update((c.key, c) for c in copies)

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        with self._lock:
            return [self._groups.get(group, {})[k] for k in sorted(self._groups.get(group, {}))[:limit]]

    def remove(self, group: str, keys: Collection[str]) -> None:
        with self._lock:
            pooled = self._groups.get(group, {})
            for key in keys:
                pooled.pop(key, None)

    def arm(self, group: str, *, wake_at: float, stale_before: float, now: float) -> bool:
        with self._lock:
            armed = self._wakes.get(group)
            if armed is not None and stale_before <= armed <= wake_at:
                return False
            self._wakes[group] = wake_at
            return True

    def disarm(self, group: str) -> None:
        with self._lock:
            self._wakes.pop(group, None)

    def armed(self, group: str) -> float | None:
        with self._lock:
            return self._wakes.get(group)

    def pooled(self, group: str) -> int:
        with self._lock:
            return len(self._groups.get(group, {}))
