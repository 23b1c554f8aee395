"""The whole product on one machine: moto server, the IMSHOP sandbox, and the SQS event source running the real
handler in worker processes. `make demo` and the integration tests use this one assembly, so the demo shows
exactly what the tests prove. Its settings (``stack_settings``) are re-exported here, beside the stack they
configure, where callers look first.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from imshop_push_local.aws_clients import make_client
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision
from imshop_push_local.event_source import EventSourceConfig, SqsEventSource
from imshop_push_local.history_endpoint import Answer, HistoryEndpoint, post
from imshop_push_local.sandbox import ImshopSandbox
from imshop_push_local.stack_model import LocalFunction, SqsMapping
from imshop_push_local.stack_settings import StackSettings

__all__ = ["REPO_ROOT", "LocalStack", "StackSettings", "event_source_config"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SQS_BATCH = 10


class LocalStack:
    def __init__(self, settings: StackSettings | None = None, *, moto: MotoServer | None = None) -> None:
        self.settings = settings or StackSettings()
        self._own_moto = moto is None
        self._moto = moto or MotoServer()
        requests, window, recipients = self.settings.vendor_limits()
        self.sandbox = ImshopSandbox(
            rate_limit_requests=requests,
            rate_limit_window_seconds=window,
            max_recipients=recipients,
            api_key=self.settings.api_key,
            slow_seconds=self.settings.sandbox_slow_seconds,
        )
        self._aws: LocalAws | None = None
        self._sources: list[SqsEventSource] = []
        self._history: HistoryEndpoint | None = None

    @property
    def aws(self) -> LocalAws:
        if self._aws is None:
            raise RuntimeError("the stack is not started")
        return self._aws

    @property
    def function(self) -> LocalFunction:
        """The dispatcher as the template defines it, time-scaled."""
        return self.aws.function

    @property
    def mapping(self) -> SqsMapping:
        """The dispatcher's SQS event source as the template defines it, time-scaled."""
        return self.function.sqs_sources[0]

    @property
    def source(self) -> SqsEventSource:
        """The poller of the dispatcher's queue."""
        if not self._sources:
            raise RuntimeError("the consumers are not started")
        return self._sources[0]

    @property
    def sources(self) -> tuple[SqsEventSource, ...]:
        """Every poller started, one per SQS event source (both lanes)."""
        return tuple(self._sources)

    def start(self) -> Self:
        self._moto.start()
        self.sandbox.start()
        tuning = self.settings.tuning()
        if self.settings.history:
            # The webhook's key is an SSM SecureString the deployer creates first; here, one of this stack.
            name = f"/imshop-push-local-{secrets.token_hex(4)}/history-api-key"
            ssm = make_client("ssm", self._moto.endpoint_url)
            ssm.put_parameter(Name=name, Value=self.settings.history_api_key, Type="SecureString")
            tuning = dataclasses.replace(tuning, parameters={**tuning.parameters, "HistoryApiKeyParameterName": name})
        self._aws = provision(
            self._moto.endpoint_url,
            api_url=self.sandbox.url,
            api_key=self.settings.api_key,
            template=self.settings.template,
            tuning=tuning,
        )
        return self

    def function_env(self) -> dict[str, str]:
        """The dispatcher's environment: what template.yaml sets, time-scaled, pointed at the emulator."""
        return self.aws.env()

    def start_consumers(self, *, output_path: Path | None = None) -> SqsEventSource:
        """Start a poller for every SQS event source of every function in the template, the
        dispatcher's first. ``output_path`` receives what the functions print (metrics, logs)."""
        for function in self.aws.functions.values():
            for mapping in function.sqs_sources:
                config = event_source_config(function, mapping, region=self.aws.region)
                source = SqsEventSource(
                    config, env=self.aws.env(function), sys_path=list(function.code_paths), output_path=output_path
                )
                self._sources.append(source.start())
        return self.source

    @property
    def history_function(self) -> LocalFunction:
        """The webhook as the template defines it: the function served by a function URL."""
        [function] = [f for f in self.aws.functions.values() if f.handler and not f.sqs_sources]
        return function

    def start_history(self, *, output_path: Path | None = None) -> str:
        """Serve the webhook on loopback (the real handler behind a payload-2.0 adapter); returns its URL."""
        if self._history is None:
            self._history = HistoryEndpoint(self.aws, self.history_function, output_path=output_path).start()
        return self._history.url

    def history(self, path: str, body: Any, *, key: str | None = "", **request: Any) -> Answer:
        """What IMSHOP's server would send to the webhook (the stack's key unless `key` says otherwise)."""
        if self._history is None:
            raise RuntimeError("the history endpoint is not started")
        key = self.settings.history_api_key if key == "" else key
        return post(self._history.url, path, body, key=key, **request)

    def publish(
        self,
        bodies: Iterable[str | Mapping[str, Any]],
        *,
        attributes: Mapping[str, str] | None = None,
        queue_url: str | None = None,
    ) -> list[str]:
        """SendMessageBatch, as a producer would (to the transactional queue unless told another); returns the
        SQS message ids in order."""
        sqs = self.aws.client("sqs")
        texts = [b if isinstance(b, str) else json.dumps(b, ensure_ascii=False) for b in bodies]
        message_attributes = {k: {"DataType": "String", "StringValue": v} for k, v in (attributes or {}).items()}
        ids: list[str] = []
        for start in range(0, len(texts), SQS_BATCH):
            entries: list[dict[str, Any]] = []
            for i, text in enumerate(texts[start : start + SQS_BATCH]):
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": text}
                if message_attributes:
                    entry["MessageAttributes"] = message_attributes
                entries.append(entry)
            response = sqs.send_message_batch(QueueUrl=queue_url or self.aws.queue_url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")
            by_id = {e["Id"]: e["MessageId"] for e in response["Successful"]}
            ids.extend(by_id[str(i)] for i in range(len(entries)))
        return ids

    def dead_letters(self) -> list[dict[str, Any]]:
        """Everything in the DLQ, read and deleted (moto keeps it in memory; a test reads it once)."""
        sqs = self.aws.client("sqs")
        found: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(
                QueueUrl=self.aws.dlq_url,
                MaxNumberOfMessages=SQS_BATCH,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            messages: Sequence[dict[str, Any]] = response.get("Messages", [])
            if not messages:
                return found
            found.extend(messages)
            sqs.delete_message_batch(
                QueueUrl=self.aws.dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def stop(self) -> None:
        sources, self._sources = self._sources, []
        for source in sources:
            source.stop()
        history, self._history = self._history, None
        if history is not None:
            history.stop()
        self.sandbox.stop()
        if self._own_moto:
            self._moto.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def event_source_config(function: LocalFunction, mapping: SqsMapping, *, region: str) -> EventSourceConfig:
    """The poller's settings: the template's event source and function, as Lambda would apply them."""
    return EventSourceConfig(
        **dataclasses.asdict(mapping),
        region=region,
        handler=function.handler,
        function_timeout_seconds=function.timeout_seconds,
        function_name=function.name,
        memory_limit_in_mb=function.memory_mb,
    )
