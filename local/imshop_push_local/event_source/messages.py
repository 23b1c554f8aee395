"""What the supervisor tells a worker at spawn (its settings) and what a worker tells the supervisor.

The messages cross a pipe between processes: plain frozen dataclasses, so both ends agree on their
shape and mypy checks every place that builds or reads one.
"""

from __future__ import annotations

from dataclasses import dataclass

from imshop_push_local.event_source.shapes import split_handler


@dataclass(frozen=True)
class EventSourceConfig:
    """The event source mapping and the function settings that shape an invocation."""

    queue_url: str
    queue_arn: str
    region: str
    handler: str = "app:lambda_handler"
    batch_size: int = 10
    batching_window_seconds: float = 0.2
    function_timeout_seconds: float = 5.0
    concurrency: int = 2
    function_name: str = "imshop-push-send-notifications"
    memory_limit_in_mb: int = 256
    # FunctionResponseTypes: [ReportBatchItemFailures]. Without it Lambda ignores the answer's
    # batchItemFailures and deletes the whole batch whenever the function returns.
    report_batch_item_failures: bool = True

    def check(self) -> None:
        """Refuse settings Lambda would refuse, before any worker is spawned with them."""
        split_handler(self.handler)
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.batching_window_seconds < 0 or self.function_timeout_seconds <= 0:
            raise ValueError("batching window must be >= 0 and function timeout > 0")


@dataclass(frozen=True)
class InvocationReport:
    """What one invocation did to its batch, as the poller judged it.

    ``failed_ids`` are the messages left on the queue (to reappear after the visibility timeout);
    all of them when ``error`` is set (an exception, a timeout, a crash or a malformed response).
    """

    worker: int
    request_id: str
    message_ids: list[str]
    failed_ids: list[str]
    error: str | None
    duration_s: float


@dataclass(frozen=True)
class Ready:
    """The handler is imported: the execution environment is warm and polls."""


@dataclass(frozen=True)
class InitError:
    """The handler failed to import; the worker exits after sending this."""

    text: str


@dataclass(frozen=True)
class Started:
    """Sent before the handler runs, so that the parent can time the invocation out and account
    for a batch whose worker dies mid-invocation."""

    request_id: str
    message_ids: list[str]


@dataclass(frozen=True)
class Done:
    report: InvocationReport


type WorkerMessage = Ready | InitError | Started | Done
