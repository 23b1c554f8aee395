"""Reasons a person can act on, from JSON Schema errors: `field: rule`, with the field's path as the reader of
a dead letter sees it (`detail.message.summary: is a required property`)."""

from __future__ import annotations

import difflib
from typing import Any

from aws_lambda_powertools.utilities.validation.exceptions import SchemaValidationError


def describe_schema_error(error: SchemaValidationError, *, root: str = "") -> str:
    """Turn fastjsonschema's wording (`data.message must contain [...] properties`) into `field: rule`.

    `root` is where the request sits in the body (`detail` in an EventBridge event), so the path names the field
    as the person reading the dead letter sees it.
    """
    field, rule = _field_and_rule(error)
    return f"{join_path(root, field) or 'body'}: {rule}"


def _field_and_rule(error: SchemaValidationError) -> tuple[str, str]:
    path = _path_of(error.path or [])
    rule = error.rule
    value = error.value
    definition = error.definition if isinstance(error.definition, dict) else {}
    if rule == "required" and isinstance(value, dict):
        missing = next((name for name in error.rule_definition or [] if name not in value), "?")
        return join_path(path, missing), "is a required property"
    if rule == "additionalProperties" and isinstance(value, dict):
        allowed = list(definition.get("properties", {}))
        extra = sorted(name for name in value if name not in allowed)
        name = extra[0] if extra else "?"
        hint = difflib.get_close_matches(name, allowed, n=1)
        suggestion = f" (did you mean {hint[0]}?)" if hint else f" (allowed: {', '.join(allowed)})"
        return join_path(path, name), f"is not an allowed field{suggestion}"
    if rule == "type":
        return path, f"must be {_article(str(error.rule_definition))}, got {json_type(value)}"
    if rule == "minLength":
        if error.rule_definition == 1:
            return path, "must not be empty"
        return path, f"must be at least {error.rule_definition} characters"
    if rule == "maxLength":
        return path, f"must be at most {error.rule_definition} characters"
    if rule == "minimum":
        return path, f"must be at least {error.rule_definition}, got {value!r}"
    if rule == "maximum":
        return path, f"must be at most {error.rule_definition}, got {value!r}"
    if rule == "pattern" and path.startswith(("deeplink", "inbox.url", "fallback.deeplink")):
        return path, "must not contain whitespace"
    return path, (error.validation_message or "is invalid").removeprefix(error.name or "").strip()


def _path_of(parts: list[Any]) -> str:
    text = ""
    for part in parts[1:]:  # parts[0] is fastjsonschema's "data"
        text += (
            f"[{part}]"
            if isinstance(part, int) or (isinstance(part, str) and part.isdigit())
            else (f".{part}" if text else str(part))
        )
    return text


def join_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _article(json_type: str) -> str:
    return f"an {json_type}" if json_type[:1] in "aeiou" else f"a {json_type}"


def json_type(value: Any) -> str:
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
