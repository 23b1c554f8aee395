"""Production's factories: each port's adapter, or its in-process stand-in when the stack gives no table.

`Runtime` takes every factory as a parameter with these as defaults, so a test hands in fakes instead of
patching. AWS libraries are imported inside the factories: a local run without AWS state never pays for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imshop_push.dispatch.ports import BacklogSink, DeadLetterSink
from imshop_push.domain.collapse import InProcessVersionStore, VersionStore
from imshop_push.domain.history import HistoryWriter
from imshop_push.domain.pending import InProcessPendingPool, PendingPool
from imshop_push.domain.rate_limit import InProcessRateLimiter, RateLimiter, WindowPolicy
from imshop_push.domain.state import InProcessStateStore, StateStore
from imshop_push.entrypoints.config import Settings

type AwsClients = Callable[[str], Any]
"""A boto3 client by service name ("sqs", "dynamodb"), made once and shared."""


def dynamodb_or_in_process_state(settings: Settings, aws: AwsClients) -> StateStore:
    if settings.state_table_name is None:
        return InProcessStateStore()
    from imshop_push.adapters.state_dynamodb import DynamoDBStateStore  # noqa: PLC0415

    return DynamoDBStateStore(aws("dynamodb"), settings.state_table_name, ttl_seconds=settings.state_ttl_seconds)


def dynamodb_or_in_process_versions(settings: Settings, aws: AwsClients) -> VersionStore:
    if settings.state_table_name is None:
        return InProcessVersionStore()
    from imshop_push.adapters.collapse_dynamodb import DynamoDBVersionStore  # noqa: PLC0415

    return DynamoDBVersionStore(aws("dynamodb"), settings.state_table_name, ttl_seconds=settings.state_ttl_seconds)


def dynamodb_or_in_process_limiter(settings: Settings, policy: WindowPolicy, aws: AwsClients) -> RateLimiter:
    if settings.state_table_name is None:
        return InProcessRateLimiter(policy)
    from imshop_push.adapters.rate_limit_dynamodb import LIMITER_ITEM_ID, DynamoDBRateLimiter  # noqa: PLC0415

    return DynamoDBRateLimiter(aws("dynamodb"), settings.state_table_name, LIMITER_ITEM_ID, policy)


def dynamodb_history_or_none(settings: Settings, aws: AwsClients) -> HistoryWriter | None:
    if settings.history_table_name is None:
        return None
    from imshop_push.adapters.history_dynamodb import DynamoDBHistoryWriter  # noqa: PLC0415

    return DynamoDBHistoryWriter(
        aws("dynamodb"),
        settings.history_table_name,
        retention_days=settings.history_retention_days,
        kept_table=settings.state_table_name,  # entries not written yet wait there for a later invocation
        kept_ttl_seconds=settings.state_ttl_seconds,
    )


def dynamodb_or_in_process_pending(settings: Settings, aws: AwsClients) -> PendingPool | None:
    """The pool lives in the pending table; a local run without tables keeps it in memory."""
    if settings.pending_table_name is not None:
        from imshop_push.adapters.pending_dynamodb import DynamoDBPendingPool  # noqa: PLC0415

        return DynamoDBPendingPool(aws("dynamodb"), settings.pending_table_name, ttl_seconds=settings.state_ttl_seconds)
    return InProcessPendingPool(shared=False) if settings.state_table_name is None else None


def dead_letter_queue(sqs: Callable[[], Any], queue_url: str) -> DeadLetterSink:
    from imshop_push.adapters.sqs_outbox import DeadLetterQueue  # noqa: PLC0415

    return DeadLetterQueue(sqs, queue_url)


def source_queue(sqs: Callable[[], Any]) -> BacklogSink:
    from imshop_push.adapters.sqs_outbox import SourceQueue  # noqa: PLC0415

    return SourceQueue(sqs)


def boto3_client(service: str) -> Any:
    """boto3 clients honour AWS_ENDPOINT_URL themselves, so a local emulator needs no code path of its own."""
    import boto3  # noqa: PLC0415 - ~0.3 s of import, paid only when AWS is used

    return boto3.client(service)  # type: ignore[call-overload]
