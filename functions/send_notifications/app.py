"""SQS -> IMSHOP push: the Lambda entry point. Thin on purpose: Powertools wiring around `Runtime`.

The whole batch is dispatched first (merging needs every record at once); Powertools' BatchProcessor then
turns each record's disposition into the partial batch response, so a batch in which every record failed
still answers with `batchItemFailures` naming them all instead of raising.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imshop_push.config import ConfigError, Settings
from imshop_push.inbound import InboundMessage
from imshop_push.model import Disposition, RecordResult
from imshop_push.runtime import Runtime

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
    records = event.get("Records", [])
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
