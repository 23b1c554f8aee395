"""Waiting until a queue has drained: nothing visible, nothing delayed and (by default) nothing in flight.

Kept apart from the supervisor because the rule for "empty" is about SQS counts, not about workers: moto
reads the clock once per count, so a message whose visibility timeout ends between the "visible" and the
"not visible" count is in neither, and empty must be seen twice in a row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_DRAIN_POLL_SECONDS = 0.05


def wait_until_drained(
    sqs: SQSClient,
    queue_url: str,
    *,
    timeout: float,
    include_in_flight: bool,
    busy: Callable[[], bool],
    check: Callable[[], None],
) -> bool:
    """``busy``: whether a worker still holds an invocation (its deletes may be done, its report not yet
    in); ``check`` raises what the workers reported as fatal, so a broken handler fails fast."""
    deadline = time.monotonic() + timeout
    names: list[Any] = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    if include_in_flight:
        names.append("ApproximateNumberOfMessagesNotVisible")
    seen_empty = False
    while True:
        check()
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
        counts = [int(value) for value in attributes.get("Attributes", {}).values()]
        empty = not any(counts) and not (include_in_flight and busy())
        if empty and seen_empty:
            return True
        seen_empty = empty
        if time.monotonic() >= deadline:
            return False
        time.sleep(_DRAIN_POLL_SECONDS)
