"""What an execution environment is set up with at its cold start, before the handler is imported: its
Lambda names, its environment variables, and where its output goes.

Kept apart from the worker's loop (``worker``) because ``make invoke`` runs a handler once outside any
event source and must prepare the process the same way, or a handler run there would reach past the emulator.
"""

from __future__ import annotations

import datetime
import os
import uuid
from dataclasses import dataclass

from imshop_push_local.event_source.messages import EventSourceConfig

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
class ExecutionEnvironment:
    """Per-execution-environment names, fixed at cold start as in Lambda."""

    config: EventSourceConfig
    log_group_name: str
    log_stream_name: str
    function_arn: str


def new_environment(config: EventSourceConfig) -> ExecutionEnvironment:
    parts = config.queue_arn.split(":")
    account = parts[4] if len(parts) == 6 and parts[4] else _FALLBACK_ACCOUNT
    today = datetime.datetime.now(datetime.UTC)
    return ExecutionEnvironment(
        config=config,
        log_group_name=f"/aws/lambda/{config.function_name}",
        log_stream_name=f"{today:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        function_arn=f"arn:aws:lambda:{config.region}:{account}:function:{config.function_name}",
    )


def prepare_os_environ(environment: ExecutionEnvironment, env: dict[str, str]) -> None:
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


def redirect_output(path: str) -> None:
    """Point file descriptors 1 and 2 at the log file, so that whatever the function prints (EMF
    metrics, JSON logs, tracebacks) lands there and not between the lines of the demo's story."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)
