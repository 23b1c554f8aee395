"""Stand-in Lambda functions for the event source tests, each one behaviour of a real function.

They run in the event source's worker processes, so they report what they saw by appending JSON
lines to the file named by ``FAKE_HANDLER_LOG`` (one line per invocation; single ``write`` calls
on an O_APPEND file keep lines from concurrent workers whole).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

LOG_ENV = "FAKE_HANDLER_LOG"

# Read at import: proves the event source set the function's environment before importing it.
ENDPOINT_AT_IMPORT = os.environ.get("AWS_ENDPOINT_URL")
IMPORTED_AT = time.time()


def _log(event: dict[str, Any], context: Any, **extra: Any) -> None:
    line = {
        "pid": os.getpid(),
        "imported_at": IMPORTED_AT,
        "endpoint_at_import": ENDPOINT_AT_IMPORT,
        "at": time.time(),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "records": event["Records"],
        **extra,
    }
    data = (json.dumps(line) + "\n").encode()
    fd = os.open(os.environ[LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def acknowledge_all(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _log(event, context)
    return {"batchItemFailures": []}


def fail_marked(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Reports the records whose body contains "fail" as failed: a partial batch response."""
    _log(event, context)
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if "fail" in r["body"]]}


def raise_error(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _log(event, context)
    raise RuntimeError("simulated function error")


def name_unknown_item(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A malformed partial batch response: Lambda fails the whole batch for it."""
    _log(event, context)
    return {"batchItemFailures": [{"itemIdentifier": "not-a-message-of-this-batch"}]}


def hang_once(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Hangs (a stuck call, a deadlock) in its first invocation, whichever worker runs it.

    "First" is decided by creating a marker file next to the log, so it holds across processes and
    does not depend on receive counts.
    """
    try:
        os.close(os.open(os.environ[LOG_ENV] + ".hung", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        first = False
    else:
        first = True
    _log(event, context)  # after the marker: once the test sees this line, a retry will not hang
    if not first:
        return {"batchItemFailures": []}
    time.sleep(60)  # the simulated hang; the test ends it by killing the execution
    return {"batchItemFailures": []}
