"""JSON Schema validation of notification requests, compiled once per execution environment.

Powertools' `validate()` hands the schema to `fastjsonschema.validate`, which compiles it on every call
(milliseconds each: seconds for a 10,000-record batch). We compile once and raise Powertools'
`SchemaValidationError` exactly as `validate()` would, so callers and messages stay the same.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
from aws_lambda_powertools.utilities.validation.exceptions import SchemaValidationError

SCHEMA_RESOURCE = "schemas/notification_request.json"


@cache
def request_schema() -> dict[str, Any]:
    """The schema file shipped in the layer: one source of truth for the dispatcher and the publisher."""
    text = resources.files("imshop_push.domain").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _compiled() -> Any:
    return fastjsonschema.compile(request_schema())


def validate_request(data: Any) -> None:
    """Raise `SchemaValidationError` (Powertools) when `data` breaks the schema."""
    try:
        _compiled()(data)
    except fastjsonschema.JsonSchemaValueException as e:
        raise SchemaValidationError(
            f"Failed schema validation. Error: {e.message}, Path: {e.path}, Data: {e.value}",
            validation_message=e.message,
            name=e.name,
            path=e.path,
            value=e.value,
            definition=e.definition,
            rule=e.rule,
            rule_definition=e.rule_definition,
        ) from None
