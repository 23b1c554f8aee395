"""What `make dlq` shows of a dead letter's body: the fields a person needs to recognise it, recipients never.

A poison body is by definition not what the schema expects: recipients may sit anywhere, under any key, or be
keys themselves (`{"79991234567": …}`, `[{"id": "cust-7f3a9b"}]`), and the body may not be JSON at all
(`str(dict)` of a producer's object). So masking works by allowance, not by recognising recipients:

- a JSON body is walked as the dispatcher reads it (a request, a cancel, or an EventBridge / SNS envelope around
  one); only the known non-recipient fields at their known places (`message.title`, `deeplink`, `detail-type`,
  …) are shown, and even their text has phone numbers and id-like words (six characters or more with a digit)
  masked. Every other string or number, and every key that is not a field name of a request or an envelope, is
  masked whole (at most its first two and last two characters stay);
- a body that is not JSON has every word masked except the field names;
- nesting deeper than `MAX_DEPTH` is not shown at all, so a body nested ten thousand levels deep (which the
  dispatcher dead-letters) is listed like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from imshop_push.domain.masking import mask_recipient

MAX_DEPTH: Final = 24
"""Containers shown from the top (nested JSON strings included); a request in three envelopes needs 9."""
DEEPER: Final = "…(nested deeper: not shown)"
DEFAULT_PREVIEW_CHARS: Final = 240


@dataclass(frozen=True, slots=True)
class _Field:
    """A known non-recipient field: how its value is shown. `time`: an RFC 3339 instant is shown as it is;
    `fields`: the value is an object of these fields; `document`: the value is a request or an envelope again
    (EventBridge's `detail`, SNS's `Message`, which is JSON text)."""

    time: bool = False
    fields: Mapping[str, _Field] | None = None
    document: bool = False


_TEXT = _Field()
_TIME = _Field(time=True)
_DOCUMENT = _Field(document=True)
REQUEST_FIELDS: Final[Mapping[str, _Field]] = {
    "message": _Field(fields={"title": _TEXT, "summary": _TEXT}),
    "fallback": _Field(
        fields={"message": _Field(fields={"title": _TEXT, "summary": _TEXT}), "deeplink": _TEXT, "afterSeconds": _TEXT}
    ),
    "deeplink": _TEXT,
    "idempotencyKey": _TEXT,
    "expiresAt": _TIME,
    "sendAt": _TIME,
    "collapseKey": _TEXT,
    "createdAt": _TIME,
    "inbox": _Field(fields={"url": _TEXT, "promocode": _TEXT}),
    "cancel": _Field(fields={"idempotencyKey": _TEXT}),
}
RECIPIENT_FIELDS: Final = frozenset({"userIds", "installIds"})
_EVENTBRIDGE_FIELDS: Final[Mapping[str, _Field]] = {
    **dict.fromkeys(("version", "id", "detail-type", "source", "account", "region", "resources"), _TEXT),
    "time": _TIME,
    "detail": _DOCUMENT,
}
_SNS_FIELDS: Final[Mapping[str, _Field]] = {
    **dict.fromkeys(
        ("Type", "MessageId", "TopicArn", "Subject", "SignatureVersion", "Signature", "SigningCertURL"), _TEXT
    ),
    "UnsubscribeURL": _TEXT,
    "Timestamp": _TIME,
    "Message": _DOCUMENT,
}


def _names(fields: Mapping[str, _Field]) -> set[str]:
    names = set(fields)
    for spec in fields.values():
        names |= _names(spec.fields or {})
    return names


FIELD_NAMES: Final = frozenset(
    _names(REQUEST_FIELDS) | _names(_EVENTBRIDGE_FIELDS) | _names(_SNS_FIELDS) | RECIPIENT_FIELDS
)
"""Keys shown as they are, wherever they appear (their values are judged by where they are)."""

_PHONE = re.compile(r"\+?\d(?:[\s().-]{0,2}\d){6,}")
_WORD = re.compile(r"[^\s'\"{}\[\](),;:=<>/?&|\\]+")
_ID_LIKE_LENGTH = 6
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def preview_body(body: str, limit: int = DEFAULT_PREVIEW_CHARS) -> str:
    """One line, at most `limit` characters, masked before it is cut, so a cut never leaves part of an id
    unmasked."""
    text = mask_body(body)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def mask_body(body: str) -> str:
    document = _load(body)
    if document is _NOT_JSON:
        return mask_words(" ".join(body.split()))
    return _dump(mask_document(document))


def mask_document(value: Any) -> Any:
    """A parsed body with everything masked that is not a known non-recipient field (see the module)."""
    return _document(value, 0)


def mask_text(text: str) -> str:
    """Free text of a known field, or a reason: phone numbers and id-like words masked, the rest readable."""
    text = _PHONE.sub(lambda m: mask_recipient(m.group()), text)
    return _WORD.sub(lambda m: _masked_if_id_like(m.group()), text)


def mask_words(text: str) -> str:
    """Text of unknown meaning: every word masked but the field names."""
    return _WORD.sub(lambda m: m.group() if m.group() in FIELD_NAMES else mask_recipient(m.group()), text)


def _masked_if_id_like(word: str) -> str:
    if len(word) >= _ID_LIKE_LENGTH and any(c.isdigit() for c in word):
        return mask_recipient(word)
    return word


class _NotJson:
    pass


_NOT_JSON: Final = _NotJson()


def _load(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested beyond what the decoder's stack allows
        return _NOT_JSON


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _document(value: Any, depth: int) -> Any:
    """A body, or what an envelope holds: a request (or cancel), or an envelope whose fields are known."""
    if depth >= MAX_DEPTH:
        return DEEPER
    if isinstance(value, dict):
        return _object(value, _fields_of(value), depth + 1)
    if isinstance(value, str):
        stripped = value.lstrip()
        nested = _load(value) if stripped.startswith(("{", "[")) else _NOT_JSON
        return mask_words(value) if nested is _NOT_JSON else _dump(_document(nested, depth + 1))
    return _opaque(value, depth)


def _fields_of(document: dict[str, Any]) -> Mapping[str, _Field]:
    """As the dispatcher unwraps (imshop_push.domain.parsing): an envelope only when it has all its marks."""
    if all(name in document for name in ("detail", "detail-type", "source", "id")):
        return _EVENTBRIDGE_FIELDS
    if document.get("Type") == "Notification" and "Message" in document and "MessageId" in document:
        return _SNS_FIELDS
    return REQUEST_FIELDS


def _object(value: dict[str, Any], fields: Mapping[str, _Field], depth: int) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, item in value.items():
        spec = fields.get(key)
        shown_key = key if key in FIELD_NAMES else mask_recipient(key)
        while shown_key in shown:  # two keys masked alike: both stay
            shown_key += "~"
        shown[shown_key] = _opaque(item, depth) if spec is None else _known(item, spec, depth)
    return shown


def _known(value: Any, spec: _Field, depth: int) -> Any:
    if depth >= MAX_DEPTH:
        return DEEPER
    if spec.document:
        return _document(value, depth)
    if spec.fields is not None:
        return _object(value, spec.fields, depth + 1) if isinstance(value, dict) else _opaque(value, depth)
    if isinstance(value, list):  # EventBridge's resources: a list of ARNs
        return [_known(item, spec, depth + 1) for item in value]
    if isinstance(value, str):
        return value if spec.time and _RFC3339.fullmatch(value) else mask_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = json.dumps(value)
        return value if mask_text(text) == text else mask_recipient(text)
    return _opaque(value, depth)


def _opaque(value: Any, depth: int) -> Any:
    """Where no known field is: strings and numbers masked whole, JSON text inside a string read as a body."""
    if depth >= MAX_DEPTH:
        return DEEPER
    if isinstance(value, dict):
        return _object(value, {}, depth + 1)
    if isinstance(value, list):
        return [_opaque(item, depth + 1) for item in value]
    if isinstance(value, str):
        nested = _load(value) if value.lstrip().startswith(("{", "[")) else _NOT_JSON
        return mask_recipient(value) if nested is _NOT_JSON else _dump(_document(nested, depth + 1))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return mask_recipient(json.dumps(value))
    return value  # true, false, null
