"""Names of the CloudWatch metrics the dispatcher emits; the dashboard and alarms use the same names."""

from __future__ import annotations

from typing import Protocol

from imshop_push.domain.lanes import Lane

REQUESTS_RECEIVED = "RequestsReceived"
REQUESTS_INVALID = "RequestsInvalid"
REQUESTS_EXPIRED = "RequestsExpired"
DUPLICATES_SKIPPED = "DuplicatesSkipped"
IMSHOP_CALLS_SENT = "ImshopCallsSent"
IMSHOP_CALLS_FAILED = "ImshopCallsFailed"
IMSHOP_CALLS_REJECTED = "ImshopCallsRejected"
IMSHOP_CALLS_AMBIGUOUS = "ImshopCallsAmbiguous"
IMSHOP_CALLS_RATE_LIMITED = "ImshopCallsRateLimited"
RECIPIENTS_SENT = "RecipientsSent"
RATE_LIMIT_WAITS = "RateLimitWaits"
REQUESTS_DEFERRED = "RequestsDeferred"
DEAD_LETTERED = "DeadLettered"
AMBIGUOUS_REDELIVERIES = "AmbiguousRedeliveries"
RETRIES_REQUEUED = "RetriesRequeued"
RECIPIENTS_SUPERSEDED = "RecipientsSuperseded"
REQUESTS_POOLED = "RequestsPooled"  # deferred into the pending pool, to wait with their content
REQUESTS_HELD = "RequestsHeld"  # re-enqueued because not due yet (sendAt, quiet hours): one per hop
CANCELS_RECEIVED = "CancelsReceived"  # cancel messages recorded
REQUESTS_CANCELLED = "RequestsCancelled"  # records of a cancelled request dropped with something left unsent
RECIPIENTS_FALLEN_BACK = "RecipientsFallenBack"  # reached in a fallback's text instead of their own (confirmed)
# Per lane (Lane.metric_prefix + suffix): calls started, calls deferred to the backlog, and how long the
# deferred calls will wait (milliseconds, summed): over a period P, that sum / P is the average number of
# calls waiting (Little's law), from which the dashboard draws the time to drain them at the vendor's limit.
LANE_CALLS = "Calls"
LANE_CALLS_DEFERRED = "CallsDeferred"
LANE_DEFERRED_CALL_MS = "DeferredCallMilliseconds"
LANE_RECIPIENTS_FALLEN_BACK = RECIPIENTS_FALLEN_BACK
LANE_METRICS: frozenset[str] = frozenset(
    lane.metric_prefix + suffix
    for lane in Lane
    for suffix in (LANE_CALLS, LANE_CALLS_DEFERRED, LANE_DEFERRED_CALL_MS, LANE_RECIPIENTS_FALLEN_BACK)
)


def per_lane(suffix: str, lane: Lane) -> str:
    return lane.metric_prefix + suffix


HISTORY_ENTRIES_WRITTEN = "HistoryEntriesWritten"
HISTORY_ENTRIES_NOT_WRITTEN = "HistoryEntriesNotWritten"  # neither written nor kept for later: lost
HISTORY_ENTRIES_KEPT = "HistoryEntriesKept"  # not written in their invocation, kept for a later one
HISTORY_READS = "HistoryReads"
HISTORY_READ_MARKS = "HistoryReadMarks"
HISTORY_UNAUTHORIZED = "HistoryUnauthorized"

METRIC_NAMES: frozenset[str] = frozenset(
    {
        REQUESTS_RECEIVED,
        REQUESTS_INVALID,
        REQUESTS_EXPIRED,
        DUPLICATES_SKIPPED,
        IMSHOP_CALLS_SENT,
        IMSHOP_CALLS_FAILED,
        IMSHOP_CALLS_REJECTED,
        IMSHOP_CALLS_AMBIGUOUS,
        IMSHOP_CALLS_RATE_LIMITED,
        RECIPIENTS_SENT,
        RATE_LIMIT_WAITS,
        REQUESTS_DEFERRED,
        DEAD_LETTERED,
        AMBIGUOUS_REDELIVERIES,
        RETRIES_REQUEUED,
        RECIPIENTS_SUPERSEDED,
        REQUESTS_POOLED,
        REQUESTS_HELD,
        CANCELS_RECEIVED,
        REQUESTS_CANCELLED,
        RECIPIENTS_FALLEN_BACK,
        *LANE_METRICS,
        HISTORY_ENTRIES_WRITTEN,
        HISTORY_ENTRIES_NOT_WRITTEN,
        HISTORY_ENTRIES_KEPT,
        HISTORY_READS,
        HISTORY_READ_MARKS,
        HISTORY_UNAUTHORIZED,
    }
)


class MetricSink(Protocol):
    """Where counts go: Powertools Metrics in Lambda, a Counter in tests and the demo."""

    def __call__(self, name: str, value: int) -> None: ...
