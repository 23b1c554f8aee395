"""Wiring: settings, secrets and AWS clients become one `Dispatcher`, once per execution environment.

Kept apart from the handler so `make demo`, the tests and the benchmark run exactly the wiring Lambda runs.
Every collaborator comes from a factory that `Runtime` takes as a parameter (production's by default), so a
test hands in fakes instead of patching this module. boto3 and Powertools Parameters are imported only when
the configuration needs them: a local run without AWS state does not pay their import time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from imshop_push.adapters.dead_letters_by_lane import dead_letters_by_lane
from imshop_push.adapters.imshop_client import ImshopClient
from imshop_push.dispatch.pipeline import Dispatcher
from imshop_push.dispatch.ports import BacklogSink, DeadLetterSink, PushApi
from imshop_push.domain.bearer_key import ConfigError, bearer_key
from imshop_push.domain.collapse import VersionStore
from imshop_push.domain.history import HistoryWriter
from imshop_push.domain.inbound import InboundMessage
from imshop_push.domain.lanes import Lanes
from imshop_push.domain.model import (
    FINISH_RESERVE_FRACTION,
    FINISH_RESERVE_PER_RECORD_SECONDS,
    FINISH_RESERVE_SECONDS,
    Deadline,
    Disposition,
    RecordResult,
)
from imshop_push.domain.observability import MetricSink
from imshop_push.domain.pending import PendingPool
from imshop_push.domain.rate_limit import PRE_CALL_ALLOWANCE_SECONDS, RateLimiter, WindowPolicy
from imshop_push.domain.send_time import SendTime
from imshop_push.domain.state import StateStore
from imshop_push.entrypoints.config import ParameterUnreadableError, Settings, check_api_url, read_secure_string
from imshop_push.entrypoints.factories import (
    AwsClients,
    boto3_client,
    dead_letter_queue,
    dynamodb_history_or_none,
    dynamodb_or_in_process_limiter,
    dynamodb_or_in_process_pending,
    dynamodb_or_in_process_state,
    dynamodb_or_in_process_versions,
    source_queue,
)

logger = logging.getLogger(__name__)


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


class ApiClientFactory(Protocol):
    def __call__(
        self, url: str, *, api_key: str | None, connect_timeout_seconds: float, read_timeout_seconds: float
    ) -> PushApi: ...


class Pipeline(Protocol):
    def dispatch(self, messages: Sequence[InboundMessage], *, deadline: Deadline) -> dict[str, RecordResult]: ...


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        metric: MetricSink,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        api_client: ApiClientFactory = ImshopClient,
        state_store: Callable[[Settings, AwsClients], StateStore] = dynamodb_or_in_process_state,
        limiter: Callable[[Settings, WindowPolicy, AwsClients], RateLimiter] = dynamodb_or_in_process_limiter,
        dead_letter_sink: Callable[[Callable[[], Any], str], DeadLetterSink] = dead_letter_queue,
        backlog_sink: Callable[[Callable[[], Any]], BacklogSink] = source_queue,
        history: Callable[[Settings, AwsClients], HistoryWriter | None] = dynamodb_history_or_none,
        aws_client: AwsClients = boto3_client,
        pipeline: Callable[..., Pipeline] = Dispatcher,
        version_store: Callable[[Settings, AwsClients], VersionStore] = dynamodb_or_in_process_versions,
        pending_pool: Callable[[Settings, AwsClients], PendingPool | None] = dynamodb_or_in_process_pending,
        parameter: Callable[[str], str] = read_secure_string,
    ) -> None:
        self.settings = settings
        self._metric = metric
        self._clock = clock
        self._sleep = sleep
        self._make_api = api_client
        self._make_state = state_store
        self._make_limiter = limiter
        self._make_dead_letters = dead_letter_sink
        self._make_backlog = backlog_sink
        self._make_history = history
        self._make_aws_client = aws_client
        self._make_pipeline = pipeline
        self._make_versions = version_store
        self._make_pending = pending_pool
        self._read_parameter = parameter
        self._versions: VersionStore | None = None
        self._clients: dict[str, Any] = {}
        self._dispatcher_cache: Pipeline | None = None
        self._api_identity: tuple[str, str | None] | None = None
        self._api_worst_case = 0.0
        self._state: StateStore | None = None
        self._limiter: RateLimiter | None = None
        self._history: HistoryWriter | None = None
        self._pending: list[PendingPool | None] = []  # made once (an in-process pool must outlive a rebuild)
        if settings.state_table_name is None:
            logger.warning("STATE_TABLE_NAME is unset: rate limit and idempotency live in this process only")
        _warn_of_missing_dead_letter_queues(settings)

    def handle(self, messages: Sequence[InboundMessage], *, remaining_seconds: float) -> dict[str, RecordResult]:
        now = self._clock()  # before any setup: a cold start's imports and SSM reads come out of the same budget
        hard = now + remaining_seconds
        try:
            dispatcher = self._dispatcher()
            self._check_a_call_fits(remaining_seconds)
        except (SecretsUnavailableError, ConfigError) as e:
            logger.error("configuration unavailable; the whole batch goes back to SQS: %s", e)
            return {msg.message_id: RecordResult(Disposition.RETRY, "configuration unavailable") for msg in messages}
        deadline = invocation_deadline(
            hard, remaining_seconds, records=len(messages), worst_case_call_seconds=self._api_worst_case
        )
        if deadline.last_call_start <= now:
            logger.error(
                "this batch is too large for one IMSHOP call to fit the function's timeout: it waits as backlog"
            )
        return dispatcher.dispatch(messages, deadline=deadline)

    def _check_a_call_fits(self, remaining_seconds: float) -> None:
        """A function timeout too short for one call and the settling after it, even of an empty batch, would defer
        every request for ever (each copy as stuck as its original) without one failure to alarm on: refused as
        the configuration error it is. The time left at the start of an invocation is the function's timeout."""
        floor = invocation_deadline(
            remaining_seconds, remaining_seconds, records=0, worst_case_call_seconds=self._api_worst_case
        )
        if floor.last_call_start <= 0:
            raise ConfigError(
                f"HTTP_TIMEOUT_SECONDS ({self.settings.http_timeout_seconds:g} s) leaves no time for one IMSHOP call"
                f" and the settling after it within the function's Timeout ({remaining_seconds:.1f} s left at the"
                " start of this invocation): lower HTTP_TIMEOUT_SECONDS or raise the function's Timeout"
            )

    def _dispatcher(self) -> Pipeline:
        """Cached per execution environment; rebuilt only when the URL or key parameter changed."""
        url, key = self._secrets()
        if self._dispatcher_cache is not None and self._api_identity == (url, key):
            return self._dispatcher_cache
        s = self.settings
        api = self._make_api(
            url,
            api_key=key,
            connect_timeout_seconds=s.connect_timeout_seconds,
            read_timeout_seconds=s.http_timeout_seconds,
        )

        def sqs() -> Any:
            return self._client("sqs")

        self._api_worst_case = api.worst_case_seconds
        self._api_identity = (url, key)
        self._state = self._state or self._make_state(s, self._client)
        self._versions = self._versions or self._make_versions(s, self._client)
        self._history = self._history or self._make_history(s, self._client)
        # One window per stack, whatever the URL says: a rotated URL (a new token) is the same integration and the
        # same vendor limit, so the limiter outlives a rebuild (an in-process one keeps its slots).
        policy = self._window_policy(api.worst_case_seconds)
        self._limiter = self._limiter or self._make_limiter(s, policy, self._client)
        dlq_url, bulk_dlq_url = s.dead_letter_queue_url, s.bulk_dead_letter_queue_url
        self._dispatcher_cache = self._make_pipeline(
            api=api,
            limiter=self._limiter,
            state=self._state,
            dead_letters=dead_letters_by_lane(  # each lane's poison to its own DLQ
                Lanes(s.bulk_queue_arn),
                transactional=self._make_dead_letters(sqs, dlq_url) if dlq_url else None,
                bulk=self._make_dead_letters(sqs, bulk_dlq_url) if bulk_dlq_url else None,
            ),
            backlog=self._make_backlog(sqs),
            metric=self._metric,
            max_recipients=s.max_recipients_per_request,
            rate_limit_requests=s.rate_limit_requests,
            rate_limit_window_seconds=s.rate_limit_window_seconds,
            clock=self._clock,
            sleep=self._sleep,
            versions=self._versions,
            bulk_queue_arn=s.bulk_queue_arn,
            history=self._history,
            pending=self._pending_pool(),
            send_time=SendTime(max_ahead_seconds=s.state_ttl_seconds, quiet_hours=s.quiet_hours),
        )
        return self._dispatcher_cache

    def _pending_pool(self) -> PendingPool | None:
        if not self._pending:
            self._pending.append(self._make_pending(self.settings, self._client))
        return self._pending[0]

    def _secrets(self) -> tuple[str, str | None]:
        s = self.settings
        url = s.api_url or self._parameter(s.api_url_parameter, "IMSHOP_API_URL_PARAMETER")
        if s.api_url is None:
            check_api_url(url, variable="IMSHOP_API_URL_PARAMETER (its value)", sam_local=s.sam_local)
        key = s.api_key
        if key is None and s.api_key_parameter:
            variable = "IMSHOP_API_KEY_PARAMETER"
            key = bearer_key(
                self._parameter(s.api_key_parameter, variable), source=f"the SSM parameter named by {variable}"
            )
        return url, key

    def _parameter(self, name: str | None, variable: str) -> str:
        try:
            value = self._read_parameter(name or "")
        except ParameterUnreadableError as e:
            raise SecretsUnavailableError(f"cannot read the SSM parameter named by {variable}: {e}") from None
        if not value:
            raise SecretsUnavailableError(f"the SSM parameter named by {variable} is empty")
        return value

    def _window_policy(self, worst_case_call_seconds: float) -> WindowPolicy:
        s = self.settings
        return WindowPolicy(
            limit=s.rate_limit_requests,
            window_seconds=s.rate_limit_window_seconds,
            margin_seconds=s.rate_limit_margin_seconds,
            worst_case_call_seconds=worst_case_call_seconds + PRE_CALL_ALLOWANCE_SECONDS,
            start_allowance_seconds=PRE_CALL_ALLOWANCE_SECONDS,
        )

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._make_aws_client(service)
        return self._clients[service]


def _warn_of_missing_dead_letter_queues(settings: Settings) -> None:
    """A lane without a dead-letter queue of its own shares the other's (`dead_letters_by_lane.py`): poison
    is dropped only when neither queue is set, and the warning says which lane's poison goes where."""
    transactional, bulk = settings.dead_letter_queue_url, settings.bulk_dead_letter_queue_url
    if transactional is None and bulk is None:
        logger.warning("DEAD_LETTER_QUEUE_URL is unset: poison requests are logged and dropped")
    elif transactional is None:
        logger.warning(
            "DEAD_LETTER_QUEUE_URL is unset: poison of the transactional lane goes to BULK_DEAD_LETTER_QUEUE_URL"
        )
