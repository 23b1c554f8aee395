"""Shared waiting: requests of one content that wait for rate budget wait *together*, whichever batch or
execution deferred them, so that the call that finally gets a slot carries all of them.

Re-enqueueing each deferred request as its own copy scatters them again: they come back in whatever batches
the poller forms, and every batch that gets a slot sends the few it holds (a CRM that writes one message per
recipient then costs one call per batch). So a deferred group of one content goes into the *pending pool*
instead, one item per request (its copy exactly as SQS would have held it), and one *wake* message per group
goes to its queue, delayed to the group's turn. The execution that receives the wake takes the group's
requests out of the pool and sends them as the merged calls of one batch; all the rest is the pipeline as
usual (claims keep each request once, whatever two wakes or a redelivered original do).

The wake is *armed* in the pool before it is written, marked *written* once SendMessage took it, and disarmed
when it is received and before the pool is read. Only a written wake is trusted: a deferral that finds one
written (and not yet received) needs none of its own, since whatever it put in the pool is read after it. A
wake armed but not yet written may still fail, and its writer gives back only its own requests: a deferral
that finds one writes a wake of its own, so nothing acknowledged to SQS depends on a wake another execution
failed to write. A wake armed for long ago is presumed lost.

A take reads a group in rotation, starting after the last key the previous take of the group ended with: no
request is taken twice before every request that waited when it was first taken has had its turn, however
its key sorts. A request a wake leaves waiting is written again, which renews its item's expiration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Content

GROUP_ATTRIBUTE = "pendingGroup"
"""Written on a wake for whoever reads the queue (the console, a DLQ listing); never read back: a producer can set
any attribute, so a wake is known by its body alone (`wake_group`)."""
WAKE_TOKEN_ATTRIBUTE = "pendingWakeToken"  # noqa: S105 - an attribute name, not a secret
"""The token the wake was armed with: a wake whose group has since been armed by a newer one, written, is obsolete
(`PendingPool.disarm`). Absent (a wake written before tokens, or by hand): the wake is taken as it always was."""
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


class GroupState(NamedTuple):
    wake_at: float | None  # when its written wake is due (as `armed`)
    arriving_until: float | None  # a batch carrying the content more than once is worked on until then


class PendingPool(Protocol):
    """Every method raises `StoreError` when the pool is unavailable."""

    shared: bool
    """Other executions see what is pooled, and wake messages reach them. A partial call waits to fill only in
    a shared pool: a pool in one process's memory (a local run without tables) has no one to fill it."""

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None:
        """Pool the copies (again): an item put again is replaced, and its expiration renewed."""
        ...

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        """Up to `limit` requests of the group, read after every earlier `put` (a consistent read). Fewer than
        `limit`: that is all of them. A take of `limit` starts the next take after the last key it returned,
        so that the whole group takes turns."""
        ...

    def remove(self, group: str, keys: Collection[str]) -> None: ...

    def arm(self, group: str, *, wake_at: float, stale_before: float, now: float) -> str | None:
        """None when a *written* wake due no later than `wake_at` and armed for after `stale_before` (an older
        one is presumed lost) will take what the caller pooled before. Otherwise a token: the caller must write
        a wake message, then report it `written` (or `abandon` it when it could not). A wake another execution
        armed but has not reported written yet is left alone, and the token is one of no record (reporting it
        changes nothing): that wake may still fail, so the caller writes one of its own."""
        ...

    def written(self, group: str, token: str) -> None:
        """The wake armed with `token` is in SQS: from now on it may be trusted (unless it was received, or
        another arm replaced it, meanwhile: then nothing changes)."""
        ...

    def abandon(self, group: str, token: str) -> None:
        """The wake armed with `token` could not be written: the group has no armed wake any more (unless it was
        received, or another arm replaced it, meanwhile: then nothing changes)."""
        ...

    def disarm(self, group: str, token: str | None = None, *, if_armed: bool = False) -> bool:
        """The wake armed with `token` (None: any wake) is received: before the pool is read, so what is pooled
        after this arms a wake of its own. False, and nothing changes: the group is armed by another wake, written,
        that will take whatever this one would have (this one is obsolete: its group was taken and armed again
        since it was written, or an earlier wake replaced it); with `if_armed`, also when no wake is armed (an
        environment's own take: another take has the group already)."""
        ...

    def armed(self, group: str) -> float | None:
        """When the group's written wake is due; None when none is (nothing of it waits, it is being taken right
        now, or the one armed is still being written and may yet fail)."""
        ...

    def announce(self, groups: Collection[str], *, until: float, now: float) -> None:
        """A batch carrying these contents more than once is being worked on until `until` (its deadline), and
        will pool what of them it does not send. Said before the batch's claims, so that a concurrent batch holding
        a lone request of one of them sees it before it decides to send that request alone."""
        ...

    def state(self, group: str) -> GroupState:
        """`armed` and the latest `announce` of the group, in one read."""
        ...


class OpenGroups:
    """The groups this execution environment pooled requests in, with when their wake is due: taken by the
    environment's next invocation once due, without waiting for the wake message.

    A wake message is written to the back of its queue: behind a backlog it comes only once the backlog before
    it has been received, and meanwhile the requests it would release wait while slots go unused. An environment
    that keeps receiving batches takes its own groups when they are due; the wake message stays the guarantee
    (it finds what is left, or nothing, at the cost of a read). Memory only: a new environment starts empty."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[float, str]] = {}  # group: (due, the queue's ARN)

    def opened(self, group: str, event_source_arn: str, due: float) -> None:
        """The earlier due wins: the wake written first is the one the group waits for."""
        known = self._due.get(group)
        if known is None or due < known[0]:
            self._due[group] = (due, event_source_arn)

    def due(self, now: float) -> list[tuple[str, str]]:
        """(group, ARN) of the groups due at `now`, the longest waiting first."""
        ready = sorted((due, group, arn) for group, (due, arn) in self._due.items() if due <= now)
        return [(group, arn) for _, group, arn in ready]

    def taken(self, group: str) -> None:
        self._due.pop(group, None)


def group_of(event_source_arn: str, content: Content) -> str:
    """Requests of one content on one queue: what one wake releases and one merged call may carry. Only what a
    request is decides its group, never a setting (the lanes): a wake of a group must find the group's requests
    whatever was deployed since they were pooled (a taken request also stays in the group it was taken from)."""
    text = "\x1f".join((event_source_arn, content.title, content.summary, content.deeplink or ""))
    return f"content:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


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


def wake_token(message: InboundMessage) -> str | None:
    value = message.message_attributes.get(WAKE_TOKEN_ATTRIBUTE, {}).get("stringValue")
    return value if isinstance(value, str) and value else None


class Received(Protocol):
    """A record of a batch (`fate.Track`), as far as reading its wakes needs it."""

    message: InboundMessage

    def wake(self, reason: str) -> None: ...


def wakes_of[R: Received](tracks: Iterable[R]) -> list[tuple[R, str]]:
    """The wakes among `tracks` with their groups, one a group: the others are acknowledged. A wake overdue by two
    windows is presumed lost and written again, so a slow queue may deliver several of one group together; each
    read of the group again would cost the time its claims need, and a few of them can spend the invocation before
    its calls (then the wakes come back together after the visibility timeout, and again).

    The one kept of several takes its group without its token: whichever of them the group's armed token names,
    the group is this batch's to take, and with its own token the kept one could find itself obsolete beside the
    very wake acknowledged here, leaving the group armed with no wake message left (`PendingPool.disarm`)."""
    first: dict[str, R] = {}
    for track in tracks:
        if (group := wake_group(track.message)) is None or first.setdefault(group, track) is track:
            continue
        track.wake("its group is taken by another wake of this batch")
        kept = first[group]
        if WAKE_TOKEN_ATTRIBUTE in kept.message.message_attributes:
            attributes = {k: v for k, v in kept.message.message_attributes.items() if k != WAKE_TOKEN_ATTRIBUTE}
            kept.message = kept.message._replace(message_attributes=attributes)
    return [(track, group) for group, track in first.items()]


def wake_body(group: str) -> str:
    """Readable in the console or a DLQ listing: a wake holds no request and no recipient."""
    return json.dumps({_WAKE_FIELD: group, "about": _WAKE_ABOUT})


def decode_legacy_copy(key: str, text: str) -> PendingCopy:
    """A copy pooled, before the item held its parts apart, as one JSON text (read so that a deploy loses none
    of what waits; nothing is written so any more: JSON's escapes could double a body past an item's limit)."""
    data = json.loads(text)
    attributes = {
        name: {**value, "BinaryValue": base64.b64decode(value["BinaryValue"])} if "BinaryValue" in value else value
        for name, value in data["attributes"].items()
    }
    return PendingCopy(key, data["body"], attributes, data["arn"], data["sent"])


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    """SendMessage's attribute shape into the lower-camel shape Lambda delivers."""
    out: dict[str, Any] = {"dataType": value.get("DataType", "String")}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        binary = value["BinaryValue"]
        out["binaryValue"] = base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary
    return out


def new_token() -> str:
    return uuid.uuid4().hex


def rotated(keys: Sequence[str], after: str | None) -> list[str]:
    """Sorted `keys` from the first one after `after`, wrapping round to the first ones."""
    if after is None:
        return list(keys)
    return [k for k in keys if k > after] + [k for k in keys if k <= after]


class InProcessPendingPool:
    """The same semantics in memory, for local runs without a table."""

    def __init__(self, *, shared: bool = True) -> None:
        self.shared = shared  # its executions share this object (tests), or a local run's lone process
        self._groups: dict[str, dict[str, PendingCopy]] = {}
        self._wakes: dict[str, tuple[float, str | None, str]] = {}  # due, its writer while being written, its token
        self._cursors: dict[str, str] = {}  # the last key of a take that did not take the whole group
        self._arriving: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, group: str, copies: Sequence[PendingCopy], *, now: float) -> None:
        with self._lock:
            self._groups.setdefault(group, {}).update((c.key, c) for c in copies)

    def take(self, group: str, *, limit: int) -> list[PendingCopy]:
        with self._lock:
            pooled = self._groups.get(group, {})
            keys = rotated(sorted(pooled), self._cursors.get(group))[:limit]
            if len(keys) >= limit:
                self._cursors[group] = keys[-1]
            return [pooled[k] for k in keys]

    def remove(self, group: str, keys: Collection[str]) -> None:
        with self._lock:
            pooled = self._groups.get(group, {})
            for key in keys:
                pooled.pop(key, None)

    def arm(self, group: str, *, wake_at: float, stale_before: float, now: float) -> str | None:
        with self._lock:
            armed = self._wakes.get(group)
            token = new_token()
            if armed is not None and stale_before <= armed[0] <= wake_at:
                return None if armed[1] is None else token
            self._wakes[group] = (wake_at, token, token)
            return token

    def written(self, group: str, token: str) -> None:
        with self._lock:
            armed = self._wakes.get(group)
            if armed is not None and armed[1] == token:
                self._wakes[group] = (armed[0], None, token)

    def abandon(self, group: str, token: str) -> None:
        with self._lock:
            armed = self._wakes.get(group)
            if armed is not None and armed[1] == token:
                del self._wakes[group]

    def disarm(self, group: str, token: str | None = None, *, if_armed: bool = False) -> bool:
        with self._lock:
            armed = self._wakes.get(group)
            if armed is None:
                return not if_armed
            if token is not None and armed[1] is None and armed[2] != token:
                return False
            del self._wakes[group]
            return True

    def armed(self, group: str) -> float | None:
        with self._lock:
            armed = self._wakes.get(group)
            return armed[0] if armed is not None and armed[1] is None else None

    def announce(self, groups: Collection[str], *, until: float, now: float) -> None:
        with self._lock:
            self._arriving.update((group, until) for group in groups)

    def state(self, group: str) -> GroupState:
        with self._lock:
            armed = self._wakes.get(group)
            wake_at = armed[0] if armed is not None and armed[1] is None else None
            return GroupState(wake_at, self._arriving.get(group))

    def pooled(self, group: str) -> int:
        with self._lock:
            return len(self._groups.get(group, {}))
