"""The cancel message: `{"cancel": {"idempotencyKey": "<key>"}}`, exactly that, in any envelope a request may
come in. Anything more or less is poison with a reason: a typo must not turn a cancel into nothing."""

from __future__ import annotations

from typing import Any

from imshop_push.domain.schema_reasons import join_path, json_type

CANCEL_FIELD = "cancel"
KEY_FIELD = "idempotencyKey"
MAX_KEY_CHARACTERS = 256  # as a request's idempotencyKey


def is_cancel(document: dict[str, Any]) -> bool:
    return CANCEL_FIELD in document


def cancel_problem(document: dict[str, Any], root: str) -> str | None:
    """Why the cancel can never be applied (field path and rule), or None when it is well formed."""
    path = join_path(root, CANCEL_FIELD)
    others = sorted(str(name) for name in document if name != CANCEL_FIELD)
    if others:
        return f"{path}: a cancel message holds nothing but cancel; unexpected field(s) {', '.join(others)}"
    cancel = document[CANCEL_FIELD]
    if not isinstance(cancel, dict):
        return f'{path}: must be an object {{"idempotencyKey": "<key>"}}, got {json_type(cancel)}'
    unknown = sorted(str(name) for name in cancel if name != KEY_FIELD)
    if unknown:
        return f"{path}: unknown field(s) {', '.join(unknown)} (a cancel names only idempotencyKey)"
    key_path = join_path(path, KEY_FIELD)
    if KEY_FIELD not in cancel:
        return f"{key_path}: is a required property (the key of the request to cancel)"
    key = cancel[KEY_FIELD]
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARACTERS:
        return f"{key_path}: must be a non-empty string of at most {MAX_KEY_CHARACTERS} characters"
    return None
