"""The history webhook's Lambda entry point (`functions/notification_history/app.py` re-exports it): Powertools
wiring around `HistoryApi`. It lives in the layer beside the dispatcher's wiring so that one type check sees both
functions (two modules named `app` cannot share one).

Built on the first request, not at import: a configuration error is a logged 503, not a crashed environment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imshop_push.domain.bearer_key import ConfigError, bearer_key
from imshop_push.entrypoints.config import HistorySettings, ParameterUnreadableError, read_secure_string
from imshop_push.entrypoints.history_api import HistoryApi, KeyUnavailableError

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"imshop_push"})
for _noisy in ("urllib3", "botocore"):  # botocore at DEBUG would log SSM's answer: the decrypted key
    logging.getLogger(_noisy).setLevel(logging.WARNING)
metrics = Metrics()
_api: HistoryApi | None = None

type Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def count(name: str, value: int) -> None:
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def parameter_key(name: str, read: Callable[[str], str] = read_secure_string) -> Callable[[], str]:
    """The key from SSM, cached for a few minutes: a rotated key is picked up without a redeploy. A key stored with
    a final newline is the key without it; one that no caller could ever send lets nobody in, and says so by the
    parameter's name, never by its value."""
    variable = "HISTORY_API_KEY_PARAMETER"

    def key() -> str:
        try:
            value = read(name)
        except ParameterUnreadableError as e:
            raise KeyUnavailableError(f"cannot read {variable}: {e}") from None
        if not value:
            raise KeyUnavailableError(f"the parameter named by {variable} is empty")
        try:
            return bearer_key(value, source=f"the parameter named by {variable}")
        except ConfigError as e:
            raise KeyUnavailableError(str(e)) from None

    return key


def build_api(settings: HistorySettings) -> HistoryApi:
    import boto3  # noqa: PLC0415

    from imshop_push.adapters.history_dynamodb import DynamoDBHistoryReader  # noqa: PLC0415

    fixed = settings.api_key
    return HistoryApi(
        DynamoDBHistoryReader(boto3.client("dynamodb"), settings.table_name),
        key=(lambda: fixed) if fixed is not None else parameter_key(settings.api_key_parameter or ""),
        max_items=settings.max_items,
        retention_days=settings.retention_days,
        metric=count,
    )


def api() -> HistoryApi:
    global _api  # noqa: PLW0603 - one per execution environment, by design
    if _api is None:
        _api = build_api(HistorySettings.from_env())
    return _api


def make_handler(api: Callable[[], HistoryApi] = api) -> Handler:
    """Lambda's entry point around `api()`, or, in the tests, around a HistoryApi given fakes."""

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            webhook = api()
        except ConfigError as e:
            logger.error("invalid configuration", extra={"error": str(e)})
            return {"statusCode": 503, "headers": {}, "body": ""}
        return webhook.handle(event)

    return lambda_handler


lambda_handler = make_handler()
