"""The local stack, provisioned in moto from template.yaml.

Every SQS queue and DynamoDB table the template declares is created with its properties (redrive
policy, visibility timeout, keys, TTL), and every function's environment and SQS event sources are
resolved as the deployed stack resolves them. A resource added to the template therefore exists
locally with no second edit. This module is the entry: it names the stack and creates the secrets the
deployer would create first; ``stack_builder`` walks the template, and ``LocalTuning`` is the one place
where the local stack departs from the deployed one.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from imshop_push_local import cfn_template
from imshop_push_local.aws_clients import DEFAULT_REGION, make_client
from imshop_push_local.local_tuning import LocalTuning
from imshop_push_local.stack_builder import StackBuilder
from imshop_push_local.stack_model import LocalAws

__all__ = ["TEMPLATE_PATH", "provision"]

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"


def provision(
    endpoint_url: str,
    *,
    api_url: str,
    api_key: str | None = None,
    prefix: str = "imshop-push",
    region: str = DEFAULT_REGION,
    template: Path = TEMPLATE_PATH,
    tuning: LocalTuning | None = None,
    visibility_timeout: int | None = None,
    max_receive_count: int | None = None,
) -> LocalAws:
    """Create what the template defines, under a stack name unique to this call.

    Unique names let many tests share one server without seeing each other's messages or state.
    The IMSHOP URL and key are SSM SecureStrings the deployer creates before deploying; here they
    get names of this stack, passed to the template as its parameters.
    """
    stack_name = f"{prefix}-{secrets.token_hex(4)}"
    tuning = tuning or LocalTuning()
    if visibility_timeout is not None or max_receive_count is not None:
        tuning = tuning.with_queue_overrides(visibility_timeout, max_receive_count)
    values = {"ImshopApiUrlParameterName": api_url}
    if api_key is not None:
        values["ImshopApiKeyParameterName"] = api_key
    secret_names = {name: f"/{stack_name}/{_kebab(name.removesuffix('ParameterName'))}" for name in values}
    ssm = make_client("ssm", endpoint_url, region)
    for name, value in values.items():
        ssm.put_parameter(Name=secret_names[name], Value=value, Type="SecureString")
    document = cfn_template.load(template)
    parameters = cfn_template.parameter_values(document, {**tuning.parameters, **secret_names})
    builder = StackBuilder(
        document,
        base_dir=template.parent,
        stack_name=stack_name,
        endpoint_url=endpoint_url,
        region=region,
        parameters=parameters,
        tuning=tuning,
    )
    return builder.build(secret_names)


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()
