"""The function's environment for `make invoke`: events/env.json (what `sam local invoke --env-vars` takes) mapped
onto the local world, and the local stack's settings that match it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imshop_push_local import cfn_template
from imshop_push_local.provisioning import TEMPLATE_PATH
from imshop_push_local.stack import LocalStack, StackSettings

FUNCTION = "SendNotificationsFunction"
LOCAL_API_KEY = "local-invoke-key"


class UsageError(Exception):
    """The event or environment file cannot be used; printed as one line."""


def load_variables(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the environment file {path}: {e}") from None
    variables = document.get(FUNCTION) if isinstance(document, dict) else None
    if not isinstance(variables, dict):
        raise UsageError(f"{path} has no {FUNCTION} object of variables")
    return {str(k): str(v) for k, v in variables.items()}


def settings_for(variables: Mapping[str, str]) -> StackSettings:
    """Real time (the vendor's 60 s window, the template's timeouts); the sandbox enforces the limits the
    function is configured with, and wants a key only when the environment names one."""

    def number(name: str) -> float | None:
        return float(variables[name]) if variables.get(name, "").strip() else None

    requests, window, recipients = (
        number(n) for n in ("RATE_LIMIT_REQUESTS", "RATE_LIMIT_WINDOW_SECONDS", "MAX_RECIPIENTS_PER_REQUEST")
    )
    return StackSettings(
        time_scale=1.0,
        rate_limit_requests=int(requests) if requests else None,
        rate_limit_window_seconds=window,
        max_recipients=int(recipients) if recipients else None,
        http_timeout_seconds=None,
        function_timeout_seconds=None,
        visibility_timeout_seconds=None,
        batching_window_seconds=None,
        api_key=LOCAL_API_KEY if variables.get("IMSHOP_API_KEY_PARAMETER", "").strip() else None,
        log_level=variables.get("POWERTOOLS_LOG_LEVEL") or "INFO",
    )


def resource_variables(template: Path = TEMPLATE_PATH) -> frozenset[str]:
    """The function's variables the template sets from a resource (`!Ref StateTable`, `!GetAtt BulkQueue.Arn`)."""
    document = cfn_template.load(template)
    resources = document["Resources"]
    variables = resources[FUNCTION]["Properties"]["Environment"]["Variables"]
    return frozenset(name for name, value in variables.items() if _refers_to(value, resources))


def _refers_to(value: Any, resources: Mapping[str, Any]) -> bool:
    if isinstance(value, dict):
        if value.get("Ref") in resources:
            return True
        target = value.get("Fn::GetAtt")
        if isinstance(target, list) and target and target[0] in resources:
            return True
        return any(_refers_to(v, resources) for v in value.values())
    if isinstance(value, list):
        return any(_refers_to(v, resources) for v in value)
    return False


def function_env(stack: LocalStack, variables: Mapping[str, str]) -> dict[str, str]:
    """The template's environment resolved in the local world, with env.json's values on top, except:

    - a variable the template sets from a resource (tables, queues, the DLQs) names the local one: env.json's
      value names a deployed resource or, empty, none (`sam local invoke` reaches no AWS), and the local world
      has them all;
    - IMSHOP_API_URL, when set, is the loopback sandbox (env.json's points at one on the Docker host);
    - a `*_PARAMETER` naming an SSM parameter of the deployed account names the local one holding the same
      secret; empty stays empty.
    """
    env = stack.function_env()
    local_resources = resource_variables(stack.settings.template)
    parameters = {
        "IMSHOP_API_URL_PARAMETER": stack.aws.api_url_parameter,
        "IMSHOP_API_KEY_PARAMETER": stack.aws.api_key_parameter or "",
    }
    for name, value in variables.items():
        if name in local_resources:
            continue
        if name == "IMSHOP_API_URL" and value.strip():
            env[name] = stack.sandbox.url
        elif name in parameters:
            env[name] = parameters[name] if value.strip() else ""
        else:
            env[name] = value
    return env
