"""The DynamoDB rate limiter against moto server over HTTP: a slow, contended acquire still hands out a permit
that covers its call, and the window is one per stack whatever the (rotating) URL says
(docs/contract.md#never-over-the-limit)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from imshop_push.adapters.rate_limit_dynamodb import LIMITER_ITEM_ID, DynamoDBRateLimiter
from imshop_push.dispatch.dispatcher import Disposition
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.rate_limit import Permit, WindowPolicy
from imshop_push.entrypoints.config import Settings
from imshop_push.entrypoints.runtime import Runtime
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision
from imshop_push_local.sandbox import ImshopSandbox

T0 = 1_800_000_000.0
CALL_SECONDS = 10.0
ALLOWANCE = 1.0
POLICY = WindowPolicy(
    limit=10,
    window_seconds=60.0,
    margin_seconds=1.2,
    worst_case_call_seconds=CALL_SECONDS + ALLOWANCE,
    start_allowance_seconds=ALLOWANCE,
)


@pytest.fixture
def aws(moto_server: MotoServer) -> LocalAws:
    return provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused")


class Clock:
    """Moved only by the round trips below: how long an acquire takes is the test's choice, not the machine's."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class SlowContendedDynamoDB:
    """The moto client, each round trip taking `round_trip` seconds of the clock (a far region, botocore's own
    retries of a throttled request), whose first `conflicts` window writes lose the race: another execution
    takes a slot between this one's read and its write."""

    def __init__(self, client: Any, clock: Clock, round_trip: float, rival: DynamoDBRateLimiter, conflicts: int):
        self._client, self._clock, self._round_trip = client, clock, round_trip
        self._rival, self.conflicts = rival, conflicts

    def get_item(self, **request: Any) -> Any:
        self._clock.now += self._round_trip
        return self._client.get_item(**request)

    def update_item(self, **request: Any) -> Any:
        if self.conflicts and request["UpdateExpression"].startswith("SET slots = :slots"):
            self.conflicts -= 1
            assert isinstance(self._rival.try_acquire(self._clock()), Permit)
        self._clock.now += self._round_trip
        return self._client.update_item(**request)


def stored_reservation(aws: LocalAws, token: str) -> float:
    item = aws.client("dynamodb").get_item(TableName=aws.table_name, Key={"id": {"S": LIMITER_ITEM_ID}})["Item"]
    return float(item["slots"]["M"][token]["N"])


@pytest.mark.parametrize(
    ("round_trip", "conflicts"),
    [(0.0, 0), (0.3, 6), (0.4, 3), (1.5, 1), (0.6, 0), (3.0, 0)],
)
def test_a_permit_covers_a_worst_case_call_started_by_its_start_by(
    aws: LocalAws, round_trip: float, conflicts: int
) -> None:
    """Whatever the acquire met, a call started by `start_by` and taking its worst case ends a whole window (and
    the margin) before the slot can be taken again: the limit holds even if that execution dies mid-call."""
    clock = Clock()
    rival = DynamoDBRateLimiter(aws.client("dynamodb"), aws.table_name, LIMITER_ITEM_ID, POLICY, clock=clock)
    client = SlowContendedDynamoDB(aws.client("dynamodb"), clock, round_trip, rival, conflicts)
    limiter = DynamoDBRateLimiter(client, aws.table_name, LIMITER_ITEM_ID, POLICY, clock=clock)  # type: ignore[arg-type]

    permit = limiter.try_acquire(T0)

    assert isinstance(permit, Permit)
    assert client.conflicts == 0, "every scripted race was lost first"
    latest_arrival = permit.start_by + CALL_SECONDS
    assert stored_reservation(aws, permit.token) >= latest_arrival + POLICY.window_seconds + POLICY.margin_seconds
    assert permit.start_by >= T0 + (2 * conflicts + 1) * round_trip + ALLOWANCE - 1e-6, (
        "the reservation starts at the read it was decided on, not when the caller asked: lost races do not eat"
        " into the allowance"
    )
    assert (clock() <= permit.start_by) == (round_trip <= ALLOWANCE), (
        "usable at once unless the final write alone took longer than the allowance"
    )


def test_a_rotated_url_counts_in_the_same_window(aws: LocalAws) -> None:
    """The URL parameter is read again every 5 minutes; a new value (a new token) is the same integration and the
    same vendor limit. Limit 1 per second: the call after the rotation waits for the one before it."""
    window = 1.0
    with ImshopSandbox(rate_limit_requests=1, rate_limit_window_seconds=window) as sandbox:
        settings = Settings.from_env(
            {
                "IMSHOP_API_URL": sandbox.url,
                "STATE_TABLE_NAME": aws.table_name,
                "RATE_LIMIT_REQUESTS": "1",
                "RATE_LIMIT_WINDOW_SECONDS": str(window),
                "HTTP_TIMEOUT_SECONDS": "5",
                "HTTP_CONNECT_TIMEOUT_SECONDS": "1",
            }
        )
        runtime = Runtime(settings, metric=lambda _name, _value: None, aws_client=aws.client)
        results = []
        for n, url in enumerate((sandbox.url, sandbox.url + "?rotated=1")):
            runtime.settings = dataclasses.replace(settings, api_url=url)
            text = json.dumps({"userIds": [f"u{n}"], "message": {"title": f"t{n}", "summary": "s"}})
            results.append(runtime.handle([InboundMessage(f"m{n}", text)], remaining_seconds=30.0)[f"m{n}"])

        assert sandbox.violations == 0, "a second window let a call in over the vendor's limit"
        assert [r.disposition for r in results] == [Disposition.DELIVERED] * 2
        first, second = sandbox.calls
        assert second.arrived_at - first.arrived_at >= window
    items = aws.client("dynamodb").scan(TableName=aws.table_name)["Items"]
    assert [i["id"]["S"] for i in items if i["id"]["S"].startswith("ratelimit")] == [LIMITER_ITEM_ID]


def test_a_permit_given_back_unused_frees_its_slot_at_once(aws: LocalAws) -> None:
    policy = dataclasses.replace(POLICY, limit=1)
    limiter = DynamoDBRateLimiter(aws.client("dynamodb"), aws.table_name, LIMITER_ITEM_ID, policy, clock=Clock())
    permit = limiter.try_acquire(T0)
    assert isinstance(permit, Permit)
    assert not isinstance(limiter.try_acquire(T0 + 5), Permit)

    limiter.give_back(permit)

    assert isinstance(limiter.try_acquire(T0 + 5), Permit), "no call was made on it: nothing to keep a window from"
    limiter.give_back(permit)  # twice, or after the slot was reused: harmless
