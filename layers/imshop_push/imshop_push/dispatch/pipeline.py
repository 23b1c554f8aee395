"""One SQS batch in, one disposition per record out: the dispatcher's whole job, as a list of stages.

Each stage moves the fate of the batch's records (`fate.py`) by named transitions; the batch (`batch.py`)
owns them, and its results are read once, at the end. The order, and why:

0. a wake of the pending pool brings in the requests of its content that wait for budget (shared waiting); a
   history copy has the history entries an earlier invocation kept written (the History stage's time is set
   aside first, so that waiting for budget cannot use it);
1. parse and validate every record (poison is known before any budget is spent), remember cancels, drop
   expired requests, and hold (re-enqueue, unclaimed) those not due yet: sendAt, the bulk lane's quiet hours;
2. announce the contents the batch carries more than once (a concurrent batch's lone request of one joins
   them), resolve idempotency keys inside the batch, claim each key (duplicates of delivered requests stop here);
3. subtract what earlier attempts of the same request already delivered;
4. plan the fewest calls (merge equal content, split at the recipient limit);
5. send call by call, each through the shared rate limiter, recording progress before and after;
6. write the in-app history of what IMSHOP confirmed (when enabled; what is not written is kept for a later
   invocation, never resent);
7. settle state and re-enqueue the backlog (a group of one content waits in the pending pool, with one wake);
   dead-letter poison; retry keyless requests as keyed copies; release from the pool what is finished.
Whatever could not be written goes back to SQS as a batch item failure, so nothing is dropped silently.

A new step in the life of a request is a module in `stages/` and one line in `STAGES`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from imshop_push.dispatch.ports import BacklogSink, Context, DeadLetterSink, Limits, PushApi
from imshop_push.dispatch.stages import Stage
from imshop_push.dispatch.stages.cancel import RecordCancels
from imshop_push.dispatch.stages.claim import Claim
from imshop_push.dispatch.stages.dead_letter import DeadLetter
from imshop_push.dispatch.stages.history import History, ReserveHistoryTime
from imshop_push.dispatch.stages.history_copies import WriteKeptHistory
from imshop_push.dispatch.stages.hold import Hold
from imshop_push.dispatch.stages.intake import DropExpired, Parse
from imshop_push.dispatch.stages.join_waiting import AnnounceArriving
from imshop_push.dispatch.stages.keys_kept import KeysKept
from imshop_push.dispatch.stages.pending import ReleasePending
from imshop_push.dispatch.stages.plan import Plan
from imshop_push.dispatch.stages.progress import EarlierProgress
from imshop_push.dispatch.stages.send import Send
from imshop_push.dispatch.stages.settle import Settle
from imshop_push.dispatch.stages.supersede import Supersede
from imshop_push.dispatch.stages.take_pending import TakePending
from imshop_push.domain.batch import Batch
from imshop_push.domain.collapse import VersionStore
from imshop_push.domain.history import HistoryWriter
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.lanes import Lanes
from imshop_push.domain.model import Deadline, RecordResult
from imshop_push.domain.observability import MetricSink
from imshop_push.domain.pending import PendingPool
from imshop_push.domain.rate_limit import RateLimiter
from imshop_push.domain.send_time import SendTime
from imshop_push.domain.state import StateStore

STAGES: tuple[Callable[[Context], Stage], ...] = (
    ReserveHistoryTime,
    TakePending,
    WriteKeptHistory,
    Parse,
    RecordCancels,
    DropExpired,
    Hold,
    AnnounceArriving,
    Claim,
    EarlierProgress,
    Supersede,
    Plan,
    Send,
    History,
    Settle,
    DeadLetter,
    KeysKept,
    ReleasePending,
)


class Dispatcher:
    def __init__(
        self,
        *,
        api: PushApi,
        limiter: RateLimiter,
        state: StateStore,
        dead_letters: DeadLetterSink | None,
        backlog: BacklogSink,
        metric: MetricSink,
        max_recipients: int,
        rate_limit_requests: int,
        rate_limit_window_seconds: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        versions: VersionStore | None = None,
        bulk_queue_arn: str | None = None,
        history: HistoryWriter | None = None,
        pending: PendingPool | None = None,
        send_time: SendTime | None = None,
    ) -> None:
        limits = Limits(max_recipients, rate_limit_requests, rate_limit_window_seconds)
        ctx = Context(
            api,
            limiter,
            state,
            dead_letters,
            backlog,
            metric,
            limits,
            clock=clock,
            sleep=sleep,
            lanes=Lanes(bulk_queue_arn),
            history=history,
            pending=pending,
            send_time=send_time or SendTime(),
        )
        if versions is not None:
            ctx = replace(ctx, versions=versions)
        self._stages = tuple(stage(ctx) for stage in STAGES)

    def dispatch(self, messages: Sequence[InboundMessage], *, deadline: Deadline) -> dict[str, RecordResult]:
        batch = Batch.of(messages, deadline)
        for stage in self._stages:
            stage(batch)
        return batch.results()
