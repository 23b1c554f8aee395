"""Names of the CloudWatch metrics the dispatcher emits; the dashboard and alarms use the same names."""

from __future__ import annotations

from typing import Protocol

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
HISTORY_ENTRIES_WRITTEN = "HistoryEntriesWritten"
HISTORY_ENTRIES_NOT_WRITTEN = "HistoryEntriesNotWritten"
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
        HISTORY_ENTRIES_WRITTEN,
        HISTORY_ENTRIES_NOT_WRITTEN,
        HISTORY_READS,
        HISTORY_READ_MARKS,
        HISTORY_UNAUTHORIZED,
    }
)


class MetricSink(Protocol):
    """Where counts go: Powertools Metrics in Lambda, a Counter in tests and the demo."""

    def __call__(self, name: str, value: int) -> None: ...
