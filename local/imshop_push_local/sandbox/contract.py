"""The IMSHOP push API's request contract, as the vendor documents it: the request shape, 1000
recipients per request and the Joi-style 400 messages. Pure: a body in, the first problem out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

TOP_LEVEL_KEYS: Final = ("userIds", "installIds", "message", "deeplink", "key")
MESSAGE_KEYS: Final = ("title", "summary")
RECIPIENT_KINDS: Final = (("userIds", "user"), ("installIds", "install"))


def validate_request(body: dict[str, Any], max_recipients: int) -> str | None:
    """The first problem in the vendor's Joi wording (Joi stops at the first error), or None."""
    return next((error for error in _request_errors(body, max_recipients) if error), None)


def _request_errors(body: dict[str, Any], max_recipients: int) -> Iterator[str | None]:
    """Lazily, in Joi's order: children in schema order, then unknown keys, then cross-field rules,
    so a typo such as `userId` is reported as not allowed rather than as a missing recipient.

    Zero recipients are refused even though Joi's `or()` would pass two empty arrays: a call that
    reaches nobody still spends rate budget, which is a dispatcher bug worth surfacing.
    """
    for name, _kind in RECIPIENT_KINDS:
        if name in body:
            yield _child(name, _ids_error(name, body[name]))
    if "message" not in body:
        yield '"message" is required'
    else:
        yield _child("message", _message_error(body["message"]))
    for name in ("deeplink", "key"):
        if name in body:
            yield _child(name, _string_error(name, body[name]))
    yield next((f'"{name}" is not allowed' for name in body if name not in TOP_LEVEL_KEYS), None)
    recipients = sum(len(body.get(name, ())) for name, _kind in RECIPIENT_KINDS)
    if recipients == 0:
        yield '"value" must contain at least one of [userIds, installIds]'
    if recipients > max_recipients:
        yield f'"userIds" must contain less than or equal to {max_recipients} items'


def _string_error(label: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f'"{label}" must be a string'
    if not value:
        return f'"{label}" is not allowed to be empty'
    return None


def _ids_error(name: str, value: Any) -> str | None:
    if not isinstance(value, list):
        return f'"{name}" must be an array'
    for position, item in enumerate(value):
        error = _string_error(str(position), item)
        if error:
            return f'"{name}" at position {position} fails because [{error}]'
    return None


def _message_error(value: Any) -> str | None:
    if not isinstance(value, dict):
        return '"message" must be an object'
    for name in MESSAGE_KEYS:
        if name not in value:
            return f'"{name}" is required'
        error = _string_error(name, value[name])
        if error:
            return error
    for name in value:
        if name not in MESSAGE_KEYS:
            return f'"{name}" is not allowed'
    return None


def _child(name: str, error: str | None) -> str | None:
    return None if error is None else f'child "{name}" fails because [{error}]'
