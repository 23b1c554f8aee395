"""SQS -> IMSHOP push: the Lambda entry point. Thin on purpose: Powertools wiring around `Runtime`.

The whole batch is dispatched first (merging needs every record at once); Powertools' BatchProcessor then
turns each record's disposition into the partial batch response, so a batch in which every record failed
still answers with `batchItemFailures` naming them all instead of raising.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imshop_push.domain.bearer_key import ConfigError
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.model import Disposition, RecordResult
from imshop_push.entrypoints.config import Settings
from imshop_push.entrypoints.runtime import Runtime

logger = Logger()
# The domain logs through stdlib logging (no Powertools in the layer's logic); give it the same JSON format.
copy_config_to_registered_loggers(source_logger=logger, include={"imshop_push"})
# At DEBUG, urllib3 logs request paths (the IMSHOP URL's path is its secret token) and botocore logs responses
# (SSM answers with the decrypted URL and key). Whatever level the function runs at, they stay quiet.
for _noisy in ("urllib3", "botocore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_runtime: Runtime | None = None


class RetryLaterError(Exception):
    """Raised for a record that goes back to SQS; its text is the reason, never a secret or a recipient."""


class NotAnSqsBatchError(ValueError):
    """The function was invoked with something other than an SQS event source's batch (a test event, a wrong
    trigger, a manual invoke). Raised before any set-up, so the invocation fails with this one message (naming
    what came, never its content) instead of a KeyError after the secrets were read."""


MAX_DESCRIBED = 5  # kinds of record named in a refusal
_AWS_SOURCE = re.compile(r"aws:[a-z0-9.-]{1,40}")  # an event source is named only when it looks like one


def count(name: str, value: int) -> None:
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def runtime() -> Runtime:
    """Built on the first invocation, not at import: a configuration error becomes a logged, retried batch."""
    global _runtime  # noqa: PLW0603 - one per execution environment, by design
    if _runtime is None:
        _runtime = Runtime(Settings.from_env(), metric=count)
    return _runtime


type Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def make_handler(runtime: Callable[[], Runtime] = runtime) -> Handler:
    """The entry point around the runtime `runtime()` returns: Lambda's own (`lambda_handler`), or, in the
    tests, one whose Runtime was given fakes."""

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return _handle(event, context, runtime)

    return lambda_handler


def _handle(event: dict[str, Any], context: LambdaContext, runtime: Callable[[], Runtime]) -> dict[str, Any]:
    records = _sqs_records(event)
    if not records:  # nothing to do: no configuration or secret is read for it
        return {"batchItemFailures": []}
    messages = [_inbound(record) for record in records]
    try:
        results = runtime().handle(messages, remaining_seconds=context.get_remaining_time_in_millis() / 1000)
    except ConfigError as e:
        logger.error("invalid configuration; the whole batch goes back to SQS", extra={"error": str(e)})
        results = {msg.message_id: _retry("invalid configuration") for msg in messages}

    debug = logger.log_level <= logging.DEBUG

    def record_handler(record: SQSRecord) -> str:
        result = results[record.message_id]
        if result.disposition.is_failure:
            logger.set_correlation_id(record.message_id)
            logger.warning("record goes back to SQS", extra={"reason": result.reason})
            raise RetryLaterError(result.reason)
        if debug:  # a line per delivered record would cost more than handling it (make bench)
            logger.set_correlation_id(record.message_id)
            logger.debug("record done", extra={"disposition": result.disposition.value, "reason": result.reason})
        return result.disposition.value

    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    logger.set_correlation_id(None)
    logger.info(
        "batch done",
        extra={
            "records": len(records),
            "dispositions": _tally(results),
            "failures": len(response.get("batchItemFailures", [])),
        },
    )
    return dict(response)


lambda_handler = make_handler()


def _sqs_records(event: Any) -> list[dict[str, Any]]:
    """The records of an SQS batch; anything else is refused here, before the Runtime is built."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise NotAnSqsBatchError(f"not an SQS batch: the event is {_describe(event)}, without a list of Records")
    foreign = sorted({_describe_record(record) for record in records} - {""})
    if foreign:
        raise NotAnSqsBatchError(f"not an SQS batch: it holds {', '.join(foreign[:MAX_DESCRIBED])}")
    return records


def _describe(event: Any) -> str:
    """What kind of thing came, by its shape alone: neither its values nor its keys (a key may be a phone number)."""
    if isinstance(event, dict):
        if {"detail-type", "source", "detail"} <= event.keys():
            return "an EventBridge event"
        if "message" in event and event.keys() & {"userIds", "installIds"}:
            return "a notification request itself (SQS delivers it as a record's body)"
        return f"an object with {len(event)} keys" if event else "an empty object"
    return "null" if event is None else f"a JSON {type(event).__name__}"


def _describe_record(record: Any) -> str:
    """'' for an SQS record; otherwise what it is, by its event source alone."""
    if not isinstance(record, dict):
        return f"a record that is a JSON {type(record).__name__}"
    source = record.get("eventSource", record.get("EventSource"))
    if source == "aws:sqs":
        return (
            ""
            if isinstance(record.get("messageId"), str) and record["messageId"]
            else "SQS records without a messageId"
        )
    if source is None:
        return "records without an eventSource"
    return f"records from {source!r}" if _AWS_SOURCE.fullmatch(str(source)) else "records from an unknown event source"


def _inbound(record: dict[str, Any]) -> InboundMessage:
    system = record.get("attributes") or {}
    return InboundMessage(
        message_id=record["messageId"],
        body=record.get("body") or "",
        event_source_arn=record.get("eventSourceARN", ""),
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        message_attributes=record.get("messageAttributes") or {},
        sent_timestamp_ms=_millis(system.get("SentTimestamp")),
        first_received_ms=_millis(system.get("ApproximateFirstReceiveTimestamp")),
    )


def _millis(value: Any) -> int | None:
    """SQS's system timestamps (epoch ms as text); absent or malformed: unknown, never a failed batch."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _retry(reason: str) -> RecordResult:
    return RecordResult(Disposition.RETRY, reason)


def _tally(results: dict[str, RecordResult]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for result in results.values():
        tally[result.disposition.value] = tally.get(result.disposition.value, 0) + 1
    return tally
