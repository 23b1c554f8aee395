"""The pending pool on its DynamoDB table in moto (the table as template.yaml declares it): what is put is
taken whole, byte for byte; a wake is armed once until it is received or stale; racing deferrals of one group
arm exactly one wake."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from imshop_push.inbound import InboundMessage
from imshop_push.model import Deferral
from imshop_push.pending import PendingCopy, inbound_of, pending_copy
from imshop_push.pending_dynamodb import DynamoDBPendingPool
from imshop_push.sqs_copies import requeue_entry
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision

QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:requests"


@pytest.fixture
def pool(moto_server: MotoServer) -> DynamoDBPendingPool:
    aws: LocalAws = provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused")
    return DynamoDBPendingPool(aws.client("dynamodb"), aws.function.environment["PENDING_TABLE_NAME"], ttl_seconds=3600)


def copy(n: int, body: str | None = None) -> PendingCopy:
    message = InboundMessage(
        f"m{n}",
        body or f'{{"userIds": ["7999{n:07d}"], "message": {{"title": "Бонусы", "summary": "Сгорают"}}}}',
        QUEUE_ARN,
        message_attributes={"origin": {"dataType": "String", "stringValue": "crm"}},
        sent_timestamp_ms=1_700_000_000_000 + n,
    )
    entry: dict[str, Any] = requeue_entry(Deferral(message, 30, f"m{n}", True, (1_700_000_000_000, 1_700_000_000_001)))
    return pending_copy(f"m{n}", message, entry)


def test_what_is_pooled_comes_back_whole_and_leaves_when_removed(pool: DynamoDBPendingPool) -> None:
    now = time.time()
    big = copy(
        0,
        '{"userIds": ['
        + ",".join(f'"7999{n:07d}"' for n in range(9000))
        + '], "message": {"title": "Бонус", "summary": "Сгорает"}}',
    )
    copies = [big, *(copy(n) for n in range(1, 1200))]
    pool.put("g", copies, now=now)
    pool.put("other", [copy(5000)], now=now)

    taken = pool.take("g", limit=5000)
    assert sorted(taken) == sorted(copies), "every copy, byte for byte, over several pages"
    message = inbound_of(next(c for c in taken if c.key == "m1"))
    assert message.message_attributes["idempotencyKey"]["stringValue"] == "m1"
    assert message.message_attributes["origin"]["stringValue"] == "crm"
    assert message.sent_timestamp_ms == 1_700_000_000_001
    assert len(pool.take("g", limit=100)) == 100

    pool.remove("g", [c.key for c in taken[:1000]])
    assert sorted(pool.take("g", limit=5000)) == sorted(taken[1000:])
    assert [c.key for c in pool.take("other", limit=10)] == ["m5000"]


def test_a_wake_is_armed_once_until_it_is_received_or_stale(pool: DynamoDBPendingPool) -> None:
    now = time.time()
    assert pool.armed("g") is None
    assert pool.arm("g", wake_at=now + 30, stale_before=now - 120, now=now)
    assert pool.armed("g") == pytest.approx(now + 30, abs=0.001)
    assert not pool.arm("g", wake_at=now + 40, stale_before=now - 120, now=now), "the armed one is earlier"
    assert pool.arm("g", wake_at=now + 10, stale_before=now - 120, now=now), "an earlier turn needs its own"
    assert not pool.arm("g", wake_at=now + 10, stale_before=now - 120, now=now)
    later = now + 500
    assert pool.arm("g", wake_at=later + 5, stale_before=later - 120, now=later), "a wake long overdue is lost"
    pool.disarm("g")
    assert pool.armed("g") is None
    assert pool.arm("g", wake_at=later + 50, stale_before=later - 120, now=later), "received: the next one arms"
    assert pool.take("g", limit=10) == [], "the wake item is not a pooled request"


def test_racing_deferrals_of_one_group_write_one_wake(pool: DynamoDBPendingPool) -> None:
    now = time.time()
    armed: list[bool] = []
    start = threading.Barrier(8)

    def defer() -> None:
        start.wait()
        armed.append(pool.arm("race", wake_at=now + 30, stale_before=now - 120, now=now))

    threads = [threading.Thread(target=defer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert armed.count(True) == 1
