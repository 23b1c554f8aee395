"""The local stack, provisioned in moto from template.yaml.

Every SQS queue and DynamoDB table the template declares is created with its properties (redrive
policy, visibility timeout, keys, TTL), and every function's environment and SQS event sources are
resolved as the deployed stack resolves them. A resource added to the template therefore exists
locally with no second edit. ``LocalTuning`` is the one place where the local stack departs from
the deployed one: time compressed by ``time_scale`` and settings a test or the demo overrides.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imshop_push_local import cfn_template
from imshop_push_local.aws_clients import DEFAULT_REGION, make_client
from imshop_push_local.stack_model import LocalAws, LocalFunction, LocalQueue, SqsMapping

__all__ = ["TEMPLATE_PATH", "LocalAws", "LocalFunction", "LocalQueue", "LocalTuning", "SqsMapping", "provision"]

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
_FUNCTION_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})
# Lambda's defaults where the template says nothing; MaximumConcurrency has none (up to 1000 pollers),
# two local workers stand in for "several".
_DEFAULT_BATCH_SIZE = 10
_DEFAULT_CONCURRENCY = 2
_SAM_DEFAULT_TIMEOUT = 3.0
_SAM_DEFAULT_MEMORY = 128
_SECONDS_VARIABLE = re.compile(r"_SECONDS$")


@dataclass(frozen=True)
class LocalTuning:
    """How the local stack departs from the deployed one.

    ``time_scale`` multiplies every duration the template sets where the emulator consumes it (a
    function's Timeout, a queue's VisibilityTimeout, a batching window, environment variables named
    ``*_SECONDS``). The rest override what the template resolves to, already in local time.
    """

    time_scale: float = 1.0
    parameters: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    function_timeout_seconds: float | None = None
    visibility_timeout_seconds: int | None = None
    max_receive_count: int | None = None
    batch_size: int | None = None
    batching_window_seconds: float | None = None
    concurrency: int | None = None


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
        tuning = _with(tuning, visibility_timeout, max_receive_count)
    values = {"ImshopApiUrlParameterName": api_url}
    if api_key is not None:
        values["ImshopApiKeyParameterName"] = api_key
    secret_names = {name: f"/{stack_name}/{_kebab(name.removesuffix('ParameterName'))}" for name in values}
    ssm = make_client("ssm", endpoint_url, region)
    for name, value in values.items():
        ssm.put_parameter(Name=secret_names[name], Value=value, Type="SecureString")
    document = cfn_template.load(template)
    parameters = cfn_template.parameter_values(document, {**tuning.parameters, **secret_names})
    builder = _StackBuilder(
        document,
        base_dir=template.parent,
        stack_name=stack_name,
        endpoint_url=endpoint_url,
        region=region,
        parameters=parameters,
        tuning=tuning,
    )
    return builder.build(secret_names)


def _with(tuning: LocalTuning, visibility_timeout: int | None, max_receive_count: int | None) -> LocalTuning:
    return LocalTuning(
        **{
            **tuning.__dict__,
            "visibility_timeout_seconds": visibility_timeout or tuning.visibility_timeout_seconds,
            "max_receive_count": max_receive_count or tuning.max_receive_count,
        }
    )


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


class _StackBuilder:
    """Creates resources on first reference, so that the order of the template does not matter."""

    def __init__(
        self,
        document: dict[str, Any],
        *,
        base_dir: Path,
        stack_name: str,
        endpoint_url: str,
        region: str,
        parameters: Mapping[str, str],
        tuning: LocalTuning,
    ) -> None:
        self._document = document
        self._resources: dict[str, Any] = document["Resources"]
        self._base_dir = base_dir
        self._stack_name = stack_name
        self._endpoint_url = endpoint_url
        self._region = region
        self._tuning = tuning
        self._resolver = cfn_template.Resolver(
            document, parameters=parameters, stack_name=stack_name, region=region, resource=self._lookup
        )
        self._queues: dict[str, LocalQueue] = {}
        self._tables: dict[str, str] = {}
        self._creating: set[str] = set()
        self._consumed = self._consumed_queues()

    def build(self, secret_names: Mapping[str, str]) -> LocalAws:
        for logical_id, resource in self._resources.items():
            if resource["Type"] in ("AWS::SQS::Queue", "AWS::DynamoDB::Table") and self._resolver.exists(logical_id):
                self._lookup(logical_id, None)
        functions = {
            logical_id: self._function(logical_id)
            for logical_id, resource in self._resources.items()
            if resource["Type"] in _FUNCTION_TYPES and self._resolver.exists(logical_id)
        }
        return LocalAws(
            endpoint_url=self._endpoint_url,
            region=self._region,
            stack_name=self._stack_name,
            queues=dict(self._queues),
            tables=dict(self._tables),
            functions=functions,
            secret_parameters=dict(secret_names),
        )

    # -- references ----------------------------------------------------------------------------

    def _lookup(self, logical_id: str, attribute: str | None) -> str:
        """Physical id (``Ref``) or attribute (``GetAtt``) of a resource, created if need be."""
        if logical_id not in self._resources:
            raise ValueError(f"the template has no resource {logical_id}")
        kind = self._resources[logical_id]["Type"]
        if kind == "AWS::SQS::Queue":
            queue = self._queues.get(logical_id) or self._create_queue(logical_id)
            return {None: queue.url, "Arn": queue.arn, "QueueName": queue.name, "QueueUrl": queue.url}[attribute]
        if kind == "AWS::DynamoDB::Table":
            name = self._tables.get(logical_id) or self._create_table(logical_id)
            arn = f"arn:aws:dynamodb:{self._region}:{cfn_template.ACCOUNT_ID}:table/{name}"
            return name if attribute is None else arn
        name = self._physical_name(logical_id, self._resources[logical_id].get("Properties", {}).get("FunctionName"))
        if attribute is None:
            return name
        service = "lambda" if kind in _FUNCTION_TYPES else "local"
        return f"arn:aws:{service}:{self._region}:{cfn_template.ACCOUNT_ID}:function:{name}"

    def _physical_name(self, logical_id: str, declared: Any) -> str:
        """The declared name, or one in CloudFormation's style (stack-logical), without its random tail."""
        if declared is not None:
            return str(self._resolver.resolve(declared))
        return f"{self._stack_name}-{logical_id}"[:64]

    def _properties(self, logical_id: str) -> dict[str, Any]:
        if logical_id in self._creating:
            raise ValueError(f"circular reference through {logical_id}")
        self._creating.add(logical_id)
        try:
            resolved: dict[str, Any] = self._resolver.resolve(self._resources[logical_id].get("Properties") or {})
        finally:
            self._creating.discard(logical_id)
        return resolved

    # -- queues and tables ---------------------------------------------------------------------

    def _consumed_queues(self) -> set[str]:
        """Queues a function's SQS event source reads: the visibility and redrive overrides apply to them."""
        consumed: set[str] = set()
        for resource in self._resources.values():
            if resource["Type"] not in _FUNCTION_TYPES:
                continue
            for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
                queue = (event.get("Properties") or {}).get("Queue")
                if event.get("Type") == "SQS" and isinstance(queue, dict) and "Fn::GetAtt" in queue:
                    consumed.add(str(queue["Fn::GetAtt"][0]))
        return consumed

    def _create_queue(self, logical_id: str) -> LocalQueue:
        properties = self._properties(logical_id)
        name = self._physical_name(logical_id, properties.pop("QueueName", None))
        tuning = self._tuning
        if "VisibilityTimeout" in properties:
            properties["VisibilityTimeout"] = max(1, round(float(properties["VisibilityTimeout"]) * tuning.time_scale))
        redrive = properties.get("RedrivePolicy")
        if logical_id in self._consumed:
            if tuning.visibility_timeout_seconds is not None:
                properties["VisibilityTimeout"] = tuning.visibility_timeout_seconds
            if tuning.max_receive_count is not None and isinstance(redrive, dict):
                redrive["maxReceiveCount"] = tuning.max_receive_count
        attributes = {key: _queue_attribute(value) for key, value in properties.items() if key not in ("Tags",)}
        sqs = make_client("sqs", self._endpoint_url, self._region)
        url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        dead_letter_arn = str(redrive["deadLetterTargetArn"]) if isinstance(redrive, dict) else None
        queue = LocalQueue(logical_id=logical_id, name=name, url=url, arn=arn, dead_letter_arn=dead_letter_arn)
        self._queues[logical_id] = queue
        return queue

    def _create_table(self, logical_id: str) -> str:
        properties = self._properties(logical_id)
        name = self._physical_name(logical_id, properties.get("TableName"))
        request: dict[str, Any] = {
            key: properties[key]
            for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")
            if key in properties
        }
        request["BillingMode"] = properties.get("BillingMode", "PROVISIONED")
        if "ProvisionedThroughput" in properties:
            request["ProvisionedThroughput"] = properties["ProvisionedThroughput"]
        if "StreamSpecification" in properties:
            request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
        dynamodb = make_client("dynamodb", self._endpoint_url, self._region)
        dynamodb.create_table(TableName=name, **request)
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": bool(ttl.get("Enabled")), "AttributeName": ttl["AttributeName"]},
            )
        self._tables[logical_id] = name
        return name

    # -- functions -----------------------------------------------------------------------------

    def _function(self, logical_id: str) -> LocalFunction:
        declared = self._resources[logical_id].get("Properties") or {}
        merged = {**((self._document.get("Globals") or {}).get("Function") or {}), **declared}
        properties = self._resolver.resolve({k: v for k, v in merged.items() if k not in ("Role", "Layers")})
        tuning = self._tuning
        timeout = float(properties.get("Timeout", _SAM_DEFAULT_TIMEOUT)) * tuning.time_scale
        return LocalFunction(
            logical_id=logical_id,
            name=self._physical_name(logical_id, properties.get("FunctionName")),
            handler=str(properties["Handler"]),
            code_paths=(*self._layer_paths(merged.get("Layers") or []), self._path(properties["CodeUri"])),
            timeout_seconds=tuning.function_timeout_seconds or timeout,
            memory_mb=int(properties.get("MemorySize", _SAM_DEFAULT_MEMORY)),
            environment={**self._scaled(properties.get("Environment", {}).get("Variables", {})), **tuning.environment},
            sqs_sources=tuple(
                self._sqs_mapping(event["Properties"])
                for event in (properties.get("Events") or {}).values()
                if event.get("Type") == "SQS" and event["Properties"].get("Enabled", True)
            ),
        )

    def _scaled(self, variables: Mapping[str, Any]) -> dict[str, str]:
        scaled: dict[str, str] = {}
        for name, value in variables.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if _SECONDS_VARIABLE.search(name) and _is_number(text):
                text = f"{float(text) * self._tuning.time_scale:g}"
            scaled[name] = text
        return scaled

    def _sqs_mapping(self, properties: Mapping[str, Any]) -> SqsMapping:
        tuning = self._tuning
        arn = str(properties["Queue"])
        [queue] = [q for q in self._queues.values() if q.arn == arn]
        window = float(properties.get("MaximumBatchingWindowInSeconds", 0)) * tuning.time_scale
        if tuning.batching_window_seconds is not None:
            window = tuning.batching_window_seconds
        concurrency = (properties.get("ScalingConfig") or {}).get("MaximumConcurrency", _DEFAULT_CONCURRENCY)
        return SqsMapping(
            queue_url=queue.url,
            queue_arn=queue.arn,
            batch_size=tuning.batch_size or int(properties.get("BatchSize", _DEFAULT_BATCH_SIZE)),
            batching_window_seconds=window,
            concurrency=tuning.concurrency or int(concurrency),
            report_batch_item_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or []),
        )

    def _layer_paths(self, layers: list[Any]) -> list[str]:
        """Code of the template's own layers (``!Ref`` to a LayerVersion); other layers are not local."""
        paths: list[str] = []
        for layer in layers:
            target = self._resources.get(layer.get("Ref", "")) if isinstance(layer, dict) else None
            if target and target["Type"] in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
                paths.append(self._path(self._resolver.resolve(target["Properties"]["ContentUri"])))
        return paths

    def _path(self, uri: Any) -> str:
        return str((self._base_dir / str(uri)).resolve())


def _queue_attribute(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
