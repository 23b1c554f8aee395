"""Runtime: the deadline an invocation works to, measured from the moment the handler was called."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from fake_clock import T0, FakeClock
from imshop_push.config import Settings
from imshop_push.dispatcher import Deadline, Dispatcher, Disposition, RecordResult
from imshop_push.inbound import InboundMessage
from imshop_push.runtime import Runtime


def test_setup_time_of_a_cold_start_comes_out_of_the_invocations_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    runtime = Runtime(
        Settings.from_env({"IMSHOP_API_URL": "https://imshop.example/push/token", "HTTP_TIMEOUT_SECONDS": "10"}),
        metric=lambda _name, _value: None,
        clock=clock,
        sleep=clock.sleep,
    )
    original = Runtime._secrets

    def slow_secrets(self: Runtime) -> tuple[str, str | None]:
        clock.now += 2.0  # SSM reads and imports on a cold start
        return original(self)

    seen: list[Deadline] = []

    def dispatch(self: Dispatcher, messages: Sequence[InboundMessage], *, deadline: Deadline) -> dict[str, Any]:
        seen.append(deadline)
        return {m.message_id: RecordResult(Disposition.DELIVERED) for m in messages}

    monkeypatch.setattr(Runtime, "_secrets", slow_secrets)
    monkeypatch.setattr(Dispatcher, "dispatch", dispatch)
    runtime.handle([InboundMessage("m1", "{}")], remaining_seconds=60.0)

    (deadline,) = seen
    assert deadline.hard == T0 + 60.0, "the function times out 60 s after the handler was called, not after setup"
    assert deadline.last_call_start <= deadline.hard - 10.0 - 3.0, "room for a whole call and the settling"


def test_a_large_batch_keeps_more_time_for_settling() -> None:
    clock = FakeClock()
    runtime = Runtime(
        Settings.from_env({"IMSHOP_API_URL": "https://imshop.example/push/token"}),
        metric=lambda _name, _value: None,
        clock=clock,
        sleep=clock.sleep,
    )
    seen: list[Deadline] = []
    original = Dispatcher.dispatch

    def dispatch(self: Dispatcher, messages: Sequence[InboundMessage], *, deadline: Deadline) -> dict[str, Any]:
        seen.append(deadline)
        return original(self, [], deadline=deadline)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Dispatcher, "dispatch", dispatch)
        runtime.handle([InboundMessage(f"m{i}", "{}") for i in range(10)], remaining_seconds=90.0)
        runtime.handle([InboundMessage(f"m{i}", "{}") for i in range(10_000)], remaining_seconds=90.0)
    small, large = seen
    assert large.hard - large.last_call_start > small.hard - small.last_call_start + 10
    assert large.last_call_start > clock.now, "still time for calls"
