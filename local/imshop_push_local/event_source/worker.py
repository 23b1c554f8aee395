"""One execution environment: a process started with "spawn" that imports the handler once (the
cold start) and then serves invocation after invocation, like a warm Lambda.

It polls SQS itself, so that a crash or a timeout leaves its batch in flight exactly as Lambda's
poller would: the messages return only when their visibility timeout runs out.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imshop_push_local.aws_emulator import make_client
from imshop_push_local.event_source.messages import (
    Done,
    EventSourceConfig,
    InitError,
    InvocationReport,
    Ready,
    Started,
    WorkerMessage,
)
from imshop_push_local.event_source.shapes import Handler, LambdaContext, interpret_response, load_handler, to_event

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# SQS caps one ReceiveMessage at 10 messages; larger batches take several calls, as Lambda's do.
SQS_MAX_RECEIVE = 10
# SQS's long poll returns a delayed message the moment it becomes visible. moto's notices new sends only and
# looks at delayed messages again once a second, which would hold a wake or a copy delayed to its turn up to a
# second past it (half of a 2 s window). An idle worker short-polls at this pace instead, so what is due is
# received about when it is due, as Lambda's poller receives it (a tenth of a 2 s window late at most, and a
# few receives a second per idle worker: moto shares the machine's cores with the functions).
_IDLE_POLL_SECONDS = 0.2
# Inside an open batching window, short polls at this pace gather the rest of the batch.
_WINDOW_POLL_SECONDS = 0.02
MAX_ERROR_CHARS = 2000
_FALLBACK_ACCOUNT = "123456789012"

_FOREIGN_AWS_SETTINGS = frozenset(
    {
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    }
)


def drop_foreign_aws_settings() -> None:
    """Drop the developer's settings that could lead the handler's boto3 past the emulator (a profile with real
    credentials, a per-service endpoint, ignoring AWS_ENDPOINT_URL); the function's env, set after, may restore them."""
    for name in list(os.environ):
        if name in _FOREIGN_AWS_SETTINGS or name.startswith("AWS_ENDPOINT_URL_"):
            del os.environ[name]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, picklable: it crosses into the spawned process."""

    index: int
    config: EventSourceConfig
    env: dict[str, str]
    sys_path: list[str]
    parent_pid: int
    # Where the function's stdout and stderr go (its "CloudWatch log stream"); None: the parent's.
    output_path: str | None = None


@dataclass(frozen=True)
class _Environment:
    """Per-execution-environment names, fixed at cold start as in Lambda."""

    config: EventSourceConfig
    log_group_name: str
    log_stream_name: str
    function_arn: str


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spec.output_path is not None:
        _redirect_output(spec.output_path)
    environment = _new_environment(spec.config)
    try:
        _prepare_os_environ(environment, spec.env)
        # First on the path, as the function's code and layers are in Lambda's.
        sys.path[:] = [*spec.sys_path, *(p for p in sys.path if p not in spec.sys_path)]
        handler = load_handler(spec.config.handler)
        # No silent retries: a ReceiveMessage retried after a lost answer would hide messages that
        # SQS already counted as received (they return only after the visibility timeout).
        sqs: SQSClient = make_client("sqs", spec.env["AWS_ENDPOINT_URL"], spec.config.region, max_attempts=1)
    except Exception:
        text = traceback.format_exc()
        sys.stderr.write(f"[event source worker {spec.index}] init failed:\n{text}")
        send(conn, InitError(text[-MAX_ERROR_CHARS:]))
        raise SystemExit(1) from None
    send(conn, Ready())

    # An orphaned worker would poll the queue forever; it stops when its parent is gone.
    while os.getppid() == spec.parent_pid:
        try:
            messages = collect_batch(sqs, spec.config)
        except Exception as exc:  # the emulator restarting, or going away at teardown
            sys.stderr.write(f"[event source worker {spec.index}] receive failed: {exc}\n")
            time.sleep(0.5)
            continue
        if messages:
            report = _invoke(spec.index, handler, environment, messages, conn)
            _delete_settled(sqs, spec, messages, report)
            send(conn, Done(report))
        else:
            time.sleep(_IDLE_POLL_SECONDS)


def _redirect_output(path: str) -> None:
    """Point file descriptors 1 and 2 at the log file, so that whatever the function prints (EMF
    metrics, JSON logs, tracebacks) lands there and not between the lines of the demo's story."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)


def _new_environment(config: EventSourceConfig) -> _Environment:
    parts = config.queue_arn.split(":")
    account = parts[4] if len(parts) == 6 and parts[4] else _FALLBACK_ACCOUNT
    today = datetime.datetime.now(datetime.UTC)
    return _Environment(
        config=config,
        log_group_name=f"/aws/lambda/{config.function_name}",
        log_stream_name=f"{today:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        function_arn=f"arn:aws:lambda:{config.region}:{account}:function:{config.function_name}",
    )


def _prepare_os_environ(environment: _Environment, env: dict[str, str]) -> None:
    """Set the function's environment before its module is imported, as Lambda does.

    Module-level code (clients, Powertools objects) reads the environment at import time.
    """
    drop_foreign_aws_settings()
    config = environment.config
    os.environ.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_limit_in_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": environment.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": environment.log_stream_name,
        }
    )
    os.environ.update(env)


def collect_batch(sqs: SQSClient, config: EventSourceConfig) -> list[MessageTypeDef]:
    """Gather up to batch_size messages, or fewer once the batching window has closed.

    The window opens with the first message received, like MaximumBatchingWindowInSeconds.
    """
    batch: list[MessageTypeDef] = []
    deadline: float | None = None
    while len(batch) < config.batch_size:
        response = sqs.receive_message(
            QueueUrl=config.queue_url,
            MaxNumberOfMessages=min(SQS_MAX_RECEIVE, config.batch_size - len(batch)),
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        received = response.get("Messages", [])
        batch.extend(received)
        if deadline is None:
            if not received:
                return batch
            deadline = time.monotonic() + config.batching_window_seconds
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if not received:
            time.sleep(min(_WINDOW_POLL_SECONDS, remaining))
    return batch


def _invoke(
    index: int, handler: Handler, environment: _Environment, messages: list[MessageTypeDef], conn: Connection
) -> InvocationReport:
    config = environment.config
    event = to_event(messages, config)
    message_ids = [record["messageId"] for record in event["Records"]]
    request_id = str(uuid.uuid4())
    context = LambdaContext(
        function_name=config.function_name,
        memory_limit_in_mb=config.memory_limit_in_mb,
        invoked_function_arn=environment.function_arn,
        aws_request_id=request_id,
        log_group_name=environment.log_group_name,
        log_stream_name=environment.log_stream_name,
        timeout_seconds=config.function_timeout_seconds,
    )
    send(conn, Started(request_id, message_ids))
    started = time.monotonic()
    error: str | None
    try:
        result = handler(event, context)
    except Exception as exc:
        # Lambda logs the traceback and reports the function error; the batch stays on the queue.
        traceback.print_exc()
        failed_ids, error = list(message_ids), f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    else:
        failed_ids, error = interpret_response(
            result, message_ids, report_batch_item_failures=config.report_batch_item_failures
        )
    return InvocationReport(
        worker=index,
        request_id=request_id,
        message_ids=message_ids,
        failed_ids=failed_ids,
        error=error,
        duration_s=time.monotonic() - started,
    )


def _delete_settled(sqs: SQSClient, spec: WorkerSpec, messages: list[MessageTypeDef], report: InvocationReport) -> None:
    failed = set(report.failed_ids)
    settled = [m for m in messages if m.get("MessageId") not in failed]
    try:
        for start in range(0, len(settled), SQS_MAX_RECEIVE):
            chunk = settled[start : start + SQS_MAX_RECEIVE]
            response = sqs.delete_message_batch(
                QueueUrl=spec.config.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                # The message stays and comes back; that is SQS's at-least-once, not a poller bug.
                sys.stderr.write(f"[event source] delete failed: {failure}\n")
    except Exception as exc:  # the messages come back after the visibility timeout: at-least-once
        sys.stderr.write(f"[event source worker {spec.index}] DeleteMessageBatch failed: {exc}\n")


def send(conn: Connection, message: WorkerMessage) -> None:
    try:
        conn.send(message)
    except OSError:  # the parent is gone; nobody is left to serve
        raise SystemExit(0) from None
