"""Publishing notification requests: the producers' side of the queue, shipped in the same layer.

A producer (order system, CRM job, another Lambda) fires a push by sending one SQS message and forgetting about
it. If that message is malformed, the dispatcher can only dead-letter it minutes later, far from the code that
built it. So every body is checked here, before SQS is called, with the very schema and rules the dispatcher
applies (`imshop_push.parsing.parse_body`): poison is stopped at its source, as an exception in the producer.

Usage::

    import boto3
    from datetime import UTC, datetime, timedelta
    from imshop_push.publisher import NotificationDraft, publish_notification, publish_notifications

    sqs = boto3.client("sqs")
    message_id = publish_notification(
        sqs,
        queue_url,
        user_ids=["79991234567"],
        title="Заказ №123 передан в доставку",
        summary="Курьер привезёт заказ завтра до 14:00",
        deeplink="myshop://orders/123",
        idempotency_key="order-123-shipped",  # the same key again is a no-op, not a second push
        expires_at=datetime.now(UTC) + timedelta(hours=6),  # never delivered late
    )

    result = publish_notifications(
        sqs,
        queue_url,
        [NotificationDraft(user_ids=[customer_id], title="Бонусы сгорают", summary=text) for customer_id in ids],
    )
    for failure in result.failed:  # what SQS still refused after retries; nothing is dropped silently
        ...

Only the standard library and the layer are imported at module import time: boto3 is the caller's client, so a
producer that bundles its own boto3 (or a stub in its tests) is never forced to import ours.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imshop_push.parsing import PoisonMessageError, parse_body

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, SendMessageBatchRequestEntryTypeDef

SQS_MAX_BATCH_ENTRIES = 10
SQS_MAX_BATCH_BYTES = 256 * 1024
"""The classic SQS payload limit for one message and for a whole batch. SQS now accepts more, but 256 KiB
keeps batches valid on every queue and emulator; a single larger message is still sent, on its own."""
DEFAULT_MAX_ATTEMPTS = 3
RETRY_BASE_DELAY_SECONDS = 0.2

# Characters SQS accepts in a message body (#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF).
_SQS_FORBIDDEN_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class InvalidNotificationError(ValueError):
    """The request would be dead-lettered by the dispatcher; `reason` names the field and the rule.

    For `publish_notifications`, `index` is the position of the offending draft; nothing was sent.
    """

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        super().__init__(reason if index is None else f"requests[{index}]: {reason}")
        self.reason = reason
        self.index = index


class PublishError(RuntimeError):
    """A SendMessageBatch call failed as a whole, after boto3's own retries.

    Earlier calls may have queued messages already. Publishing everything again would push those twice (unless
    the drafts carry idempotency keys), so `result` tells which drafts were queued and which were not: republish
    `[f.draft for f in result.failed]`.
    """

    def __init__(self, result: PublishResult) -> None:
        super().__init__(
            f"SendMessageBatch failed: {len(result.successful)} message(s) queued, {len(result.failed)} not queued"
        )
        self.result = result


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationDraft:
    """One notification request before it is queued, for batch publishing.

    Sequences of recipients are stored as tuples so a draft stays immutable once built (and can be reused for
    retries without the caller's list changing underneath it).
    """

    user_ids: Sequence[str] = ()
    install_ids: Sequence[str] = ()
    title: str
    summary: str
    deeplink: str | None = None
    idempotency_key: str | None = None
    expires_at: datetime | str | None = None
    message_attributes: Mapping[str, MessageAttributeValueTypeDef] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_ids", _recipient_tuple(self.user_ids, "userIds"))
        object.__setattr__(self, "install_ids", _recipient_tuple(self.install_ids, "installIds"))

    def to_body(self) -> dict[str, Any]:
        """The JSON document the dispatcher expects; unset optional fields are left out, as the schema wants
        (`deeplink: null` is rejected, exactly as IMSHOP's own validator would)."""
        body: dict[str, Any] = {}
        if self.user_ids:
            body["userIds"] = list(self.user_ids)
        if self.install_ids:
            body["installIds"] = list(self.install_ids)
        body["message"] = {"title": self.title, "summary": self.summary}
        if self.deeplink is not None:
            body["deeplink"] = self.deeplink
        if self.idempotency_key is not None:
            body["idempotencyKey"] = self.idempotency_key
        if self.expires_at is not None:
            body["expiresAt"] = _format_expiry(self.expires_at)
        return body

    def to_json(self) -> str:
        """The validated message body; raises `InvalidNotificationError` for what the dispatcher would reject."""
        try:
            text = json.dumps(self.to_body(), ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise InvalidNotificationError(f"body: cannot be serialized as JSON ({e})") from None
        if _SQS_FORBIDDEN_CHARACTERS.search(text):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate is no text at all: neither SQS nor IMSHOP (UTF-8 JSON) could carry it.
                raise InvalidNotificationError(
                    f"{_path_of_invalid_text(self.to_body())}: contains a lone surrogate, which is not valid Unicode"
                ) from None
            # SQS refuses a few valid code points (U+FFFE, U+FFFF) in a body; \u escapes carry them as JSON.
            text = json.dumps(self.to_body(), ensure_ascii=True, separators=(",", ":"))
        try:
            parse_body(text, message_id="local")
        except PoisonMessageError as e:
            raise InvalidNotificationError(e.reason) from None
        return text


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    index: int
    """Position of the draft in the `requests` passed to `publish_notifications`."""
    message_id: str


@dataclass(frozen=True, slots=True)
class FailedMessage:
    index: int
    draft: NotificationDraft
    code: str
    """SQS's error code, e.g. `InvalidParameterValue`, `InternalError`."""
    message: str
    sender_fault: bool
    """True: SQS will refuse this entry again as it is. False: not the entry's fault (SQS's side, or the whole call
    failed); it was retried where that made sense, and publishing it again may succeed."""
    attempts: int


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What SQS accepted and what it refused, each in the order of the drafts."""

    successful: tuple[PublishedMessage, ...]
    failed: tuple[FailedMessage, ...]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def message_ids(self) -> list[str]:
        return [p.message_id for p in self.successful]


def publish_notification(
    sqs_client: SQSClient,
    queue_url: str,
    *,
    user_ids: Sequence[str] = (),
    install_ids: Sequence[str] = (),
    title: str,
    summary: str,
    deeplink: str | None = None,
    idempotency_key: str | None = None,
    expires_at: datetime | str | None = None,
    message_attributes: Mapping[str, MessageAttributeValueTypeDef] | None = None,
) -> str:
    """Validate and queue one notification request; return its SQS MessageId.

    Raises `InvalidNotificationError` without calling SQS when the dispatcher would reject the request, and lets
    boto3's own errors through (they already carry boto3's retries).
    """
    draft = NotificationDraft(
        user_ids=user_ids,
        install_ids=install_ids,
        title=title,
        summary=summary,
        deeplink=deeplink,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        message_attributes=message_attributes,
    )
    body = draft.to_json()
    if draft.message_attributes:
        response = sqs_client.send_message(
            QueueUrl=queue_url, MessageBody=body, MessageAttributes=dict(draft.message_attributes)
        )
    else:
        response = sqs_client.send_message(QueueUrl=queue_url, MessageBody=body)
    return response["MessageId"]


def publish_notifications(
    sqs_client: SQSClient,
    queue_url: str,
    requests: Sequence[NotificationDraft],
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishResult:
    """Validate all drafts, then queue them with SendMessageBatch (10 per call, within SQS's batch size).

    All drafts are validated first, so one bad draft stops the whole publication before any message exists:
    a half-published campaign is harder to repair than one that never started. Entries SQS refuses on its own
    side (`SenderFault` false: throttling, internal errors) are retried up to `max_attempts` in all, with a
    short backoff; entries refused for what they are are reported at once. A call that fails as a whole (no
    such queue, no permission, network gone after boto3's retries) raises `PublishError`; messages of earlier
    calls have been queued by then, so the `PublishError` raised carries which drafts were and were not queued.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    bodies = []
    for index, draft in enumerate(requests):
        try:
            bodies.append(draft.to_json())
        except InvalidNotificationError as e:
            raise InvalidNotificationError(e.reason, index=index) from None

    successful: dict[int, PublishedMessage] = {}
    failed: dict[int, FailedMessage] = {}
    pending = list(range(len(requests)))
    for attempt in range(1, max_attempts + 1):
        if attempt > 1:
            sleep(RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 2))
        retry: list[int] = []
        chunks = _chunks(pending, requests, bodies)
        for position, chunk in enumerate(chunks):
            entries = [_batch_entry(i, bodies[i], requests[i]) for i in chunk]
            try:
                response = sqs_client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except Exception as e:
                unsent = [i for c in chunks[position:] for i in c]
                for index in unsent:
                    failed[index] = FailedMessage(
                        index=index,
                        draft=requests[index],
                        code=_error_code(e),
                        message=str(e),
                        sender_fault=False,
                        attempts=attempt,
                    )
                partial = PublishResult(
                    successful=tuple(successful[i] for i in sorted(successful)),
                    failed=tuple(failed[i] for i in sorted(failed)),
                )
                raise PublishError(partial) from e
            for ok in response.get("Successful", []):
                index = int(ok["Id"])
                successful[index] = PublishedMessage(index, ok["MessageId"])
                failed.pop(index, None)
            for error in response.get("Failed", []):
                index = int(error["Id"])
                failed[index] = FailedMessage(
                    index=index,
                    draft=requests[index],
                    code=error["Code"],
                    message=error.get("Message", ""),
                    sender_fault=error["SenderFault"],
                    attempts=attempt,
                )
                if not error["SenderFault"]:
                    retry.append(index)
        if not retry:
            break
        pending = sorted(retry)
    return PublishResult(
        successful=tuple(successful[i] for i in sorted(successful)),
        failed=tuple(failed[i] for i in sorted(failed)),
    )


def _batch_entry(index: int, body: str, draft: NotificationDraft) -> SendMessageBatchRequestEntryTypeDef:
    # The position doubles as the entry Id: unique in the batch, and SQS's answer maps straight back to a draft.
    entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(index), "MessageBody": body}
    if draft.message_attributes:
        entry["MessageAttributes"] = dict(draft.message_attributes)
    return entry


def _chunks(indexes: list[int], drafts: Sequence[NotificationDraft], bodies: list[str]) -> list[list[int]]:
    """At most 10 entries and 256 KiB per call: a batch over the size limit fails as a whole, not per entry."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index in indexes:
        entry_size = _payload_size(bodies[index], drafts[index].message_attributes)
        if current and (len(current) == SQS_MAX_BATCH_ENTRIES or size + entry_size > SQS_MAX_BATCH_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(index)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


def _payload_size(body: str, attributes: Mapping[str, MessageAttributeValueTypeDef] | None) -> int:
    """SQS counts the body plus each attribute's name, data type and value."""
    size = len(body.encode("utf-8", "surrogatepass"))
    for name, attribute in (attributes or {}).items():
        size += len(name.encode()) + len(attribute.get("DataType", "").encode())
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        size += len(value.encode()) if isinstance(value, str) else len(value) if isinstance(value, bytes) else 0
    return size


def _path_of_invalid_text(value: Any, path: str = "") -> str:
    """The field holding text UTF-8 cannot encode, spelled as the dispatcher spells field paths."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return ""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _path_of_invalid_text(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}".lstrip("."))
        if found:
            return found
    return ""


def _error_code(error: Exception) -> str:
    """botocore's ClientError carries SQS's code; anything else (network, credentials) is named by its type."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str) and code:
            return code
    return type(error).__name__


def _recipient_tuple(value: Sequence[str], name: str) -> tuple[str, ...]:
    # A bare string is a Sequence[str] too: "79991234567" would silently become eleven one-digit recipients.
    if isinstance(value, (str, bytes)):
        raise InvalidNotificationError(f"{name}: must be a list of strings, not a single string")
    try:
        return tuple(value)
    except TypeError:
        raise InvalidNotificationError(f"{name}: must be a list of strings") from None


def _format_expiry(value: datetime | str) -> str:
    """RFC 3339 in UTC with `Z`: an instant no reader can misplace in another time zone."""
    if isinstance(value, str):
        return value  # checked by the dispatcher's own rule in `to_json`
    if not isinstance(value, datetime):
        raise InvalidNotificationError(
            f"expiresAt: must be a timezone-aware datetime or an RFC 3339 string, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidNotificationError(
            "expiresAt: must be a timezone-aware datetime (a naive one has no defined instant), "
            "e.g. datetime.now(UTC) + timedelta(hours=6)"
        )
    return value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"
