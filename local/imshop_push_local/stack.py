"""The whole product on one machine: moto server, the IMSHOP sandbox, and the SQS event source running the real
handler in worker processes. `make demo` and the integration tests use this one assembly, so the demo shows
exactly what the tests prove.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision
from imshop_push_local.event_source import EventSourceConfig, SqsEventSource
from imshop_push_local.sandbox import ImshopSandbox

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_PATHS = [
    str(REPO_ROOT / "layers" / "imshop_push"),
    str(REPO_ROOT / "functions" / "send_notifications"),
]
SQS_BATCH = 10


@dataclass(frozen=True)
class StackSettings:
    """Time-scaled defaults: the vendor's 10 calls a minute become `rate_limit_requests` per a fraction of a
    second, so a run that proves the limit takes seconds, not hours."""

    rate_limit_requests: int = 10
    rate_limit_window_seconds: float = 0.5
    max_recipients: int = 1000
    http_timeout_seconds: float = 1.0
    connect_timeout_seconds: float = 0.5
    function_timeout_seconds: float = 4.0
    visibility_timeout_seconds: int = 5
    max_receive_count: int = 5
    concurrency: int = 2
    batch_size: int = 100
    batching_window_seconds: float = 0.3
    api_key: str | None = "local-demo-key"
    sandbox_slow_seconds: float = 1.5
    log_level: str = "WARNING"


class LocalStack:
    def __init__(self, settings: StackSettings | None = None, *, moto: MotoServer | None = None) -> None:
        self.settings = settings or StackSettings()
        self._own_moto = moto is None
        self._moto = moto or MotoServer()
        self.sandbox = ImshopSandbox(
            rate_limit_requests=self.settings.rate_limit_requests,
            rate_limit_window_seconds=self.settings.rate_limit_window_seconds,
            max_recipients=self.settings.max_recipients,
            api_key=self.settings.api_key,
            slow_seconds=self.settings.sandbox_slow_seconds,
        )
        self._aws: LocalAws | None = None
        self._source: SqsEventSource | None = None

    @property
    def aws(self) -> LocalAws:
        if self._aws is None:
            raise RuntimeError("the stack is not started")
        return self._aws

    @property
    def source(self) -> SqsEventSource:
        if self._source is None:
            raise RuntimeError("the consumers are not started")
        return self._source

    def start(self) -> Self:
        self._moto.start()
        self.sandbox.start()
        self._aws = provision(
            self._moto.endpoint_url,
            api_url=self.sandbox.url,
            api_key=self.settings.api_key,
            visibility_timeout=self.settings.visibility_timeout_seconds,
            max_receive_count=self.settings.max_receive_count,
        )
        return self

    def function_env(self) -> dict[str, str]:
        """The function's environment: what template.yaml sets, time-scaled, pointed at the emulator."""
        s = self.settings
        return {
            **self.aws.env(),
            "RATE_LIMIT_REQUESTS": str(s.rate_limit_requests),
            "RATE_LIMIT_WINDOW_SECONDS": str(s.rate_limit_window_seconds),
            "MAX_RECIPIENTS_PER_REQUEST": str(s.max_recipients),
            "HTTP_TIMEOUT_SECONDS": str(s.http_timeout_seconds),
            "HTTP_CONNECT_TIMEOUT_SECONDS": str(s.connect_timeout_seconds),
            "POWERTOOLS_SERVICE_NAME": "imshop-push",
            "POWERTOOLS_METRICS_NAMESPACE": "ImshopPush",
            "POWERTOOLS_LOG_LEVEL": s.log_level,
        }

    def start_consumers(self) -> SqsEventSource:
        s = self.settings
        config = EventSourceConfig(
            queue_url=self.aws.queue_url,
            queue_arn=self.aws.queue_arn,
            region=self.aws.region,
            batch_size=s.batch_size,
            batching_window_seconds=s.batching_window_seconds,
            function_timeout_seconds=s.function_timeout_seconds,
            concurrency=s.concurrency,
        )
        self._source = SqsEventSource(config, env=self.function_env(), sys_path=CODE_PATHS).start()
        return self._source

    def publish(
        self, bodies: Iterable[str | Mapping[str, Any]], *, attributes: Mapping[str, str] | None = None
    ) -> list[str]:
        """SendMessageBatch, as a producer would; returns the SQS message ids in order."""
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
            response = sqs.send_message_batch(QueueUrl=self.aws.queue_url, Entries=entries)
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
        if self._source is not None:
            self._source.stop()
            self._source = None
        self.sandbox.stop()
        if self._own_moto:
            self._moto.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
