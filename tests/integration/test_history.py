"""The in-app history end to end: the dispatcher writes it into (moto) DynamoDB from what the IMSHOP sandbox
confirmed, and the webhook function, served on loopback as a function URL would serve it, answers IMSHOP's
server over real HTTP. The table and both functions come from template.yaml with NotificationHistory=Enabled."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from imshop_push.adapters.history_dynamodb import DynamoDBHistoryReader, DynamoDBHistoryWriter
from imshop_push.adapters.sqs_outbox import SourceQueue
from imshop_push.adapters.state_dynamodb import DynamoDBStateStore
from imshop_push.dispatch.pipeline import Dispatcher
from imshop_push.domain.collapse import version
from imshop_push.domain.history import HistoryEntry, collapsed_entry_id, entry_id, history_copy_token, user_key
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import CallOutcome, CallResult, Deadline, Disposition
from imshop_push.domain.rate_limit import PRE_CALL_ALLOWANCE_SECONDS, InProcessRateLimiter, WindowPolicy
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision
from imshop_push_local.stack import LocalStack, StackSettings

USER = "79990000001"


@pytest.fixture
def stack(moto_server: MotoServer) -> Iterator[LocalStack]:
    with LocalStack(StackSettings(history=True, concurrency=1), moto=moto_server) as s:
        yield s


@pytest.fixture
def aws(moto_server: MotoServer) -> LocalAws:
    from imshop_push_local.local_tuning import LocalTuning

    tuning = LocalTuning(parameters={"NotificationHistory": "Enabled"})
    return provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused", tuning=tuning)


def send(stack: LocalStack, *bodies: dict[str, Any]) -> None:
    stack.publish(bodies)
    assert stack.source.drain(timeout=30)


def test_the_webhook_serves_what_imshop_confirmed_newest_first(stack: LocalStack) -> None:
    stack.start_consumers()
    order = {
        "userIds": [USER, "79990000002"],
        "installIds": ["iid-1"],
        "message": {"title": "Заказ отправлен", "summary": "Заказ 1 передан в доставку"},
        "deeplink": "shop://orders/1",
        "idempotencyKey": "order-1-shipped",
    }
    promo = {
        "userIds": [USER],
        "message": {"title": "Ваш персональный промокод!", "summary": "Скидка на некоторые товары"},
        "idempotencyKey": "promo-7",
        "inbox": {"url": "https://shop.example/promo", "promocode": "JAH12DASD"},
    }
    send(stack, order)
    send(stack, promo)
    assert all("inbox" not in call.body for call in stack.sandbox.calls)  # never forwarded to IMSHOP
    stack.start_history()

    answer = stack.history("/history", {"userId": USER})
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    history = answer.json()["history"]
    assert [e["id"] for e in history] == [entry_id("promo-7"), entry_id("order-1-shipped")]
    first, second = history
    assert first["updatedOn"] >= second["updatedOn"]
    assert set(first) == {"id", "title", "text", "createdOn", "updatedOn", "url", "promocode"}
    assert (first["title"], first["text"], first["promocode"]) == (
        "Ваш персональный промокод!",
        "Скидка на некоторые товары",
        "JAH12DASD",
    )
    assert set(second) == {"id", "title", "text", "createdOn", "updatedOn", "deepLink"}
    assert second["deepLink"] == "shop://orders/1"
    assert abs(second["createdOn"] - time.time() * 1000) < 120_000  # milliseconds
    assert [e["id"] for e in stack.history("/history", {"userId": "79990000002"}).json()["history"]] == [
        entry_id("order-1-shipped")
    ]
    assert stack.history("/history", {"userId": "iid-1"}).json() == {"history": []}  # installs have none

    marked = stack.history("/history/read", {"userId": USER, "ids": [second["id"], "unknown"]})
    assert (marked.status, marked.json()) == (200, {})
    assert stack.history("/history", {"userId": USER}).json()["history"] == history  # order and fields unchanged


def test_the_webhook_refuses_without_the_key_and_names_bad_input(stack: LocalStack) -> None:
    stack.start_history()
    for key, scheme in ((None, "Bearer"), ("wrong", "Bearer"), (stack.settings.history_api_key, "Basic")):
        answer = stack.history("/history", {"userId": USER}, key=key, scheme=scheme)
        assert (answer.status, answer.body) == (401, "")
    assert stack.history("/history", {"userId": USER}, scheme="bearer").status == 200
    assert (stack.history("/nowhere", {"userId": USER}).status, stack.history("/nowhere", {}).body) == (404, "")
    got = stack.history("/history", None, method="GET")
    assert (got.status, got.body) == (405, "")
    bad = stack.history("/history", {"user": USER})
    assert (bad.status, bad.json()) == (400, {"message": "userId: is a required property"})


def test_the_adapters_write_read_and_mark_the_templates_table(aws: LocalAws) -> None:
    table = aws.functions["NotificationHistoryFunction"].environment["HISTORY_TABLE_NAME"]
    assert aws.function.environment["HISTORY_TABLE_NAME"] == table
    dynamodb = aws.client("dynamodb")
    writer = DynamoDBHistoryWriter(dynamodb, table, retention_days=90)
    reader = DynamoDBHistoryReader(dynamodb, table)
    now_ms = int(time.time() * 1000)
    entries = [HistoryEntry("u-1", f"id-{n:03d}", f"t{n}", now_ms - n, now_ms - n, text="x") for n in range(120)]
    entries += [HistoryEntry(f"other-{n}", "id-000", "t", now_ms, now_ms) for n in range(30)]
    writer.put(entries)

    newest = reader.newest("u-1", limit=100, not_before_ms=now_ms - 50)
    assert [e.id for e in newest] == [f"id-{n:03d}" for n in range(51)]
    assert newest[0] == entries[0]
    assert len(reader.newest("u-1", limit=100, not_before_ms=0)) == 100
    assert reader.mark_read("u-1", ["id-001", "nope"], read_on_ms=now_ms) == 1
    items = dynamodb.scan(TableName=table)["Items"]
    assert len(items) == 150
    assert not any("u-1" in json.dumps(item) for item in items)  # the key is a digest, not the user id
    marked = [i for i in items if "readOn" in i]
    assert len(marked) == 1
    assert int(marked[0]["expiration"]["N"]) == (now_ms - 1) // 1000 + 90 * 86_400


def test_a_newer_version_of_a_collapse_key_replaces_the_entry_in_place_and_an_older_one_never(aws: LocalAws) -> None:
    table = aws.function.environment["HISTORY_TABLE_NAME"]
    dynamodb = aws.client("dynamodb")
    writer = DynamoDBHistoryWriter(dynamodb, table, retention_days=90)
    reader = DynamoDBHistoryReader(dynamodb, table)
    now_ms = int(time.time() * 1000)
    key = collapsed_entry_id("order-1-status")
    v1, v2 = version(now_ms, now_ms, "paid"), version(now_ms + 10, now_ms + 10, "shipped")
    paid = HistoryEntry(USER, key, "Оплачен", now_ms, now_ms, text="a", deep_link="shop://1", promocode="P", version=v1)
    writer.put([paid])
    other = HistoryEntry(USER, entry_id("promo"), "Промо", now_ms + 5, now_ms + 5)
    writer.put([other])
    assert reader.mark_read(USER, [key], read_on_ms=now_ms + 6) == 1

    shipped = HistoryEntry(
        USER, key, "Отправлен", now_ms + 20, now_ms + 20, text="b", url="https://x.example", version=v2
    )
    writer.put([shipped, HistoryEntry("79990000002", key, "Отправлен", now_ms + 20, now_ms + 20, version=v2)])
    expected = shipped._replace(created_on=now_ms)  # same id and createdOn, the rest from the newer request
    assert reader.newest(USER, limit=10, not_before_ms=0) == [expected, other]
    item = dynamodb.get_item(TableName=table, Key={"user": {"S": user_key(USER)}, "id": {"S": key}})["Item"]
    assert "readOn" not in item
    assert int(item["expiration"]["N"]) == (now_ms + 20) // 1000 + 90 * 86_400

    late = paid._replace(created_on=now_ms + 30, updated_on=now_ms + 30)  # superseded, confirmed after
    writer.put([late, shipped._replace(updated_on=now_ms + 40)])  # and the same version again
    assert reader.newest(USER, limit=10, not_before_ms=0) == [expected, other]
    assert [e.title for e in reader.newest("79990000002", limit=10, not_before_ms=0)] == ["Отправлен"]


class _Confirming:
    """IMSHOP confirming every call: what is under test is what happens to the history after it."""

    worst_case_seconds = 1.0

    def send(self, payload: dict[str, object]) -> CallOutcome:
        return CallOutcome(CallResult.SENT, "success", 200)


def _dispatcher(aws: LocalAws, history_table: str, metrics: Counter[str]) -> Dispatcher:
    dynamodb = aws.client("dynamodb")
    state_table = aws.function.environment["STATE_TABLE_NAME"]
    return Dispatcher(
        api=_Confirming(),
        limiter=InProcessRateLimiter(
            WindowPolicy(10, 60.0, 0.0, 1.0 + PRE_CALL_ALLOWANCE_SECONDS, PRE_CALL_ALLOWANCE_SECONDS)
        ),
        state=DynamoDBStateStore(dynamodb, state_table, ttl_seconds=3600),
        dead_letters=None,
        backlog=SourceQueue(lambda: aws.client("sqs")),
        metric=lambda name, value: metrics.update({name: value}),
        max_recipients=1000,
        rate_limit_requests=10,
        rate_limit_window_seconds=60.0,
        history=DynamoDBHistoryWriter(
            dynamodb, history_table, retention_days=90, kept_table=state_table, kept_ttl_seconds=3600
        ),
    )


def test_entries_the_table_refuses_are_kept_and_written_from_a_history_copy_on_the_queue(aws: LocalAws) -> None:
    """The real adapters: a history table that refuses (here: not there) keeps the entries in the state table
    and writes a history copy to the request's queue; the invocation that receives the copy writes them."""
    table = aws.function.environment["HISTORY_TABLE_NAME"]
    queue, sqs = aws.queue, aws.client("sqs")
    users = [f"7990{n:07d}" for n in range(1000)]
    request = {
        "userIds": users,
        "message": {"title": "Бонусы сгорают", "summary": "Потратьте бонусы до конца недели"},
        "idempotencyKey": "kept-history",
        "inbox": {"url": "https://shop.example/bonus", "promocode": "B0NUS"},
    }
    refused: Counter[str] = Counter()
    now = time.time()
    message = InboundMessage("m1", json.dumps(request), queue.arn)
    results = _dispatcher(aws, f"{table}-missing", refused).dispatch([message], deadline=Deadline(now + 60, now + 30))
    assert results["m1"].disposition is Disposition.DELIVERED
    assert (refused["HistoryEntriesKept"], refused["HistoryEntriesNotWritten"]) == (1000, 0)

    written: Counter[str] = Counter()
    delivered: list[InboundMessage] = []
    for _ in range(10):  # what one invocation's history time does not cover is passed on to the next
        received = sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10).get("Messages", [])
        if not received:
            break
        (copy,) = received
        assert not any(u in copy["Body"] for u in users)  # a token; the entries stay in the state table
        inbound = InboundMessage(copy["MessageId"], copy["Body"], queue.arn)
        assert history_copy_token(inbound) is not None
        now = time.time()
        results = _dispatcher(aws, table, written).dispatch([inbound], deadline=Deadline(now + 60, now + 30))
        assert results[inbound.message_id].disposition is Disposition.DELIVERED
        sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=copy["ReceiptHandle"])
        delivered.append(inbound)
    assert delivered
    assert written["HistoryEntriesWritten"] == 1000
    reader = DynamoDBHistoryReader(aws.client("dynamodb"), table)
    for user in (users[0], users[-1]):
        (entry,) = reader.newest(user, limit=10, not_before_ms=0)
        assert (entry.id, entry.promocode, entry.url) == (
            entry_id("kept-history"),
            "B0NUS",
            "https://shop.example/bonus",
        )
    again: Counter[str] = Counter()  # SQS delivers at least once: a copy received again finds nothing kept
    now = time.time()
    results = _dispatcher(aws, table, again).dispatch(delivered, deadline=Deadline(now + 60, now + 30))
    assert {r.disposition for r in results.values()} == {Disposition.DELIVERED}
    assert again["HistoryEntriesWritten"] == 0
