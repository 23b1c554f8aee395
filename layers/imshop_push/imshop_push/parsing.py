"""From an SQS message body to a `NotificationRequest`, or a reason a person can act on.

Three body forms are accepted (SPEC §3): the request itself, an EventBridge event whose `detail` is the
request, and an SNS notification whose `Message` string holds it. Envelopes may nest (SNS carrying an
EventBridge event); the innermost envelope id is the default idempotency key, because that is what stays
the same when EventBridge or SNS redeliver the same event under a new SQS message id.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.validation.exceptions import SchemaValidationError

from imshop_push.model import Content, NotificationRequest, Recipient, RecipientField
from imshop_push.validation import validate_request

MAX_ENVELOPE_DEPTH = 3
MAX_CONTENT_BYTES = 3500  # of the 4 KB APNs/FCM payload; the rest is for the platforms' and IMSHOP's envelope
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
RECIPIENT_FIELDS: tuple[RecipientField, ...] = ("userIds", "installIds")


class PoisonMessageError(Exception):
    """The message can never succeed; `reason` says what to fix, naming the field and the rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_body(body: str, *, message_id: str, key_attribute: str | None = None) -> NotificationRequest:
    """Parse, unwrap and validate one SQS message body; raise `PoisonMessageError` if it can never be sent.

    `key_attribute` is the message's `idempotencyKey` attribute: the dispatcher puts it on dead letters whose key
    was their SQS message id, so that a redriven copy (a new message id) is still the same request.
    """
    try:
        document = json.loads(body)
    except json.JSONDecodeError as e:
        raise PoisonMessageError(f"body: is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    request, envelope_id = _unwrap(document)
    try:
        validate_request(request)
    except SchemaValidationError as e:
        raise PoisonMessageError(describe_schema_error(e)) from None
    return _build(request, message_id=message_id, envelope_id=envelope_id or key_attribute)


def _unwrap(document: Any) -> tuple[dict[str, Any], str | None]:
    envelope_id: str | None = None
    for _ in range(MAX_ENVELOPE_DEPTH):
        if not isinstance(document, dict):
            raise PoisonMessageError(f"body: must be a JSON object, got {_json_type(document)}")
        if _is_eventbridge_event(document):
            envelope_id = str(document["id"])
            document = document["detail"]
            if not isinstance(document, dict):
                raise PoisonMessageError("detail: must be a JSON object (the notification request)")
        elif _is_sns_notification(document):
            envelope_id = str(document["MessageId"])
            message = document["Message"]
            if not isinstance(message, str):
                raise PoisonMessageError("Message: must be a string holding the notification request as JSON")
            try:
                document = json.loads(message)
            except json.JSONDecodeError as e:
                raise PoisonMessageError(f"Message: is not valid JSON ({e.msg})") from None
        else:
            return document, envelope_id
    raise PoisonMessageError(f"body: more than {MAX_ENVELOPE_DEPTH} nested envelopes")


def _is_eventbridge_event(document: dict[str, Any]) -> bool:
    return "detail" in document and "detail-type" in document and "source" in document and "id" in document


def _is_sns_notification(document: dict[str, Any]) -> bool:
    return document.get("Type") == "Notification" and "Message" in document and "MessageId" in document


def _build(request: dict[str, Any], *, message_id: str, envelope_id: str | None) -> NotificationRequest:
    recipients: dict[Recipient, None] = {}
    for field in RECIPIENT_FIELDS:
        for recipient_id in request.get(field, ()):
            recipients[(field, recipient_id)] = None
    if not recipients:
        raise PoisonMessageError("userIds: at least one recipient is required in userIds or installIds")
    message = request["message"]
    content = Content(message["title"], message["summary"], request.get("deeplink"))
    if len(content.title) + len(content.summary) + len(content.deeplink or "") > MAX_CONTENT_BYTES // 4:
        size = len(f"{content.title}{content.summary}{content.deeplink or ''}".encode(errors="surrogatepass"))
        if size > MAX_CONTENT_BYTES:
            raise PoisonMessageError(
                f"message: title, summary and deeplink together are {size} bytes in UTF-8; at most"
                f" {MAX_CONTENT_BYTES} fit a push (APNs and FCM cap the whole payload at 4 KB)"
            )
    expires_at = _parse_expiry(request["expiresAt"]) if "expiresAt" in request else None
    try:
        fingerprint = _fingerprint(content, request.get("userIds", ()), request.get("installIds", ()))
    except UnicodeEncodeError:
        # JSON allows "\ud800"; UTF-8 (and so IMSHOP) does not. It can never be sent.
        raise PoisonMessageError("body: contains an unpaired UTF-16 surrogate (text must be valid Unicode)") from None
    return NotificationRequest(
        message_id=message_id,
        idempotency_key=request.get("idempotencyKey") or envelope_id or message_id,
        content=content,
        recipients=tuple(recipients),
        expires_at=expires_at,
        fingerprint=fingerprint,
        key_is_message_id="idempotencyKey" not in request and envelope_id is None,
    )


def _fingerprint(content: Content, user_ids: Sequence[str], install_ids: Sequence[str]) -> str:
    """Identifies what is forwarded (content and recipients as given), not the extensions.

    A JSON array of the fields is unambiguous and the C encoder makes it cheap: hashing the canonical JSON of the
    whole request (sorted keys) was a tenth of the handler's time per record (make bench).
    """
    text = _ENCODE([content.title, content.summary, content.deeplink, user_ids, install_ids])
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _parse_expiry(value: str) -> datetime:
    """RFC 3339 section 5.6 exactly: ISO 8601's other spellings (week dates, basic format) are refused."""
    if not RFC3339.fullmatch(value):
        raise PoisonMessageError("expiresAt: must be an RFC 3339 timestamp with a time zone, e.g. 2026-12-01T18:00:00Z")
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:  # matches the shape but is no date, e.g. month 13
        raise PoisonMessageError(f"expiresAt: {value!r} is not a valid date and time") from None


def describe_schema_error(error: SchemaValidationError) -> str:
    """Turn fastjsonschema's wording (`data.message must contain [...] properties`) into `field: rule`."""
    path = _path_of(error.path or [])
    rule = error.rule
    value = error.value
    definition = error.definition if isinstance(error.definition, dict) else {}
    if rule == "required" and isinstance(value, dict):
        missing = next((name for name in error.rule_definition or [] if name not in value), "?")
        return f"{_join(path, missing)}: is a required property"
    if rule == "additionalProperties" and isinstance(value, dict):
        allowed = list(definition.get("properties", {}))
        extra = sorted(name for name in value if name not in allowed)
        name = extra[0] if extra else "?"
        hint = difflib.get_close_matches(name, allowed, n=1)
        suggestion = f" (did you mean {hint[0]}?)" if hint else f" (allowed: {', '.join(allowed)})"
        return f"{_join(path, name)}: is not an allowed field{suggestion}"
    where = path or "body"
    if rule == "type":
        return f"{where}: must be {_article(str(error.rule_definition))}, got {_json_type(value)}"
    if rule == "minLength":
        return (
            f"{where}: must not be empty"
            if error.rule_definition == 1
            else (f"{where}: must be at least {error.rule_definition} characters")
        )
    if rule == "maxLength":
        return f"{where}: must be at most {error.rule_definition} characters"
    if rule == "pattern" and path.startswith("deeplink"):
        return f"{where}: must not contain whitespace"
    message = (error.validation_message or "is invalid").removeprefix(error.name or "").strip()
    return f"{where}: {message}"


def _path_of(parts: list[Any]) -> str:
    text = ""
    for part in parts[1:]:  # parts[0] is fastjsonschema's "data"
        text += (
            f"[{part}]"
            if isinstance(part, int) or (isinstance(part, str) and part.isdigit())
            else (f".{part}" if text else str(part))
        )
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _article(json_type: str) -> str:
    return f"an {json_type}" if json_type[:1] in "aeiou" else f"a {json_type}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
