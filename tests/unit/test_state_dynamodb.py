"""The DynamoDB state store's batch operations under throttling (moto never returns unprocessed items, so an
in-process fake client plays DynamoDB here; the conditional writes are tested against moto in integration)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from imshop_push.state import Settlement, StateStoreError
from imshop_push.state_dynamodb import MAX_UNPROCESSED_ROUNDS, DynamoDBStateStore


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
