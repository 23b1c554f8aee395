"""The pending pool on its DynamoDB table in moto (the table as template.yaml declares it): what is put is
taken whole, byte for byte, whatever its body holds; a wake is trusted once written, until it is received or
stale; racing deferrals of one group record exactly one wake; takes of a large group go round it in turn."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from imshop_push.adapters.pending_dynamodb import DynamoDBPendingPool
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Deferral
from imshop_push.domain.pending import InProcessPendingPool, PendingCopy, PendingPool, inbound_of, pending_copy
from imshop_push.domain.sqs_batches import attributes_size, utf8_size
from imshop_push.domain.sqs_copies import requeue_entry
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

QUEUE_ARN = "arn:aws:sqs:eu-central-1:123456789012:requests"


@pytest.fixture
def table(moto_server: MotoServer) -> tuple[DynamoDBClient, str]:
    aws: LocalAws = provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused")
    return aws.client("dynamodb"), aws.function.environment["PENDING_TABLE_NAME"]


@pytest.fixture
def pool(table: tuple[DynamoDBClient, str]) -> DynamoDBPendingPool:
    return DynamoDBPendingPool(*table, ttl_seconds=3600)


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


def test_a_wake_is_trusted_once_written_until_it_is_received_or_stale(pool: DynamoDBPendingPool) -> None:
    now = time.time()
    assert pool.armed("g") is None
    first = pool.arm("g", wake_at=now + 30, stale_before=now - 120, now=now)
    assert first is not None
    assert pool.armed("g") is None, "armed, not yet written: nobody may rely on it"
    assert pool.arm("g", wake_at=now + 40, stale_before=now - 120, now=now) is not None, "so another writes its own"
    pool.written("g", first)
    assert pool.armed("g") == pytest.approx(now + 30, abs=0.001)
    assert pool.arm("g", wake_at=now + 40, stale_before=now - 120, now=now) is None, "written and earlier: it will do"
    earlier = pool.arm("g", wake_at=now + 10, stale_before=now - 120, now=now)
    assert earlier is not None, "an earlier turn needs its own"
    assert pool.armed("g") is None
    pool.abandon("g", earlier)  # its SendMessage failed
    assert pool.armed("g") is None
    assert pool.arm("g", wake_at=now + 10, stale_before=now - 120, now=now) is not None, "nothing armed any more"
    later = now + 500
    lost = pool.arm("g", wake_at=later + 5, stale_before=later - 120, now=later)
    assert lost is not None, "a wake long overdue is lost"
    pool.written("g", lost)
    pool.disarm("g")
    assert pool.armed("g") is None
    pool.written("g", lost)
    pool.abandon("g", lost)
    assert pool.armed("g") is None, "a received wake is not armed again by its late report"
    assert pool.arm("g", wake_at=later + 50, stale_before=later - 120, now=later) is not None
    assert pool.take("g", limit=10) == [], "the wake item is not a pooled request"


def test_a_wake_failed_by_its_writer_leaves_no_trace_another_could_rely_on(pool: DynamoDBPendingPool) -> None:
    now = time.time()
    mine = pool.arm("f", wake_at=now + 30, stale_before=now - 120, now=now)
    theirs = pool.arm("f", wake_at=now + 30, stale_before=now - 120, now=now)
    assert mine is not None
    assert theirs is not None
    pool.written("f", theirs)  # the other execution's own wake: nothing of it is recorded
    assert pool.armed("f") is None
    pool.abandon("f", mine)
    assert pool.armed("f") is None
    assert pool.arm("f", wake_at=now + 30, stale_before=now - 120, now=now) is not None


def test_racing_deferrals_of_one_group_record_one_wake(pool: DynamoDBPendingPool) -> None:
    now = time.time()
    tokens: list[str | None] = []
    start = threading.Barrier(8)

    def defer() -> None:
        start.wait()
        tokens.append(pool.arm("race", wake_at=now + 30, stale_before=now - 120, now=now))

    threads = [threading.Thread(target=defer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert None not in tokens, "none is written yet: each writes a wake"
    recorded = 0
    for token in tokens:
        assert token is not None
        before = pool.armed("race")
        pool.written("race", token)
        recorded += before is None and pool.armed("race") is not None
    assert recorded == 1, "one of them is the armed wake; the others are writes of no record"


def test_a_body_full_of_what_json_escapes_fits_one_item(pool: DynamoDBPendingPool) -> None:
    """SQS takes 256 KiB of `"` and `\\`; one JSON text of it would be twice that, past an item's 400 KB."""
    quotes = '\\\\\\"' * 63_500  # an escaped backslash and an escaped quote, each escaped again by JSON
    body = '{"userIds": ["79990000001"], "message": {"title": "Бонусы", "summary": "' + quotes + '"}}'
    attributes = {
        "origin": {"dataType": "String", "stringValue": '"' * 2000 + "\\\\" * 1000},
        "raw": {"dataType": "Binary", "binaryValue": base64.b64encode(b'"\\\\\\x00' * 100).decode()},
    }
    message = InboundMessage("big", body, QUEUE_ARN, message_attributes=attributes, sent_timestamp_ms=1)
    entry: dict[str, Any] = requeue_entry(Deferral(message, 30, "big", True, (1, 2)))
    assert utf8_size(entry["MessageBody"]) + attributes_size(entry["MessageAttributes"]) > 250_000
    big = pending_copy("big", message, entry)
    pool.put("q", [big, copy(1)], now=time.time())
    assert sorted(pool.take("q", limit=10)) == sorted([big, copy(1)]), "byte for byte"


def test_a_copy_pooled_by_the_earlier_item_form_is_still_taken(
    pool: DynamoDBPendingPool, table: tuple[DynamoDBClient, str]
) -> None:
    legacy = json.dumps(
        {
            "body": '{"userIds": ["79990000001"], "message": {"title": "Бонусы", "summary": "Сгорают"}}',
            "attributes": {
                "idempotencyKey": {"DataType": "String", "StringValue": "old"},
                "raw": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\\x01").decode()},
            },
            "arn": QUEUE_ARN,
            "sent": 7,
        },
        ensure_ascii=False,
    )
    client, name = table
    client.put_item(  # as the earlier version wrote it
        TableName=name,
        Item={"group": {"S": "legacy"}, "key": {"S": "old"}, "copy": {"S": legacy}, "expiration": {"N": "1"}},
    )
    [taken] = pool.take("legacy", limit=10)
    assert taken.key == "old"
    assert taken.attributes["raw"]["BinaryValue"] == b"\\x01"
    message = inbound_of(taken)
    assert message.message_attributes["idempotencyKey"]["stringValue"] == "old"
    assert message.sent_timestamp_ms == 7


def test_takes_of_a_large_group_go_round_it_in_turn(pool: DynamoDBPendingPool) -> None:
    """Whatever keys keep arriving first in key order, each take starts after the last one's end."""
    now = time.time()
    pool.put("r", [copy(n) for n in range(30)], now=now)
    keys = sorted(f"m{n}" for n in range(30))
    seen: list[str] = []
    for _ in range(5):
        seen += [c.key for c in pool.take("r", limit=7)]
        wake = pool.arm("r", wake_at=now, stale_before=now - 120, now=now)  # a wake in between keeps the turn
        assert wake is not None
        pool.disarm("r")
    assert seen == (keys + keys)[:35], "in turn, round the group and on from its start"
    pool.put("r", [copy(100 + n) for n in range(5)], now=now)  # keys that sort before the turn
    pool.remove("r", keys[10:])
    assert sorted(c.key for c in pool.take("r", limit=100)) == sorted(keys[:10] + [f"m{100 + n}" for n in range(5)])


def test_pooling_a_request_again_renews_its_expiration(
    pool: DynamoDBPendingPool, table: tuple[DynamoDBClient, str]
) -> None:
    client, name = table
    now = time.time()
    pool.put("e", [copy(1)], now=now)
    pool.put("e", [copy(1)], now=now + 5000)
    item = client.get_item(TableName=name, Key={"group": {"S": "e"}, "key": {"S": "m1"}}, ConsistentRead=True)
    assert item["Item"]["expiration"] == {"N": str(int(now + 5000) + 3600)}


@pytest.fixture(params=["dynamodb", "in-process"])
def either_pool(request: pytest.FixtureRequest) -> PendingPool:
    if request.param == "in-process":
        return InProcessPendingPool()
    pool: DynamoDBPendingPool = request.getfixturevalue("pool")
    return pool


def test_a_wake_whose_group_was_taken_and_armed_again_since_is_obsolete(either_pool: PendingPool) -> None:
    """A wake message of a group an execution took itself (without the message), and that later requests armed
    again, would take those requests before their window: it is obsolete once the newer wake is written, and only
    then (a wake still being written may fail)."""
    pool, now, group = either_pool, time.time(), "content:token"
    first = pool.arm(group, wake_at=now + 1, stale_before=now - 100, now=now)
    assert first is not None
    pool.written(group, first)
    assert pool.disarm(group), "an own take disarms whatever is armed"
    second = pool.arm(group, wake_at=now + 5, stale_before=now - 100, now=now)
    assert second is not None
    assert pool.disarm(group, first), "the newer wake is not written yet: the older one still takes"
    second = pool.arm(group, wake_at=now + 5, stale_before=now - 100, now=now)
    assert second is not None
    pool.written(group, second)

    assert not pool.disarm(group, first), "obsolete: the written newer wake takes what it would"
    assert pool.armed(group) == pytest.approx(now + 5, abs=0.01), "and the newer wake stays armed"
    assert pool.disarm(group, second)
    assert pool.armed(group) is None
    assert pool.disarm(group, first), "nothing armed: a late wake takes what is left"
    assert not pool.disarm(group, if_armed=True), "but an environment's own take leaves it to whoever took it"
    third = pool.arm(group, wake_at=now + 5, stale_before=now - 100, now=now)
    assert third is not None
    assert pool.disarm(group, if_armed=True), "one armed: the own take has the group"


def test_an_announced_content_is_read_with_its_wake_in_one_state(either_pool: PendingPool) -> None:
    pool, now = either_pool, time.time()
    assert pool.state("content:a") == (None, None)
    pool.announce(["content:a", "content:b"], until=now + 2, now=now)
    token = pool.arm("content:a", wake_at=now + 1, stale_before=now - 100, now=now)
    assert token is not None
    pool.written("content:a", token)

    a, b = pool.state("content:a"), pool.state("content:b")
    assert a.wake_at == pytest.approx(now + 1, abs=0.01)
    assert a.arriving_until == pytest.approx(now + 2, abs=0.01)
    assert b.wake_at is None
    assert b.arriving_until == pytest.approx(now + 2, abs=0.01)
    assert pool.disarm("content:a")
    assert pool.state("content:a").arriving_until == pytest.approx(now + 2, abs=0.01), "a take keeps the announce"
