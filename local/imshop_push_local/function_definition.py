"""A function of the template as the local event source runs it: handler, code, timeout, environment and
SQS event sources, resolved and time-scaled.

Kept apart from the walk over the template (``stack_builder``) because this is where SAM's and Lambda's
defaults stand in for what the template leaves out, and where ``LocalTuning`` compresses the function's
durations; a reader checking "what does the local function get" reads this module alone.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from imshop_push_local.local_tuning import LocalTuning
from imshop_push_local.stack_model import LocalFunction, LocalQueue, SqsMapping

# Lambda's defaults where the template says nothing; MaximumConcurrency has none (up to 1000 pollers),
# two local workers stand in for "several".
_DEFAULT_BATCH_SIZE = 10
_DEFAULT_CONCURRENCY = 2
_SAM_DEFAULT_TIMEOUT = 3.0
_SAM_DEFAULT_MEMORY = 128
_SECONDS_VARIABLE = re.compile(r"_SECONDS$")


def local_function(
    properties: Mapping[str, Any],
    *,
    logical_id: str,
    name: str,
    code_paths: tuple[str, ...],
    queues: Collection[LocalQueue],
    tuning: LocalTuning,
) -> LocalFunction:
    """``properties``: the function's, merged with the template's Globals and resolved."""
    timeout = float(properties.get("Timeout", _SAM_DEFAULT_TIMEOUT)) * tuning.time_scale
    return LocalFunction(
        logical_id=logical_id,
        name=name,
        handler=str(properties["Handler"]),
        code_paths=code_paths,
        timeout_seconds=tuning.function_timeout_seconds or timeout,
        memory_mb=int(properties.get("MemorySize", _SAM_DEFAULT_MEMORY)),
        environment={
            **_scaled(properties.get("Environment", {}).get("Variables", {}), tuning),
            **tuning.environment,
        },
        sqs_sources=tuple(
            _sqs_mapping(event["Properties"], queues, tuning)
            for event in (properties.get("Events") or {}).values()
            if event.get("Type") == "SQS" and event["Properties"].get("Enabled", True)
        ),
    )


def _scaled(variables: Mapping[str, Any], tuning: LocalTuning) -> dict[str, str]:
    """Environment values as Lambda passes them (strings), ``*_SECONDS`` durations time-scaled."""
    scaled: dict[str, str] = {}
    for name, value in variables.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if _SECONDS_VARIABLE.search(name) and _is_number(text):
            text = f"{float(text) * tuning.time_scale:g}"
        scaled[name] = text
    return scaled


def _sqs_mapping(properties: Mapping[str, Any], queues: Collection[LocalQueue], tuning: LocalTuning) -> SqsMapping:
    arn = str(properties["Queue"])
    [queue] = [q for q in queues if q.arn == arn]
    window = float(properties.get("MaximumBatchingWindowInSeconds", 0)) * tuning.time_scale
    if tuning.batching_window_seconds is not None:
        window = tuning.batching_window_seconds
    concurrency = (properties.get("ScalingConfig") or {}).get("MaximumConcurrency", _DEFAULT_CONCURRENCY)
    return SqsMapping(
        queue_url=queue.url,
        queue_arn=queue.arn,
        batch_size=tuning.batch_size or int(properties.get("BatchSize", _DEFAULT_BATCH_SIZE)),
        batching_window_seconds=window,
        concurrency=tuning.concurrency or int(concurrency),
        report_batch_item_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or []),
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
