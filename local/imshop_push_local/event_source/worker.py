"""One execution environment: a process started with "spawn" that imports the handler once (the
cold start) and then serves invocation after invocation, like a warm Lambda.

It polls SQS itself (``sqs_polling``), so that a crash or a timeout leaves its batch in flight exactly
as Lambda's poller would: the messages return only when their visibility timeout runs out. Its cold
start (names, environment, output) is ``execution_environment``'s.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imshop_push_local.aws_clients import make_client
from imshop_push_local.event_source.execution_environment import (
    ExecutionEnvironment,
    new_environment,
    prepare_os_environ,
    redirect_output,
)
from imshop_push_local.event_source.messages import (
    Done,
    EventSourceConfig,
    InitError,
    InvocationReport,
    Ready,
    Started,
    WorkerMessage,
)
from imshop_push_local.event_source.shapes import (
    MAX_ERROR_CHARS,
    Handler,
    LambdaContext,
    function_error,
    interpret_response,
    load_handler,
    to_event,
)
from imshop_push_local.event_source.sqs_polling import IDLE_POLL_SECONDS, collect_batch, delete_settled

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef


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


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spec.output_path is not None:
        redirect_output(spec.output_path)
    environment = new_environment(spec.config)
    try:
        prepare_os_environ(environment, spec.env)
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
            delete_settled(sqs, spec.config, spec.index, messages, report)
            send(conn, Done(report))
        else:
            time.sleep(IDLE_POLL_SECONDS)


def _invoke(
    index: int,
    handler: Handler,
    environment: ExecutionEnvironment,
    messages: list[MessageTypeDef],
    conn: Connection,
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
        failed_ids, error = list(message_ids), function_error(exc)
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


def send(conn: Connection, message: WorkerMessage) -> None:
    try:
        conn.send(message)
    except OSError:  # the parent is gone; nobody is left to serve
        raise SystemExit(0) from None
