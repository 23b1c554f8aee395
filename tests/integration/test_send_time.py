"""Send time over the emulated event source, with short real horizons: a scheduled push arrives at IMSHOP not
before its sendAt and within the precision bound, a cancel queued before its request means it is never sent,
and a bulk push inside the quiet hours waits for their end while a transactional one does not."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from imshop_push_local.aws_emulator import MotoServer
from imshop_push_local.demo_schedule import push, quiet_window_ending_soon, rfc3339, wait_for_titles, wall_clock
from imshop_push_local.stack import LocalStack, StackSettings

SLACK_SECONDS = 3.0
"""Beyond the bound the contract promises (one batching window + one rate window): polling, the call itself and
a busy test machine. The production bound is a minute and more; this proves the order of magnitude."""


@pytest.fixture
def stack(request: pytest.FixtureRequest, moto_server: MotoServer) -> Iterator[LocalStack]:
    marker = request.node.get_closest_marker("stack")
    with LocalStack(StackSettings(**(marker.kwargs if marker else {})), moto=moto_server) as s:
        yield s


def bound(stack: LocalStack) -> float:
    return stack.mapping.batching_window_seconds + stack.sandbox.rate_limit_window_seconds + SLACK_SECONDS


def test_a_scheduled_push_arrives_not_before_its_send_at_and_within_the_bound(stack: LocalStack) -> None:
    wall = wall_clock()
    stack.start_consumers()
    stack.publish([push("Разогрев", "79990000200")])  # a cold start's imports are not the dispatcher's latency
    assert wait_for_titles(stack, {"Разогрев"}, deadline=time.time() + 30)
    send_at = round(time.time() + 3.5, 3)

    stack.publish([push("Запланировано", "79990000201", sendAt=rfc3339(send_at)), push("Сейчас", "79990000202")])

    assert wait_for_titles(stack, {"Запланировано", "Сейчас"}, deadline=send_at + 30)
    arrived = {c.body["message"]["title"]: wall(c.arrived_at) for c in stack.sandbox.calls}
    assert arrived["Сейчас"] < send_at, "a push without sendAt is not held"
    assert send_at <= arrived["Запланировано"] <= send_at + bound(stack)
    assert stack.dead_letters() == []


def test_a_cancel_before_its_request_means_nothing_is_sent(stack: LocalStack) -> None:
    stack.start_consumers()
    stack.publish([{"cancel": {"idempotencyKey": "order-77-ready"}}])
    assert stack.source.drain(timeout=30)

    stack.publish([push("Отменено", "79990000301", idempotencyKey="order-77-ready"), push("Другое", "79990000302")])
    assert stack.source.drain(timeout=30)

    assert [c.body["message"]["title"] for c in stack.sandbox.calls] == ["Другое"]
    assert stack.dead_letters() == []


def test_a_bulk_push_inside_quiet_hours_waits_for_their_end_and_a_transactional_one_does_not(
    moto_server: MotoServer,
) -> None:
    quiet_hours, end = quiet_window_ending_soon(time.time())
    settings = StackSettings(quiet_hours=quiet_hours, quiet_hours_timezone="UTC")
    with LocalStack(settings, moto=moto_server) as stack:
        wall = wall_clock()
        stack.start_consumers()
        stack.publish([push("Рассылка", "79990000401")], queue_url=stack.aws.bulk_queue.url)
        stack.publish([push("Заказ", "79990000402")])

        assert wait_for_titles(stack, {"Рассылка", "Заказ"}, deadline=end + 30)
        arrived = {c.body["message"]["title"]: wall(c.arrived_at) for c in stack.sandbox.calls}
        assert arrived["Заказ"] < end - 2, "the transactional lane ignores quiet hours"
        assert end <= arrived["Рассылка"] <= end + bound(stack)
        assert stack.dead_letters() == []
