"""The fallback through the emulated poller: one-recipient personal pushes with one fallback, arriving in many
batches while every slot of the shared limiter is taken, are switched at once and leave in the fallback's text
in about the fewest calls, each recipient reached by exactly one of the two texts."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from test_shared_waiting import (  # type: ignore[import-not-found]
    LIMIT,
    WINDOW,
    stack,  # noqa: F401 - the fixture: the same stack as the one-text blast's
)

from imshop_push_local.other_traffic import OtherTraffic
from imshop_push_local.stack import LocalStack

PUSHES = 200  # eight batches of the stack's 25: without shared waiting of the switched, a call each at least
STATUS = {"title": "Статус заказа изменился", "summary": "Откройте заказ в приложении"}


@pytest.mark.cpu_heavy
def test_switched_personal_pushes_of_many_batches_share_the_fallbacks_calls(stack: LocalStack) -> None:  # noqa: F811
    users = [f"7999{n:07d}" for n in range(PUSHES)]
    requests = [
        {
            "userIds": [user],
            "message": {"title": f"Заказ {n} передан в доставку", "summary": f"Заказ {n} приедет завтра"},
            "deeplink": f"app://orders/{n}",
            "fallback": {"message": STATUS, "deeplink": "app://orders", "afterSeconds": 0},
        }
        for n, user in enumerate(users)
    ]
    stack.start_consumers()
    with OtherTraffic(stack, limit=LIMIT, window=WINDOW):  # other executions take every slot
        stack.publish(requests)
    assert all(source.drain(timeout=120) for source in stack.sources)

    calls = stack.sandbox.calls
    reached = Counter(u for c in calls for u in c.body["userIds"])
    assert reached == Counter(users), "every recipient exactly once, in one of the two texts"
    fallback_calls = [c for c in calls if c.body["message"]["title"] == STATUS["title"]]
    own_calls = len(calls) - len(fallback_calls)
    fallen_back = sum(len(c.body["userIds"]) for c in fallback_calls)
    assert fallen_back >= PUSHES - own_calls
    # A batch the machine delayed until a slot was free may send its own share before a wake is armed; one
    # call per batch (8) is what switching without shared waiting costs.
    assert len(fallback_calls) <= math.ceil(fallen_back / 1000) + 2, [len(c.body["userIds"]) for c in fallback_calls]
    assert stack.dead_letters() == []
    assert stack.sandbox.violations == 0
