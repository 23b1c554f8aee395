"""What the pipeline talks to, as small Protocols, and the one bundle of them its stages share.

Tests hand in fakes of these; production hands in the adapters (`imshop_client`, `sqs_outbox`, the DynamoDB
stores), which translate their libraries' errors at the boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from imshop_push.domain.collapse import InProcessVersionStore, VersionStore
from imshop_push.domain.history import HistoryWriter
from imshop_push.domain.lanes import Lanes
from imshop_push.domain.model import CallOutcome, Deferral, Poison
from imshop_push.domain.observability import MetricSink
from imshop_push.domain.pending import OpenGroups, PendingPool
from imshop_push.domain.rate_limit import RateLimiter
from imshop_push.domain.send_time import SendTime
from imshop_push.domain.state import StateStore


class PushApi(Protocol):
    @property
    def worst_case_seconds(self) -> float: ...

    def send(self, payload: dict[str, object]) -> CallOutcome: ...


class DeadLetterSink(Protocol):
    def send(self, poison: Sequence[Poison]) -> set[str]:
        """Returns the message ids it could not write."""
        ...


class BacklogSink(Protocol):
    def requeue(self, deferrals: Sequence[Deferral]) -> set[str]:
        """Returns the message ids it could not write."""
        ...

    def wake(self, event_source_arn: str, group: str, delay_seconds: int, token: str | None = None) -> bool:
        """A wake message of the pending pool to that queue (`pending.py`), with the token it was armed with;
        False if it was not written."""
        ...

    def write_wakes(self, wakes: Sequence[tuple[str, str, int]], tokens: Sequence[str | None] = ()) -> set[int]:
        """Several wakes (queue ARN, group, delay seconds), batched, each with its token (by position, when
        given); returns the positions of those not written."""
        ...

    def history_copy(self, event_source_arn: str, token: str) -> bool:
        """A history copy to that queue: a later invocation writes the entries kept under `token`
        (`history.history_copy_body`); False if it was not written."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_recipients: int  # per IMSHOP call
    rate_limit_requests: int  # calls per window
    window_seconds: float


@dataclass(frozen=True, slots=True)
class Context:
    """The ports, the limits and the clock every stage may use; built once per `Dispatcher`."""

    api: PushApi
    limiter: RateLimiter
    state: StateStore
    dead_letters: DeadLetterSink | None
    backlog: BacklogSink
    metric: MetricSink
    limits: Limits
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)
    versions: VersionStore = field(default_factory=InProcessVersionStore)  # the newest per collapseKey slot
    lanes: Lanes = field(default=Lanes())
    history: HistoryWriter | None = None  # None: the history is not enabled
    pending: PendingPool | None = None  # None: deferred requests wait as copies, each on its own
    open_groups: OpenGroups = field(default_factory=OpenGroups)  # this environment's pooled groups (`pending.py`)
    send_time: SendTime = field(default=SendTime())  # how far ahead sendAt may be; the bulk lane's quiet hours
