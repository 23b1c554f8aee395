"""One invocation of a function in a fresh process: Lambda's cold start, environment and timeout, no poller.

The process is spawned, so the handler module is imported with the function's environment already set (module
level Powertools objects read it at import) and nothing of the caller's state (a cached Runtime, a previous
invocation's environment) carries over: `make invoke` and its tests can run event after event in one process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imshop_push_local.event_source.execution_environment import drop_foreign_aws_settings, redirect_output
from imshop_push_local.event_source.shapes import (
    MAX_ERROR_CHARS,
    LambdaContext,
    function_error,
    interpret_response,
    load_handler,
)
from imshop_push_local.stack_model import LocalFunction

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

_GRACE_SECONDS = 30.0
"""Beyond the function timeout, for the cold start (imports) that Lambda does not count against it either."""


@dataclass(frozen=True)
class Invocation:
    """The handler's answer (or its error, as Lambda reports a function error) and Lambda's reading of it."""

    response: Any
    error: str | None
    failed_ids: list[str]
    message_ids: list[str]
    duration_s: float


@dataclass(frozen=True)
class _Spec:
    handler: str
    sys_path: list[str]
    env: dict[str, str]
    event: dict[str, Any]
    function_name: str
    memory_mb: int
    timeout_seconds: float
    output_path: str


def run_once(function: LocalFunction, env: dict[str, str], event: dict[str, Any], *, output_path: Path) -> Invocation:
    """Invoke `function` once on `event`; what it prints (logs, EMF metrics) goes to `output_path`."""
    spec = _Spec(
        handler=function.handler,
        sys_path=list(function.code_paths),
        env=env,
        event=event,
        function_name=function.name,
        memory_mb=function.memory_mb,
        timeout_seconds=function.timeout_seconds,
        output_path=str(output_path),
    )
    message_ids = [str(r.get("messageId")) for r in event.get("Records", []) if isinstance(r, dict)]
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(spec, sender), name="imshop-push-invoke")
    started = time.monotonic()
    process.start()
    sender.close()
    try:
        if receiver.poll(function.timeout_seconds + _GRACE_SECONDS):
            response, error = receiver.recv()
        else:
            response, error = None, f"Task timed out after {function.timeout_seconds:g} seconds"
    except EOFError:
        response, error = None, "Runtime.ExitError: the function's process ended without an answer"
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()
    duration = time.monotonic() - started
    if error is not None:
        return Invocation(None, error, message_ids, message_ids, duration)
    failed, malformed = interpret_response(response, message_ids)
    return Invocation(response, malformed, failed, message_ids, duration)


def _child(spec: _Spec, sender: Connection) -> None:
    redirect_output(spec.output_path)
    drop_foreign_aws_settings()  # as the event source's workers do
    os.environ.update({"AWS_LAMBDA_FUNCTION_NAME": spec.function_name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST"})
    os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(spec.memory_mb)
    os.environ.update(spec.env)
    sys.path[:] = [*spec.sys_path, *(p for p in sys.path if p not in spec.sys_path)]
    try:
        handler = load_handler(spec.handler)
        context = LambdaContext(
            function_name=spec.function_name,
            memory_limit_in_mb=spec.memory_mb,
            invoked_function_arn=f"arn:aws:lambda:{os.environ.get('AWS_REGION', '')}:123456789012:function:"
            f"{spec.function_name}",
            aws_request_id=str(uuid.uuid4()),
            log_group_name=f"/aws/lambda/{spec.function_name}",
            log_stream_name=f"invoke/[$LATEST]{uuid.uuid4().hex}",
            timeout_seconds=spec.timeout_seconds,
        )
        answer: tuple[Any, str | None] = (handler(spec.event, context), None)
    except Exception as exc:  # a function error: Lambda logs the traceback and reports the type and text
        traceback.print_exc()
        answer = (None, function_error(exc))
    try:
        sender.send(answer)
    except Exception as exc:  # an answer that cannot cross the pipe could not be serialised by Lambda either
        sender.send((None, f"Runtime.MarshalError: {function_error(exc)}"[:MAX_ERROR_CHARS]))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sender.close()
