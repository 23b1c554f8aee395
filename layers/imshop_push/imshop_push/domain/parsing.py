"""From an SQS message body to a `NotificationRequest`, or a reason a person can act on.

A body is the notification request itself, or an envelope holding it: an EventBridge event (an object with `id`,
`source`, `detail-type` and `detail`) whose `detail` is the request, or an SNS notification (`"Type":
"Notification"`) whose `Message` string is the request's JSON. Envelopes may nest (SNS carrying an EventBridge
event). The idempotency key is the request's `idempotencyKey`; without one, the innermost envelope id, because
that is what stays the same when EventBridge or SNS redeliver the same event under a new SQS message id; then
the message's `idempotencyKey` attribute; then the SQS message id. `storable_key` maps each to what is stored.

A body may also be a cancel (`cancels.py`), in the same envelopes. Whatever a body holds, parsing it either
yields a request (or a cancel) or raises `PoisonMessageError`: one record's body never fails the batch it came in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from typing import Any

from aws_lambda_powertools.utilities.validation.exceptions import SchemaValidationError

from imshop_push.domain import aws_messages
from imshop_push.domain.cancels import cancel_problem, is_cancel
from imshop_push.domain.model import (
    DEFAULT_FALLBACK_AFTER_SECONDS,
    Cancel,
    Content,
    Fallback,
    Inbox,
    NotificationRequest,
    Recipient,
    RecipientField,
)
from imshop_push.domain.schema_reasons import describe_schema_error, join_path, json_type
from imshop_push.domain.validation import validate_request

MAX_ENVELOPE_DEPTH = 3
MAX_CONTENT_BYTES = 3500  # of the 4 KB APNs/FCM payload; the rest is for the platforms' and IMSHOP's envelope
MAX_KEY_BYTES = 1024
"""Longer keys (in UTF-8) are stored hashed. The schema's 256 characters are at most 1024 bytes, so every key it
accepts is stored as given; DynamoDB refuses a partition key over 2048 bytes, `request#` included."""
HASHED_KEY_PREFIX = "sha256:"
_HASHED_KEY = re.compile(r"sha256:[0-9a-f]{64}")
# What SQS accepts in a message attribute (the dispatcher carries keys as one): XML 1.0 characters.
_SQS_REFUSED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
RECIPIENT_FIELDS: tuple[RecipientField, ...] = ("userIds", "installIds")


class PoisonMessageError(Exception):
    """The message can never succeed; `reason` says what to fix, naming the field and the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_body(body: str, *, message_id: str, key_attribute: str | None = None) -> NotificationRequest:
    """`parse_message` for a body that must be a request."""
    parsed = parse_message(body, message_id=message_id, key_attribute=key_attribute)
    if isinstance(parsed, Cancel):
        raise PoisonMessageError("body: is a cancel, not a notification request")
    return parsed


def parse_message(body: str, *, message_id: str, key_attribute: str | None = None) -> NotificationRequest | Cancel:
    """Parse, unwrap and validate one SQS message body; raise `PoisonMessageError` if it can never be sent.

    `key_attribute` is the message's `idempotencyKey` attribute: the dispatcher puts it on copies it writes back to
    SQS whose key was their SQS message id, so that the copy (a new message id) is still the same request.
    """
    try:
        return _parse(body, message_id, key_attribute)
    except PoisonMessageError:
        raise
    except RecursionError:
        # The JSON decoder (or a repr of what it built) ran out of stack: no request nests more than three levels.
        raise PoisonMessageError("body: JSON nested too deeply (a notification request is at most 3 levels)") from None
    except Exception as e:  # whatever one body does, it must not fail the rest of the batch
        # The type only: an exception's text may quote the body (recipients), and the dead letter has the body.
        raise PoisonMessageError(f"body: cannot be parsed ({type(e).__name__})") from None


def poison_key(body: str, *, message_id: str, key_attribute: str | None = None) -> str:
    """The key a body that is not a valid request would have had, as far as it can be told: its idempotencyKey
    when it names one as a string, else the envelope's id, the key attribute, or the SQS message id. A status
    lookup finds its dead letter under it."""
    default = key_attribute or message_id
    try:
        request, envelope_id, _ = _unwrap(json.loads(body))
    except Exception:  # whatever the body is, it has a key: the default one
        return storable_key(default)
    key = request.get("idempotencyKey")
    return storable_key(key if isinstance(key, str) and key else envelope_id or default)


def storable_key(key: str) -> str:
    """The form of an idempotency key the state table and SQS attributes can hold: the key itself, or
    `sha256:<hex>` of its UTF-8 when it is longer than `MAX_KEY_BYTES`, holds what SQS refuses in an attribute
    (or a lone surrogate), or starts with the prefix without being such a hash.

    Stable (the same key always gives the same stored key) and idempotent: the dispatcher writes the stored key
    back as an attribute on copies, which must come back as themselves. Two keys share a stored key only when
    one of them is that stored key itself (or SHA-256 collides).
    """
    if len(key) <= MAX_KEY_BYTES and key.isascii() and key.isprintable() and not key.startswith(HASHED_KEY_PREFIX):
        return key  # the common case, without encoding or regex
    if _HASHED_KEY.fullmatch(key):
        return key
    data = key.encode("utf-8", "surrogatepass")
    if len(data) > MAX_KEY_BYTES or key.startswith(HASHED_KEY_PREFIX) or _SQS_REFUSED.search(key):
        return HASHED_KEY_PREFIX + hashlib.sha256(data).hexdigest()
    return key


def _parse(body: str, message_id: str, key_attribute: str | None) -> NotificationRequest | Cancel:
    try:
        document = json.loads(body)
    except json.JSONDecodeError as e:
        raise PoisonMessageError(f"body: is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    request, envelope_id, event = _unwrap(document)
    root = "detail" if event is not None else ""
    if is_cancel(request):
        if (problem := cancel_problem(request, root)) is not None:
            raise PoisonMessageError(problem)
        return Cancel(message_id, storable_key(request["cancel"]["idempotencyKey"]))
    try:
        validate_request(request)
    except SchemaValidationError as e:
        reason = describe_schema_error(e, root=root)
        unwrapped = envelope_id is not None or event is not None
        raise PoisonMessageError(_explain(request, event, unwrapped, reason)) from None
    return _build(request, message_id=message_id, default_key=envelope_id or key_attribute, root=root)


def _unwrap(document: Any) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
    """The request, the innermost envelope's id (an outer one's when it has none), and the EventBridge event when
    the innermost envelope is one."""
    envelope_id: str | None = None
    event: dict[str, Any] | None = None
    where = "body"
    for _ in range(MAX_ENVELOPE_DEPTH):
        if not isinstance(document, dict):
            raise PoisonMessageError(aws_messages.describe_non_object(where, document, json_type(document)))
        if _is_eventbridge_event(document):
            envelope_id = _envelope_id(document["id"]) or envelope_id
            event = document
            document = document["detail"]
            if not isinstance(document, dict):
                reason = f"detail: must be a JSON object (the notification request), got {json_type(document)}"
                raise PoisonMessageError(aws_messages.describe_event(event, reason) or reason)
        elif _is_sns_notification(document):
            envelope_id = _envelope_id(document["MessageId"]) or envelope_id
            event = None
            message = document["Message"]
            if not isinstance(message, str):
                raise PoisonMessageError("Message: must be a string holding the notification request as JSON")
            try:
                document = json.loads(message)
            except json.JSONDecodeError as e:
                raise PoisonMessageError(aws_messages.describe_text_notification(document, e.msg)) from None
            where = "Message"
        else:
            return document, envelope_id, event
    raise PoisonMessageError(f"body: more than {MAX_ENVELOPE_DEPTH} nested envelopes")


def _envelope_id(value: Any) -> str | None:
    """Only a non-empty string identifies an event: `str()` of anything else would make unrelated events equal."""
    return value if isinstance(value, str) and value else None


def _explain(request: dict[str, Any], event: dict[str, Any] | None, unwrapped: bool, reason: str) -> str:
    """A message an AWS service put on the queue by itself is named as such, with what to do about it."""
    if not request and not unwrapped:
        return aws_messages.describe_empty_body(reason)
    described = aws_messages.describe(request) if request else None
    if described is None and event is not None:
        described = aws_messages.describe_event(event, reason)
    return described or reason


def _is_eventbridge_event(document: dict[str, Any]) -> bool:
    return "detail" in document and "detail-type" in document and "source" in document and "id" in document


def _is_sns_notification(document: dict[str, Any]) -> bool:
    return document.get("Type") == "Notification" and "Message" in document and "MessageId" in document


def _build(request: dict[str, Any], *, message_id: str, default_key: str | None, root: str) -> NotificationRequest:
    recipients: dict[Recipient, None] = {}
    for field in RECIPIENT_FIELDS:
        for recipient_id in request.get(field, ()):
            recipients[(field, recipient_id)] = None
    if not recipients:
        raise PoisonMessageError(
            f"{join_path(root, 'userIds')}: at least one recipient is required in userIds or installIds"
        )
    content = _content(request, join_path(root, "message"))
    fallback = _fallback(request["fallback"], join_path(root, "fallback")) if "fallback" in request else None
    expires_at = _parse_expiry(request["expiresAt"], join_path(root, "expiresAt")) if "expiresAt" in request else None
    created_at = _parse_expiry(request["createdAt"], join_path(root, "createdAt")) if "createdAt" in request else None
    send_at = _parse_expiry(request["sendAt"], join_path(root, "sendAt")) if "sendAt" in request else None
    try:
        fingerprint = _fingerprint(content, request.get("userIds", ()), request.get("installIds", ()), fallback)
    except UnicodeEncodeError:
        # JSON allows "\ud800"; UTF-8 (and so IMSHOP) does not. It can never be sent.
        raise PoisonMessageError(
            f"{root or 'body'}: contains an unpaired UTF-16 surrogate (text must be valid Unicode)"
        ) from None
    key = request.get("idempotencyKey") or default_key
    return NotificationRequest(
        message_id=message_id,
        idempotency_key=storable_key(key or message_id),
        content=content,
        recipients=tuple(recipients),
        expires_at=expires_at,
        fingerprint=fingerprint,
        key_is_message_id=not key,
        collapse_key=request.get("collapseKey"),
        created_at=created_at,
        inbox=_inbox(request) if "userIds" in request else None,
        send_at=send_at,
        fallback=fallback,
    )


def _content(holder: dict[str, Any], path: str) -> Content:
    """The request's own text, or its fallback's: the same rules, the same bound of one push's payload."""
    message = holder["message"]
    content = Content(message["title"], message["summary"], holder.get("deeplink"))
    if len(content.title) + len(content.summary) + len(content.deeplink or "") > MAX_CONTENT_BYTES // 4:
        size = len(f"{content.title}{content.summary}{content.deeplink or ''}".encode(errors="surrogatepass"))
        if size > MAX_CONTENT_BYTES:
            raise PoisonMessageError(
                f"{path}: title, summary and deeplink together are {size} bytes in UTF-8; at most"
                f" {MAX_CONTENT_BYTES} fit a push (APNs and FCM cap the whole payload at 4 KB)"
            )
    return content


def _fallback(fallback: dict[str, Any], path: str) -> Fallback:
    after = fallback.get("afterSeconds", DEFAULT_FALLBACK_AFTER_SECONDS)
    if isinstance(after, float):  # 60.0 is JSON's 60; 60.5 the schema refused already
        after = int(after)
    return Fallback(_content(fallback, join_path(path, "message")), after)


def _inbox(request: dict[str, Any]) -> Inbox | None:
    """Only a request to users has a history to show it in; an empty `inbox` adds nothing."""
    inbox = request.get("inbox") or {}
    url, promocode = inbox.get("url"), inbox.get("promocode")
    return Inbox(url, promocode) if url is not None or promocode is not None else None


def _fingerprint(
    content: Content, user_ids: Sequence[str], install_ids: Sequence[str], fallback: Fallback | None = None
) -> str:
    """Identifies what is forwarded (the content and the set of recipients of each kind), not the extensions.

    Recipients are a set, as IMSHOP is sent them: the same recipients in another order, or one named twice, is the
    same request (a producer's retry from another process may list a set in another order). Sorted and unique
    lists hash exactly as they did when the order counted, so such requests keep their stored fingerprints.
    A JSON array of the fields is unambiguous and the C encoder makes it cheap: hashing the canonical JSON of the
    whole request (sorted keys) was a tenth of the handler's time per record (make bench). The fallback is
    forwarded too (instead of the content), so it is part of what the key names.
    """
    fields: list[object] = [content.title, content.summary, content.deeplink, _as_set(user_ids), _as_set(install_ids)]
    if fallback is not None:  # only then: a request without one keeps the fingerprint stored before fallbacks
        text_of = fallback.content
        fields.append([text_of.title, text_of.summary, text_of.deeplink, fallback.after_seconds])
    text = _ENCODE(fields)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _as_set(ids: Sequence[str]) -> Sequence[str]:
    if all(a < b for a, b in pairwise(ids)):  # the common case: one id, or already in order
        return ids
    return sorted(set(ids))


def _parse_expiry(value: str, field: str) -> datetime:
    """RFC 3339 section 5.6 exactly: ISO 8601's other spellings (week dates, basic format) are refused."""
    if not RFC3339.fullmatch(value):
        raise PoisonMessageError(f"{field}: must be an RFC 3339 timestamp with a time zone, e.g. 2026-12-01T18:00:00Z")
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:  # matches the shape but is no date, e.g. month 13
        raise PoisonMessageError(f"{field}: {value!r} is not a valid date and time") from None
