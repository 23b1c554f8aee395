"""Wiring: settings, secrets and AWS clients become one `Dispatcher`, once per execution environment.

Kept apart from the handler so `make demo`, the tests and the benchmark run exactly the wiring Lambda runs.
boto3 and Powertools Parameters are imported only when the configuration needs them: a local run without
AWS state does not pay their import time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from imshop_push.config import ConfigError, Settings, check_api_url
from imshop_push.dispatcher import Deadline, Dispatcher, Disposition, RecordResult
from imshop_push.imshop_client import ImshopClient
from imshop_push.inbound import InboundMessage
from imshop_push.observability import MetricSink
from imshop_push.rate_limit import InProcessRateLimiter, RateLimiter, WindowPolicy
from imshop_push.state import InProcessStateStore, StateStore

logger = logging.getLogger(__name__)

SECRET_CACHE_SECONDS = 300
FINISH_RESERVE_SECONDS = 3.0
FINISH_RESERVE_PER_RECORD_SECONDS = 0.0015
FINISH_RESERVE_FRACTION = 0.25


def invocation_deadline(
    hard: float, remaining_seconds: float, *, records: int, worst_case_call_seconds: float
) -> Deadline:
    """The last moment a call may start: a whole call, then settling, re-enqueueing and dead-lettering (batched
    writes, ~1 ms a record) must still fit before the function times out at `hard`."""
    reserve = min(
        FINISH_RESERVE_SECONDS + FINISH_RESERVE_PER_RECORD_SECONDS * records,
        remaining_seconds * FINISH_RESERVE_FRACTION,
    )
    return Deadline(hard=hard, last_call_start=hard - reserve - worst_case_call_seconds)


class SecretsUnavailableError(RuntimeError):
    """The URL or key parameter cannot be read now (missing, no permission, SSM down): retry later."""


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        metric: MetricSink,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._metric = metric
        self._clock = clock
        self._sleep = sleep
        self._clients: dict[str, Any] = {}
        self._dispatcher_cache: Dispatcher | None = None
        self._api_identity: tuple[str, str | None] | None = None
        self._api_worst_case = 0.0
        self._state: StateStore | None = None
        if settings.state_table_name is None:
            logger.warning("STATE_TABLE_NAME is unset: rate limit and idempotency live in this process only")
        if settings.dead_letter_queue_url is None:
            logger.warning("DEAD_LETTER_QUEUE_URL is unset: poison requests are logged and dropped")

    def handle(self, messages: Sequence[InboundMessage], *, remaining_seconds: float) -> dict[str, RecordResult]:
        now = self._clock()  # before any setup: a cold start's imports and SSM reads come out of the same budget
        hard = now + remaining_seconds
        try:
            dispatcher = self._dispatcher()
        except (SecretsUnavailableError, ConfigError) as e:
            logger.error("configuration unavailable; the whole batch goes back to SQS: %s", e)
            return {msg.message_id: RecordResult(Disposition.RETRY, "configuration unavailable") for msg in messages}
        deadline = invocation_deadline(
            hard, remaining_seconds, records=len(messages), worst_case_call_seconds=self._api_worst_case
        )
        if deadline.last_call_start <= now:
            logger.error("the function timeout leaves no time for one IMSHOP call; raise it above HTTP_TIMEOUT_SECONDS")
        return dispatcher.dispatch(messages, deadline=deadline)

    def _dispatcher(self) -> Dispatcher:
        """Cached per execution environment; rebuilt only when the URL or key parameter changed."""
        url, key = self._secrets()
        if self._dispatcher_cache is not None and self._api_identity == (url, key):
            return self._dispatcher_cache
        s = self.settings
        api = ImshopClient(
            url,
            api_key=key,
            connect_timeout_seconds=s.connect_timeout_seconds,
            read_timeout_seconds=s.http_timeout_seconds,
        )
        from imshop_push.sqs_outbox import DeadLetterQueue, SourceQueue  # noqa: PLC0415

        def sqs() -> Any:
            return self._client("sqs")

        self._api_worst_case = api.worst_case_seconds
        self._api_identity = (url, key)
        self._state = self._state or self._make_state()
        self._dispatcher_cache = Dispatcher(
            api=api,
            limiter=self._make_limiter(url, api.worst_case_seconds),
            state=self._state,
            dead_letters=DeadLetterQueue(sqs, s.dead_letter_queue_url) if s.dead_letter_queue_url else None,
            backlog=SourceQueue(sqs),
            metric=self._metric,
            max_recipients=s.max_recipients_per_request,
            rate_limit_requests=s.rate_limit_requests,
            rate_limit_window_seconds=s.rate_limit_window_seconds,
            clock=self._clock,
            sleep=self._sleep,
        )
        return self._dispatcher_cache

    def _secrets(self) -> tuple[str, str | None]:
        s = self.settings
        url = s.api_url or self._parameter(s.api_url_parameter, "IMSHOP_API_URL_PARAMETER")
        if s.api_url is None:
            check_api_url(url, variable="IMSHOP_API_URL_PARAMETER (its value)", sam_local=s.sam_local)
        key = s.api_key
        if key is None and s.api_key_parameter:
            key = self._parameter(s.api_key_parameter, "IMSHOP_API_KEY_PARAMETER")
        return url, key

    def _parameter(self, name: str | None, variable: str) -> str:
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - imports boto3

        try:
            value = parameters.get_parameter(name or "", decrypt=True, max_age=SECRET_CACHE_SECONDS)
        except parameters.exceptions.GetParameterError as e:
            raise SecretsUnavailableError(f"cannot read the SSM parameter named by {variable}: {e}") from None
        if not value:
            raise SecretsUnavailableError(f"the SSM parameter named by {variable} is empty")
        return str(value)

    def _make_limiter(self, url: str, worst_case_call_seconds: float) -> RateLimiter:
        s = self.settings
        policy = WindowPolicy(
            limit=s.rate_limit_requests,
            window_seconds=s.rate_limit_window_seconds,
            margin_seconds=s.rate_limit_margin_seconds,
            worst_case_call_seconds=worst_case_call_seconds,
        )
        if s.state_table_name is None:
            return InProcessRateLimiter(policy)
        from imshop_push.rate_limit_dynamodb import DynamoDBRateLimiter, limiter_item_id  # noqa: PLC0415

        return DynamoDBRateLimiter(self._client("dynamodb"), s.state_table_name, limiter_item_id(url), policy)

    def _make_state(self) -> StateStore:
        s = self.settings
        if s.state_table_name is None:
            return InProcessStateStore()
        from imshop_push.state_dynamodb import DynamoDBStateStore  # noqa: PLC0415

        return DynamoDBStateStore(self._client("dynamodb"), s.state_table_name, ttl_seconds=s.state_ttl_seconds)

    def _client(self, service: str) -> Any:
        """boto3 clients honour AWS_ENDPOINT_URL themselves, so a local emulator needs no code path of its own."""
        if service not in self._clients:
            import boto3  # noqa: PLC0415 - ~0.3 s of import, paid only when AWS is used

            self._clients[service] = boto3.client(service)  # type: ignore[call-overload]
        return self._clients[service]
