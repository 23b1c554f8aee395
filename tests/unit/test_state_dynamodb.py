"""The DynamoDB adapters under throttling and races (moto never returns unprocessed items, so an
in-process fake client plays DynamoDB here; the conditional writes are tested against moto in integration)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from imshop_push.adapters.rate_limit_dynamodb import DynamoDBRateLimiter
from imshop_push.adapters.state_dynamodb import MAX_UNPROCESSED_ROUNDS, DynamoDBStateStore
from imshop_push.domain.rate_limit import Denied, Permit, RateLimiterError, WindowPolicy
from imshop_push.domain.state import CallStatus, ClaimStatus, Settlement, StateStoreError


class ThrottledDynamoDB:
    """Hands every write back as unprocessed `throttled_rounds` times, then accepts it."""

    def __init__(self, throttled_rounds: int) -> None:
        self.throttled_rounds = throttled_rounds
        self.rounds = 0

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.rounds += 1
        if self.rounds <= self.throttled_rounds:
            return {"UnprocessedItems": RequestItems}
        return {"UnprocessedItems": {}}


def store(client: ThrottledDynamoDB, sleeps: list[float]) -> DynamoDBStateStore:
    return DynamoDBStateStore(cast(Any, client), "state", ttl_seconds=3600, sleep=sleeps.append)


SETTLEMENT = [Settlement("k1", "fp", done=True, attempts=())]


def test_unprocessed_writes_are_retried_with_growing_backoff_until_taken() -> None:
    client, sleeps = ThrottledDynamoDB(throttled_rounds=3), list[float]()
    store(client, sleeps).settle(SETTLEMENT, now=1_800_000_000)
    assert client.rounds == 4
    assert sleeps == sorted(sleeps)
    assert len(sleeps) == 3
    assert sleeps[0] > 0


def test_writes_that_never_go_through_raise_a_state_store_error() -> None:
    client, sleeps = ThrottledDynamoDB(throttled_rounds=10_000), list[float]()
    with pytest.raises(StateStoreError, match="unprocessed"):
        store(client, sleeps).settle(SETTLEMENT, now=1_800_000_000)
    assert client.rounds == MAX_UNPROCESSED_ROUNDS


class VanishingItemDynamoDB:
    """The claim's condition fails, and by the time the store looks, the item is gone (expired by TTL)."""

    def update_item(self, **_: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": ""}}, "UpdateItem")

    def get_item(self, **_: Any) -> dict[str, Any]:
        return {}


def test_a_claim_whose_item_vanished_is_busy_not_a_conflict() -> None:
    claims = store(cast(Any, VanishingItemDynamoDB()), []).claim_many(
        [("k", "fp")], attempt_id="A", now=1_800_000_000, lease_until=1_800_000_060
    )
    assert claims["k"].status is ClaimStatus.BUSY, "nothing is stored, so nothing conflicts: try again"


class ThrottledLimiterItem:
    def __init__(self, code: str) -> None:
        self.code = code

    def get_item(self, **_: Any) -> dict[str, Any]:
        raise ClientError({"Error": {"Code": self.code, "Message": "slow down"}}, "GetItem")


POLICY = WindowPolicy(limit=10, window_seconds=60.0, margin_seconds=1.2, worst_case_call_seconds=10.0)


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_a_throttled_limiter_item_means_no_slot_now_not_a_failure(code: str) -> None:
    """An error here would send the whole backlog back to SQS, burning receive counts; 'not now' defers it."""
    limiter = DynamoDBRateLimiter(cast(Any, ThrottledLimiterItem(code)), "state", "ratelimit#x", POLICY)

    outcome = limiter.try_acquire(1_800_000_000.0)

    assert isinstance(outcome, Denied)
    assert 1_800_000_000.0 < outcome.retry_at <= 1_800_000_000.0 + POLICY.window_seconds


def test_a_limiter_item_that_cannot_be_read_for_other_reasons_is_an_error() -> None:
    limiter = DynamoDBRateLimiter(cast(Any, ThrottledLimiterItem("AccessDeniedException")), "state", "r", POLICY)
    with pytest.raises(RateLimiterError, match="AccessDeniedException"):
        limiter.try_acquire(1_800_000_000.0)


# --- the boundary: botocore's errors never leave the adapters -------------------------------------------


class UnreachableDynamoDB:
    """Every call fails as botocore fails: a refused request, or no connection at all."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, operation: str) -> Any:
        def fail(**_: Any) -> Any:
            raise self.error

        return fail


ERRORS = [
    ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem"),
    EndpointConnectionError(endpoint_url="https://dynamodb.eu-central-1.amazonaws.com"),
]


@pytest.mark.parametrize("error", ERRORS, ids=["client-error", "no-connection"])
def test_every_state_store_write_and_read_fails_with_the_stores_own_error(error: Exception) -> None:
    s = store(cast(Any, UnreachableDynamoDB(error)), [])
    now = 1_800_000_000
    operations: list[Callable[[], object]] = [
        lambda: s.start_attempt("A", 1, now=now),
        lambda: s.load_calls(["A"], now=now),
        lambda: s.mark_call("A#0", b"12345678", status=CallStatus.PENDING, now=now),
        lambda: s.settle(SETTLEMENT, now=now),
    ]
    for operation in operations:
        with pytest.raises(StateStoreError) as raised:
            operation()
        assert raised.value.__cause__ is error, "the original error stays attached for the logs"
    claims = s.claim_many([("k", "fp")], attempt_id="A", now=now, lease_until=now + 60)
    assert claims["k"].status is ClaimStatus.UNAVAILABLE


@pytest.mark.parametrize("error", ERRORS, ids=["client-error", "no-connection"])
def test_every_limiter_operation_fails_with_the_limiters_own_error(error: Exception) -> None:
    limiter = DynamoDBRateLimiter(cast(Any, UnreachableDynamoDB(error)), "state", "r", POLICY)
    for operation in (
        lambda: limiter.try_acquire(1_800_000_000.0),
        lambda: limiter.release(Permit("t"), 1_800_000_001.0),
        lambda: limiter.give_back(Permit("t")),
        lambda: limiter.block_until(1_800_000_060.0),
    ):
        with pytest.raises(RateLimiterError):
            operation()
