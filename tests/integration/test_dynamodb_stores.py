"""The DynamoDB state store and rate limiter against moto server over HTTP: the conditional writes that make
claims exclusive and the window shared are exercised for real, not faked."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from imshop_push.adapters.rate_limit_dynamodb import LIMITER_ITEM_ID, DynamoDBRateLimiter
from imshop_push.adapters.state_dynamodb import DynamoDBStateStore
from imshop_push.domain.rate_limit import Permit, WindowPolicy, wait_for_permit
from imshop_push.domain.state import CallStatus, ClaimStatus, Settlement, call_id
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision


@pytest.fixture
def aws(moto_server: MotoServer) -> LocalAws:
    return provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused")


@pytest.fixture
def dynamodb(aws: LocalAws) -> Any:
    return aws.client("dynamodb")


def test_claims_tell_duplicates_conflicts_and_live_owners_apart(aws: LocalAws, dynamodb: Any) -> None:
    store = DynamoDBStateStore(dynamodb, aws.table_name, ttl_seconds=3600)
    now = time.time()

    first = store.claim_many([("k1", "fp-a"), ("k2", "fp-b")], attempt_id="A1", now=now, lease_until=now + 60)
    assert {k: c.status for k, c in first.items()} == {"k1": ClaimStatus.CLAIMED, "k2": ClaimStatus.CLAIMED}

    busy = store.claim_many([("k1", "fp-a")], attempt_id="A2", now=now + 1, lease_until=now + 61)
    assert busy["k1"].status is ClaimStatus.BUSY, "a live lease keeps another execution out"
    conflict = store.claim_many([("k1", "fp-other")], attempt_id="A2", now=now + 1, lease_until=now + 61)
    assert conflict["k1"].status is ClaimStatus.CONFLICT

    store.settle(
        [Settlement("k1", "fp-a", done=True, attempts=()), Settlement("k2", "fp-b", done=False, attempts=("A1",))],
        now=now + 2,
    )
    again = store.claim_many([("k1", "fp-a"), ("k2", "fp-b")], attempt_id="A3", now=now + 3, lease_until=now + 63)
    assert again["k1"].status is ClaimStatus.DUPLICATE
    assert again["k2"].status is ClaimStatus.CLAIMED
    assert again["k2"].attempts == ("A1",), "the earlier attempt is handed back so its calls can be read"


def test_an_attempt_is_on_record_before_any_call_even_if_the_execution_dies(aws: LocalAws, dynamodb: Any) -> None:
    store = DynamoDBStateStore(dynamodb, aws.table_name, ttl_seconds=3600)
    now = time.time()
    store.claim_many([("k", "fp")], attempt_id="dies", now=now, lease_until=now + 1)
    store.start_attempt("dies", 3, now=now)
    store.mark_call(call_id("dies", 0), b"\x01" * 8, status=CallStatus.SENT, now=now)
    store.mark_call(call_id("dies", 1), b"\x02" * 8, status=CallStatus.PENDING, now=now)
    store.mark_call(call_id("dies", 2), b"\x03" * 8, status=CallStatus.FAILED, now=now)
    # No settle: the execution was killed. The next one finds the trail after the lease ran out.
    claim = store.claim_many([("k", "fp")], attempt_id="next", now=now + 2, lease_until=now + 60)["k"]
    assert claim.status is ClaimStatus.CLAIMED
    assert claim.attempts == ("dies",)
    records = {r.status: r.digests for r in store.load_calls(claim.attempts, now=now + 2)}
    assert records == {
        CallStatus.SENT: frozenset({b"\x01" * 8}),
        CallStatus.PENDING: frozenset({b"\x02" * 8}),
        CallStatus.FAILED: frozenset({b"\x03" * 8}),
    }
    assert all(r.attempt_id == "dies" for r in store.load_calls(claim.attempts, now=now + 2))


def test_concurrent_claims_of_one_key_have_exactly_one_winner(aws: LocalAws, dynamodb: Any) -> None:
    store = DynamoDBStateStore(dynamodb, aws.table_name, ttl_seconds=3600)
    now = time.time()
    results: list[ClaimStatus] = []
    barrier = threading.Barrier(6)

    def claim(n: int) -> None:
        barrier.wait()
        result = store.claim_many([("same", "fp")], attempt_id=f"A{n}", now=now, lease_until=now + 60)
        results.append(result["same"].status)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted([ClaimStatus.CLAIMED] + [ClaimStatus.BUSY] * 5)


def test_the_shared_window_holds_across_racing_executions(aws: LocalAws, moto_server: MotoServer) -> None:
    """Four 'executions' (threads with their own clients) race for 3 calls per 0.3 s until 12 calls were made.

    Counted in calls, not seconds, so a busy machine only makes the test slower. The worst-case call time is
    generous for the same reason: the reservation must also cover a thread paused between its permit and its
    call (in Lambda the HTTP timeout bounds the call; here the scheduler bounds the pause)."""
    policy = WindowPolicy(limit=3, window_seconds=0.3, margin_seconds=0.006, worst_case_call_seconds=2.0)
    item = LIMITER_ITEM_ID
    calls: list[tuple[float, float]] = []
    lock = threading.Lock()
    wanted = 12
    give_up_at = time.time() + 60

    def execution() -> None:
        limiter = DynamoDBRateLimiter(aws.client("dynamodb"), aws.table_name, item, policy)
        while True:
            with lock:
                if len(calls) >= wanted:
                    return
            permit = wait_for_permit(limiter, latest_start=give_up_at, clock=time.time, sleep=time.sleep)
            if not isinstance(permit, Permit):
                return
            started = time.time()
            ended = time.time() + 0.01  # the call itself
            limiter.release(permit, ended)
            with lock:
                calls.append((started, ended))

    threads = [threading.Thread(target=execution) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    calls.sort()
    assert len(calls) >= wanted, "the executions kept the window busy until enough calls were made"
    for i in range(len(calls) - policy.limit):
        # The (i+limit)-th call starts at least a window after the i-th ended: no window holds limit+1 arrivals.
        assert calls[i + policy.limit][0] >= calls[i][1] + policy.window_seconds


def test_one_claim_dynamodb_refuses_fails_that_request_alone(aws: LocalAws, dynamodb: Any) -> None:
    """An item DynamoDB will not take (here a partition key over its 2048-byte limit) is one request's problem."""
    store = DynamoDBStateStore(dynamodb, aws.table_name, ttl_seconds=3600)
    now = time.time()

    claims = store.claim_many([("k" * 3000, "fp"), ("fine", "fp")], attempt_id="A", now=now, lease_until=now + 60)

    assert claims["k" * 3000].status is ClaimStatus.UNAVAILABLE
    assert claims["fine"].status is ClaimStatus.CLAIMED


def test_reading_a_requests_progress_renews_it_for_another_ttl(aws: LocalAws, dynamodb: Any) -> None:
    """A request that lives on through re-enqueues and redrives must not outlive the record of what it sent."""
    store = DynamoDBStateStore(dynamodb, aws.table_name, ttl_seconds=3600)
    start = time.time()
    store.claim_many([("k", "fp")], attempt_id="A", now=start, lease_until=start + 1)
    store.start_attempt("A", 1, now=start)
    store.mark_call(call_id("A", 0), b"\x01" * 8, status=CallStatus.SENT, now=start)
    store.settle([Settlement("k", "fp", done=False, attempts=("A",))], now=start)

    later = start + 3000  # 50 minutes into a 60-minute TTL, the request comes back
    claim = store.claim_many([("k", "fp")], attempt_id="B", now=later, lease_until=later + 60)["k"]
    assert [r.status for r in store.load_calls(claim.attempts, now=later)] == [CallStatus.SENT]

    for item_id in ("request#k", "attempt#A", f"call#{call_id('A', 0)}"):
        item = dynamodb.get_item(TableName=aws.table_name, Key={"id": {"S": item_id}})["Item"]
        assert int(item["expiration"]["N"]) == int(later) + 3600, item_id
