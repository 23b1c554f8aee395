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

from imshop_push.config import ConfigError, HistorySettings
from imshop_push.history_api import HistoryApi, KeyUnavailableError

KEY_CACHE_SECONDS = 300

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


def parameter_key(name: str) -> Callable[[], str]:
    """The key from SSM, cached for a few minutes: a rotated key is picked up without a redeploy."""

    def key() -> str:
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - imports boto3

        try:
            value = parameters.get_parameter(name, decrypt=True, max_age=KEY_CACHE_SECONDS)
        except parameters.exceptions.GetParameterError as e:
            raise KeyUnavailableError(f"cannot read HISTORY_API_KEY_PARAMETER: {type(e).__name__}") from None
        if not value:
            raise KeyUnavailableError("the parameter named by HISTORY_API_KEY_PARAMETER is empty")
        return str(value)

    return key


def build_api(settings: HistorySettings) -> HistoryApi:
    import boto3  # noqa: PLC0415

    from imshop_push.history_dynamodb import DynamoDBHistoryReader  # noqa: PLC0415

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
