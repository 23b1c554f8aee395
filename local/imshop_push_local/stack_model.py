"""What a provisioned local stack consists of: values only, so the event source, the demo and the
tests can read them without knowing how the template was turned into resources."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imshop_push_local.aws_clients import emulator_env, make_client


@dataclass(frozen=True)
class LocalQueue:
    logical_id: str
    name: str
    url: str
    arn: str
    dead_letter_arn: str | None


@dataclass(frozen=True)
class SqsMapping:
    """One SQS event source of a function, as the template configures it (time-scaled); the fields are
    named as the poller's EventSourceConfig names them (concurrency: ScalingConfig.MaximumConcurrency)."""

    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: float
    concurrency: int
    report_batch_item_failures: bool


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    name: str
    handler: str
    code_paths: tuple[str, ...]
    timeout_seconds: float
    memory_mb: int
    environment: Mapping[str, str]
    sqs_sources: tuple[SqsMapping, ...]


@dataclass(frozen=True)
class LocalAws:
    """The resources of one provisioned stack, and how the function reaches them."""

    endpoint_url: str
    region: str
    stack_name: str
    queues: Mapping[str, LocalQueue]
    tables: Mapping[str, str]
    functions: Mapping[str, LocalFunction]
    # Template parameter -> the SSM parameter created for it (the IMSHOP URL and key).
    secret_parameters: Mapping[str, str]

    def client(self, service: str) -> Any:
        return make_client(service, self.endpoint_url, self.region)

    @property
    def function(self) -> LocalFunction:
        """The dispatcher: the function that consumes a queue (the first, if the template has several)."""
        for function in self.functions.values():
            if function.sqs_sources:
                return function
        raise LookupError("the template has no function with an SQS event source")

    @property
    def queue(self) -> LocalQueue:
        [queue] = [q for q in self.queues.values() if q.arn == self.function.sqs_sources[0].queue_arn]
        return queue

    @property
    def dead_letter_queue(self) -> LocalQueue:
        [queue] = [q for q in self.queues.values() if q.arn == self.queue.dead_letter_arn]
        return queue

    @property
    def queue_url(self) -> str:
        return self.queue.url

    @property
    def bulk_queue(self) -> LocalQueue:
        """The bulk lane: the queue whose ARN the dispatcher is given as BULK_QUEUE_ARN."""
        [queue] = [q for q in self.queues.values() if q.arn == self.function.environment["BULK_QUEUE_ARN"]]
        return queue

    @property
    def bulk_dead_letter_queue(self) -> LocalQueue:
        """The bulk lane's DLQ: where its redrive policy and the dispatcher put bulk poison."""
        [queue] = [q for q in self.queues.values() if q.arn == self.bulk_queue.dead_letter_arn]
        return queue

    @property
    def dlq_url(self) -> str:
        return self.dead_letter_queue.url

    @property
    def table_name(self) -> str:
        return self.function.environment["STATE_TABLE_NAME"]

    @property
    def api_url_parameter(self) -> str:
        return self.secret_parameters["ImshopApiUrlParameterName"]

    @property
    def api_key_parameter(self) -> str | None:
        return self.secret_parameters.get("ImshopApiKeyParameterName")

    def env(self, function: LocalFunction | None = None) -> dict[str, str]:
        """A function's environment (the dispatcher's by default) as the template sets it, plus what
        points its boto3 at the emulator."""
        return {**emulator_env(self.endpoint_url, self.region), **(function or self.function).environment}
