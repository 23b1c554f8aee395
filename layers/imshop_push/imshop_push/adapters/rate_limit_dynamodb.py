"""The rate-limit window kept in the DynamoDB state table, so every execution and cold start shares it.

One item per stack, for both lanes: `LIMITER_ITEM_ID`, a fixed name. The vendor's limit belongs to the integration,
which a stack has one of; its URL is a secret that rotates (a new token, read again every 5 minutes), and an item
named after the URL would give two windows, so up to twice the limit, while executions disagree on it. Every change
is a conditional write on a version number: two executions racing for the last slot cannot both win.

A slot's reservation starts when this module decides (after reading the item), not when the caller asked: each
conflict retry decides anew at the caller's `now` plus the time spent so far, so retries do not eat into the
permit's `start_by`. The round trip of the write itself still does; the caller checks `start_by` right before it
calls.

That one item is the hottest key of the table: under a high MaximumConcurrency DynamoDB may throttle it. A
throttled acquire is an answer ("no slot now, ask again shortly"), not a failure: the caller waits or defers
its requests to the backlog, which does not count towards anyone's maxReceiveCount. Any other error of the
DynamoDB client leaves this module as a `RateLimiterError`: the pipeline knows no botocore.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from imshop_push.adapters.aws_errors import error_code
from imshop_push.domain.lanes import Lane
from imshop_push.domain.rate_limit import (
    Denied,
    Permit,
    RateLimiterError,
    WindowPolicy,
    WindowState,
    decide,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_CONFLICT_RETRIES = 20
THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "InternalServerError"}
)

logger = logging.getLogger(__name__)


LIMITER_ITEM_ID = "ratelimit#imshop"


class DynamoDBRateLimiter:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        item_id: str,
        policy: WindowPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` measures only how long an acquire has taken so far; the caller's `now` stays the time base."""
        self._client = client
        self._table = table_name
        self._key = {"id": {"S": item_id}}
        self._policy = policy
        self._clock = clock

    def try_acquire(self, now: float, lane: Lane = Lane.TRANSACTIONAL, waiter: str | None = None) -> Permit | Denied:
        try:
            with _translated("try_acquire"):
                return self._try_acquire(now, lane, waiter)
        except _ThrottledError as e:
            logger.warning("the rate-limit item is throttled: no slot now (%s)", e)
            return Denied(now + self._policy.window_seconds / max(self._policy.limit, 1))

    def _try_acquire(self, now: float, lane: Lane, waiter: str | None) -> Permit | Denied:
        asked_at = self._clock()
        for _ in range(MAX_CONFLICT_RETRIES):
            item = self._client.get_item(TableName=self._table, Key=self._key, ConsistentRead=True).get("Item") or {}
            read_at = now + max(0.0, self._clock() - asked_at)  # what was just read is judged as of its reading
            version = int(item["version"]["N"]) if item else 0
            state = WindowState(
                _numbers(item, "slots"),
                float(item["blocked_until"]["N"]) if "blocked_until" in item else 0.0,
                _numbers(item, "demand"),
            )
            outcome, changed = decide(state, read_at, self._policy, lane, waiter)
            if changed is None or self._write_window(changed, version):
                return outcome
        # Lost every race: others are taking the slots; ask again shortly rather than spin.
        now += max(0.0, self._clock() - asked_at)
        return Denied(now + self._policy.window_seconds / max(self._policy.limit, 1))

    def release(self, permit: Permit, finished_at: float) -> None:
        with _translated("release"):
            self._release(permit, finished_at)

    def _release(self, permit: Permit, finished_at: float) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET slots.#t = :free, version = version + :one",
                ConditionExpression="attribute_exists(slots.#t)",
                ExpressionAttributeNames={"#t": permit.token},
                ExpressionAttributeValues={
                    ":free": {"N": _num(self._policy.free_after(finished_at))},
                    ":one": {"N": "1"},
                },
            )
        except ClientError as e:
            # The slot was already reused: its pessimistic reservation ran out, nothing left to tighten.
            if not _conditional_failure(e):
                raise

    def give_back(self, permit: Permit) -> None:
        with _translated("give_back"):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key,
                    UpdateExpression="REMOVE slots.#t SET version = version + :one",
                    ConditionExpression="attribute_exists(slots.#t)",
                    ExpressionAttributeNames={"#t": permit.token},
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
            except ClientError as e:
                if not _conditional_failure(e):  # already gone: its reservation ran out and the slot was reused
                    raise

    def block_until(self, until: float) -> None:
        with _translated("block_until"):
            self._block_until(until)

    def _block_until(self, until: float) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET blocked_until = :u, version = if_not_exists(version, :zero) + :one",
                ConditionExpression="attribute_not_exists(blocked_until) OR blocked_until < :u",
                ExpressionAttributeValues={":u": {"N": _num(until)}, ":zero": {"N": "0"}, ":one": {"N": "1"}},
            )
        except ClientError as e:
            if not _conditional_failure(e):  # someone already blocked for longer: keep theirs
                raise

    def _write_window(self, state: WindowState, version: int) -> bool:
        """Slots and demand in one version-conditional write: a bulk slot taken in the same instant as a
        transactional caller's demand is written cannot both succeed."""
        values: dict[str, Any] = {
            ":slots": {"M": {token: {"N": _num(free_at)} for token, free_at in state.slots.items()}},
            ":demand": {"M": {waiter: {"N": _num(until)} for waiter, until in state.demand.items()}},
            ":next": {"N": str(version + 1)},
        }
        if version:
            condition = "version = :version"
            values[":version"] = {"N": str(version)}
        else:
            condition = "attribute_not_exists(version)"
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key,
                UpdateExpression="SET slots = :slots, demand = :demand, version = :next",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as e:
            if _conditional_failure(e):
                return False
            raise
        return True


class _ThrottledError(RateLimiterError):
    """The item is throttled: an answer ("not now"), not a failure."""


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """The boundary: what the DynamoDB client raises becomes the limiter's own error."""
    try:
        yield
    except ClientError as e:
        error = _ThrottledError if error_code(e) in THROTTLING_CODES else RateLimiterError
        raise error(f"DynamoDB refused {operation}: {error_code(e)}") from e
    except BotoCoreError as e:
        raise RateLimiterError(f"DynamoDB refused {operation}: {type(e).__name__}") from e


def _numbers(item: dict[str, Any], attribute: str) -> dict[str, float]:
    return {name: float(v["N"]) for name, v in item.get(attribute, {}).get("M", {}).items()}


def _num(value: float) -> str:
    """Microseconds, rounded up: every stored instant (a reservation's end, a block) errs on the safe side."""
    return f"{math.ceil(value * 1_000_000) / 1_000_000:.6f}"


def _conditional_failure(error: ClientError) -> bool:
    return error_code(error) == "ConditionalCheckFailedException"
