"""Other executions' calls, as the shared limiter sees them: a thread that takes some of the slots of every window
and holds each for a window (a call's worth), so that a scenario runs with free slots only part of the time."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from imshop_push.adapters.rate_limit_dynamodb import LIMITER_ITEM_ID, DynamoDBRateLimiter
from imshop_push.domain.rate_limit import Permit, WindowPolicy

if TYPE_CHECKING:
    from imshop_push_local.stack import LocalStack


class OtherTraffic:
    """Takes `share` of the `limit` slots of every `window` seconds, evenly spread, until the block ends; with no
    share, every slot: the window is full when the block starts, and each slot is taken again as soon as it frees
    (the limiter stays busy however long the scenario takes on this machine)."""

    def __init__(self, stack: LocalStack, *, limit: int, window: float, share: int | None = None) -> None:
        self._limiter = DynamoDBRateLimiter(
            stack.aws.client("dynamodb"),
            stack.aws.table_name,
            LIMITER_ITEM_ID,
            WindowPolicy(limit=limit, window_seconds=window, margin_seconds=0.0, worst_case_call_seconds=1.0),
        )
        self._fill = limit if share is None else 0
        self._pace = 0.0 if share is None else window / max(1, share)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> OtherTraffic:
        for _ in range(self._fill):
            permit = self._limiter.try_acquire(time.time())
            assert isinstance(permit, Permit), "the window was not free when the other traffic began"
            self._limiter.release(permit, time.time())
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            outcome = self._limiter.try_acquire(time.time())
            if isinstance(outcome, Permit):
                self._limiter.release(outcome, time.time())
                self._stop.wait(self._pace)
            else:
                self._stop.wait(max(0.0, outcome.retry_at - time.time()))
