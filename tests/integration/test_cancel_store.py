"""Cancels in the DynamoDB state store against moto server: the mark the claim's condition sees with no extra
read, before or after the request came, and that a settlement's put never erases."""

from __future__ import annotations

import time
from typing import Any

import pytest

from imshop_push.adapters.state_dynamodb import DynamoDBStateStore
from imshop_push.domain.state import ClaimStatus, Settlement
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision


@pytest.fixture
def store(moto_server: MotoServer) -> DynamoDBStateStore:
    aws: LocalAws = provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused")
    dynamodb: Any = aws.client("dynamodb")
    return DynamoDBStateStore(dynamodb, aws.table_name, ttl_seconds=3600)


def test_a_cancel_before_the_request_makes_its_claim_cancelled(store: DynamoDBStateStore) -> None:
    now = time.time()

    store.cancel(["early"], now=now)
    claims = store.claim_many([("early", "fp"), ("other", "fp")], attempt_id="A", now=now, lease_until=now + 60)

    assert {k: c.status for k, c in claims.items()} == {"early": ClaimStatus.CANCELLED, "other": ClaimStatus.CLAIMED}
    assert store.cancelled(["early", "other"], now=now) == {"early"}


def test_a_cancel_while_the_request_is_held_survives_its_settlement(store: DynamoDBStateStore) -> None:
    now = time.time()
    store.claim_many([("k", "fp")], attempt_id="A1", now=now, lease_until=now + 60)

    store.cancel(["k"], now=now + 1)  # another execution, while A1 sends part of it
    store.settle([Settlement("k", "fp", done=False, attempts=("A1",))], now=now + 2)

    again = store.claim_many([("k", "fp")], attempt_id="A2", now=now + 3, lease_until=now + 63)
    assert again["k"].status is ClaimStatus.CANCELLED


def test_a_cancel_after_the_request_was_sent_changes_nothing(store: DynamoDBStateStore) -> None:
    now = time.time()
    store.claim_many([("k", "fp")], attempt_id="A1", now=now, lease_until=now + 60)
    store.settle([Settlement("k", "fp", done=True, attempts=())], now=now + 1)

    store.cancel(["k", "k"], now=now + 2)

    again = store.claim_many([("k", "fp")], attempt_id="A2", now=now + 3, lease_until=now + 63)
    assert again["k"].status is ClaimStatus.DUPLICATE
