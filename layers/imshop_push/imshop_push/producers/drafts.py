"""A notification request as a producer builds it, checked before it is queued with the very schema and rules
the dispatcher applies (`imshop_push.domain.parsing.parse_body`): poison is stopped at its source, as an exception in
the producer. Standard library and the layer only, like the publisher that ships it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imshop_push.domain.cancels import CANCEL_FIELD, KEY_FIELD
from imshop_push.domain.model import NotificationRequest
from imshop_push.domain.parsing import PoisonMessageError, parse_body, parse_message
from imshop_push.domain.send_time import SendTime
from imshop_push.domain.sqs_batches import SQS_MAX_MESSAGE_BYTES, payload_size
from imshop_push.domain.sqs_copies import RESERVED_ATTRIBUTES

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

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


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackText:
    """The request field `fallback`: a text shared with other requests, which its recipients get instead of its
    own when its own call cannot start within `after_seconds` of its being due (the dispatcher's default: 60)."""

    title: str
    summary: str
    deeplink: str | None = None
    after_seconds: int | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": {"title": self.title, "summary": self.summary}}
        if self.deeplink is not None:
            body["deeplink"] = self.deeplink
        if self.after_seconds is not None:
            body["afterSeconds"] = self.after_seconds
        return body


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
    collapse_key: str | None = None
    created_at: datetime | str | None = None
    send_at: datetime | str | None = None
    """Not sent before this instant (at most the stack's state TTL ahead, 14 days by default)."""
    fallback: FallbackText | None = None
    """Sent instead of its own text when its own call cannot start in time (`FallbackText`)."""
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
            body["expiresAt"] = _format_instant(self.expires_at, "expiresAt")
        if self.send_at is not None:
            body["sendAt"] = _format_instant(self.send_at, "sendAt")
        if self.collapse_key is not None:
            body["collapseKey"] = self.collapse_key
        if self.created_at is not None:
            body["createdAt"] = _format_instant(self.created_at, "createdAt")
        if self.fallback is not None:
            body["fallback"] = self.fallback.to_body()
        return body

    def to_json(self) -> str:
        """The validated message body; raises `InvalidNotificationError` for what the dispatcher would reject."""
        return self._validated()[0]

    def _validated(self) -> tuple[str, NotificationRequest]:
        document = self.to_body()
        try:
            text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise InvalidNotificationError(f"body: cannot be serialized as JSON ({e})") from None
        if _SQS_FORBIDDEN_CHARACTERS.search(text):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate is no text at all: neither SQS nor IMSHOP (UTF-8 JSON) could carry it.
                raise InvalidNotificationError(
                    f"{_path_of_invalid_text(document)}: contains a lone surrogate, which is not valid Unicode"
                ) from None
            # SQS refuses a few valid code points (U+FFFE, U+FFFF) in a body; \u escapes carry them as JSON.
            text = json.dumps(document, ensure_ascii=True, separators=(",", ":"))
        try:
            return text, parse_body(text, message_id="local")
        except PoisonMessageError as e:
            raise InvalidNotificationError(e.reason) from None


def checked_message(draft: NotificationDraft, *, now: float, send_time: SendTime) -> str:
    """The body of `draft` once every rule is checked that would make the message poison or SQS refuse it: the
    dispatcher's schema and rules, its `sendAt` horizon (`send_time`, the stack's state TTL), SQS's size limit for
    the body with its attributes, and no attribute name the dispatcher reserves. Raises `InvalidNotificationError`.
    """
    reserved = sorted(RESERVED_ATTRIBUTES.intersection(draft.message_attributes or {}))
    if reserved:
        raise InvalidNotificationError(
            f"message_attributes: {', '.join(reserved)} is reserved: the dispatcher writes these names on its own"
            " copies and reads them back (give the key as idempotency_key)"
        )
    body, request = draft._validated()
    if (problem := send_time.horizon_problem(now, request.send_at)) is not None:
        raise InvalidNotificationError(problem)
    size = payload_size({"MessageBody": body, "MessageAttributes": draft.message_attributes or {}})
    if size > SQS_MAX_MESSAGE_BYTES:
        raise InvalidNotificationError(
            f"body: {size} bytes with its message attributes; SQS takes at most {SQS_MAX_MESSAGE_BYTES} in one message"
            f" (split the {len(request.recipients)} recipients over several requests)"
        )
    return body


def cancel_body(idempotency_key: str) -> str:
    """The body of a cancel, checked with the dispatcher's own rule."""
    if not isinstance(idempotency_key, str):
        raise InvalidNotificationError(f"cancel.idempotencyKey: must be a string, got {type(idempotency_key).__name__}")
    text = json.dumps({CANCEL_FIELD: {KEY_FIELD: idempotency_key}}, ensure_ascii=True, separators=(",", ":"))
    try:
        parse_message(text, message_id="local")
    except PoisonMessageError as e:
        raise InvalidNotificationError(e.reason) from None
    return text


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


def _recipient_tuple(value: Sequence[str], name: str) -> tuple[str, ...]:
    # A bare string is a Sequence[str] too: "79991234567" would silently become eleven one-digit recipients.
    if isinstance(value, (str, bytes)):
        raise InvalidNotificationError(f"{name}: must be a list of strings, not a single string")
    try:
        return tuple(value)
    except TypeError:
        raise InvalidNotificationError(f"{name}: must be a list of strings") from None


def _format_instant(value: datetime | str, name: str) -> str:
    """RFC 3339 in UTC with `Z`: an instant no reader can misplace in another time zone."""
    if isinstance(value, str):
        return value  # checked by the dispatcher's own rule in `to_json`
    if not isinstance(value, datetime):
        raise InvalidNotificationError(
            f"{name}: must be a timezone-aware datetime or an RFC 3339 string, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidNotificationError(
            f"{name}: must be a timezone-aware datetime (a naive one has no defined instant), "
            "e.g. datetime.now(UTC) + timedelta(hours=6)"
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31 23:00 at -03:00: past year 9999 in UTC, where no timestamp reaches
        raise InvalidNotificationError(
            f"{name}: {value.isoformat()} is outside years 1 to 9999 in UTC, all that an RFC 3339 timestamp can name"
        ) from None
    return utc.isoformat().removesuffix("+00:00") + "Z"
