"""Supersede by collapseKey for real: the versions' conditional writes against moto's DynamoDB, three status
updates of one order through the emulated event source, of which only the last reaches IMSHOP, and a newer
status held for its sendAt that an older one arriving meanwhile does not overtake."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from imshop_push.adapters.collapse_dynamodb import DynamoDBVersionStore
from imshop_push.domain.collapse import version
from imshop_push_local.aws_emulator import LocalAws, MotoServer, provision
from imshop_push_local.demo_schedule import rfc3339, wait_for_titles
from imshop_push_local.stack import LocalStack, StackSettings

ORDER = "order-1042-status"
USER = "79990001042"


def status(title: str, created_at: str, users: list[str] | None = None) -> dict[str, Any]:
    return {
        "userIds": users or [USER],
        "message": {"title": title, "summary": "Заказ 1042"},
        "collapseKey": ORDER,
        "createdAt": created_at,
    }


@pytest.fixture
def aws(moto_server: MotoServer) -> LocalAws:
    return provision(moto_server.endpoint_url, api_url="http://127.0.0.1:9/unused")


def test_the_table_keeps_the_newest_version_whatever_order_executions_write_in(aws: LocalAws) -> None:
    store = DynamoDBVersionStore(aws.client("dynamodb"), aws.table_name, ttl_seconds=3600)
    now = time.time()
    old, new = version(1_000, 5, "paid"), version(2_000, 1, "shipped")

    assert store.record({"slot-a": new, "slot-b": old}, now=now) == set()
    assert store.record({"slot-a": old, "slot-b": new}, now=now) == {"slot-a"}, "a stale version loses"
    assert store.record({"slot-a": new}, now=now) == set(), "the same version again is the same request"
    assert store.newer({"slot-a": old, "slot-b": old, "slot-c": old}, now=now) == {"slot-a", "slot-b"}
    assert store.newer({"slot-a": new}, now=now) == set()
    retried = version(3_000, 9, "paid")  # the same request sent again by its producer, without createdAt
    assert store.record({"slot-d": retried}, now=now) == set()
    assert store.record({"slot-d": old}, now=now) == set(), "a later copy of itself does not supersede it"
    assert store.newer({"slot-d": old}, now=now) == set()


def test_concurrent_writers_leave_the_newest(aws: LocalAws) -> None:
    store = DynamoDBVersionStore(aws.client("dynamodb"), aws.table_name, ttl_seconds=3600)
    versions = [version(1_000 + n, 0, f"k{n}") for n in range(12)]

    def write(v: str) -> None:
        store.record({"slot": v}, now=time.time())

    threads = [threading.Thread(target=write, args=(v,)) for v in reversed(versions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert store.newer({"slot": versions[-2]}, now=time.time()) == {"slot"}
    assert store.newer({"slot": versions[-1]}, now=time.time()) == set()


@pytest.fixture
def stack(request: pytest.FixtureRequest, moto_server: MotoServer) -> Iterator[LocalStack]:
    marker = request.node.get_closest_marker("stack")
    with LocalStack(StackSettings(**(marker.kwargs if marker else {})), moto=moto_server) as s:
        yield s


# One batch by construction: it closes when it holds all three records (the window only caps the wait).
@pytest.mark.stack(
    concurrency=1, batch_size=3, batching_window_seconds=30, function_timeout_seconds=30, visibility_timeout_seconds=60
)
def test_three_status_updates_of_one_order_only_the_last_is_sent_and_a_stale_one_later_is_dropped(
    stack: LocalStack,
) -> None:
    stack.publish(
        [
            status("Заказ оплачен", "2026-12-01T10:00:00Z"),
            status("Заказ собран", "2026-12-01T13:00:00+03:00"),  # 10:00Z: one instant, received later
            status("Заказ отправлен", "2026-12-01T10:05:00Z"),
        ]
    )
    stack.start_consumers()
    assert stack.source.drain(timeout=60)
    others = [{"userIds": [f"7999000300{n}"], "message": {"title": "Бонусы", "summary": "Сгорают"}} for n in (1, 2)]
    stack.publish([status("Заказ собран", "2026-12-01T10:01:00Z", users=[USER, "79990002042"]), *others])
    assert stack.source.drain(timeout=60)

    calls = [c for c in stack.sandbox.calls if c.body["message"]["title"] != "Бонусы"]
    sent = [(c.body["message"]["title"], tuple(c.body["userIds"])) for c in calls]
    assert sent == [("Заказ отправлен", (USER,)), ("Заказ собран", ("79990002042",))], (
        "only the last status reaches the user; the stale one only the recipient no newer status covers"
    )
    assert stack.dead_letters() == []
    assert stack.sandbox.violations == 0


def held_copy_waits(stack: LocalStack, *, deadline: float) -> bool:
    """The queue holds one delayed message (the held copy) and nothing else: the request was held."""
    sqs = stack.aws.client("sqs")
    names: list[Any] = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while time.time() < deadline:
        counts = sqs.get_queue_attributes(QueueUrl=stack.aws.queue_url, AttributeNames=[*names, "All"])["Attributes"]
        if counts.get("ApproximateNumberOfMessagesDelayed") == "1" and not any(int(counts[n]) for n in names):
            return True
        time.sleep(0.1)
    return False


def test_a_newer_status_held_for_its_send_at_is_not_overtaken_by_an_older_one_arriving_meanwhile(
    stack: LocalStack,
) -> None:
    stack.start_consumers()
    stack.publish([{"userIds": ["79990003000"], "message": {"title": "Разогрев", "summary": "s"}}])
    assert wait_for_titles(stack, {"Разогрев"}, deadline=time.time() + 30), "a cold start is not the test"
    send_at = time.time() + 10
    stack.publish([{**status("Заказ отправлен", "2026-12-01T10:05:00Z"), "sendAt": rfc3339(send_at)}])
    assert held_copy_waits(stack, deadline=send_at - 3), "the newer status is held"

    stack.publish([status("Заказ оплачен", "2026-12-01T10:00:00Z")])  # older, due at once

    assert wait_for_titles(stack, {"Заказ отправлен"}, deadline=send_at + 30)
    assert stack.source.drain(timeout=30)
    sent = [c.body["message"]["title"] for c in stack.sandbox.calls if c.body["message"]["title"] != "Разогрев"]
    assert sent == ["Заказ отправлен"], "one push: the newest, when it is due"
    assert stack.dead_letters() == []
