"""The walk over template.yaml that turns its resources into a ``LocalAws``.

Resources are created on first reference (a queue's redrive policy names its DLQ's ARN, a function's
environment names tables), so the order of the template does not matter and a resource added to it
exists locally with no second edit. What becomes of each kind lives beside it: ``queues_and_tables``
creates SQS and DynamoDB resources, ``function_definition`` resolves what a function runs with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imshop_push_local import cfn_template
from imshop_push_local.function_definition import local_function
from imshop_push_local.local_tuning import LocalTuning
from imshop_push_local.queues_and_tables import create_queue, create_table
from imshop_push_local.stack_model import LocalAws, LocalFunction, LocalQueue

_FUNCTION_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})
_LAYER_TYPES = frozenset({"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"})


class StackBuilder:
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
        queue = create_queue(
            properties,
            logical_id=logical_id,
            name=self._physical_name(logical_id, properties.pop("QueueName", None)),
            consumed=logical_id in self._consumed,
            tuning=self._tuning,
            endpoint_url=self._endpoint_url,
            region=self._region,
        )
        self._queues[logical_id] = queue
        return queue

    def _create_table(self, logical_id: str) -> str:
        properties = self._properties(logical_id)
        name = self._physical_name(logical_id, properties.get("TableName"))
        create_table(properties, name=name, endpoint_url=self._endpoint_url, region=self._region)
        self._tables[logical_id] = name
        return name

    # -- functions -----------------------------------------------------------------------------

    def _function(self, logical_id: str) -> LocalFunction:
        declared = self._resources[logical_id].get("Properties") or {}
        merged = {**((self._document.get("Globals") or {}).get("Function") or {}), **declared}
        properties = self._resolver.resolve({k: v for k, v in merged.items() if k not in ("Role", "Layers")})
        return local_function(
            properties,
            logical_id=logical_id,
            name=self._physical_name(logical_id, properties.get("FunctionName")),
            code_paths=(*self._layer_paths(merged.get("Layers") or []), self._path(properties["CodeUri"])),
            queues=self._queues.values(),
            tuning=self._tuning,
        )

    def _layer_paths(self, layers: list[Any]) -> list[str]:
        """Code of the template's own layers (``!Ref`` to a LayerVersion); other layers are not local."""
        paths: list[str] = []
        for layer in layers:
            target = self._resources.get(layer.get("Ref", "")) if isinstance(layer, dict) else None
            if target and target["Type"] in _LAYER_TYPES:
                paths.append(self._path(self._resolver.resolve(target["Properties"]["ContentUri"])))
        return paths

    def _path(self, uri: Any) -> str:
        return str((self._base_dir / str(uri)).resolve())
