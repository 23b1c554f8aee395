"""The Lambda SQS event source (the poller behind an event source mapping), emulated on loopback.

Integration tests and ``make demo`` must see what a deployed function sees, or they prove little:
real SQS events, receive counts that grow on redelivery, visibility timeouts, redrive to the DLQ
(done by SQS itself, here by moto), partial batch responses, cold starts, crashed executions and
timeouts. Each worker is a process started with "spawn", i.e. a fresh execution environment that
imports the handler once and then serves invocation after invocation, like a warm Lambda.

The process that owns an ``SqsEventSource`` must guard its entry point with
``if __name__ == "__main__":`` (the usual rule for multiprocessing's spawn start method).
"""

from __future__ import annotations

import base64
import datetime
import importlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_ready
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from imshop_push_local.aws_emulator import make_client

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

Handler = Callable[[dict[str, Any], Any], Any]

# SQS caps one ReceiveMessage at 10 messages; larger batches take several calls, as Lambda's do.
_SQS_MAX_RECEIVE = 10
# Long-poll the first message of a batch, but briefly: a worker also checks that its parent lives.
_RECEIVE_WAIT_SECONDS = 1
# Inside an open batching window, short polls at this pace gather the rest of the batch.
_WINDOW_POLL_SECONDS = 0.02
_MONITOR_INTERVAL_SECONDS = 0.05
_DRAIN_POLL_SECONDS = 0.05
# The parent ends an invocation this long after its function timeout (the brief: timeout + 1 s).
_TIMEOUT_GRACE_SECONDS = 1.0
# A worker whose handler fails to import is restarted no faster than this, not in a hot loop.
_INIT_FAILURE_BACKOFF_SECONDS = 1.0
_RESTART_WAIT_SECONDS = 10.0
_STOP_GRACE_SECONDS = 2.0
_MAX_ERROR_CHARS = 2000
_FALLBACK_ACCOUNT = "123456789012"

# Settings of the developer's shell that could lead the handler's boto3 anywhere but the emulator
# (a profile with real credentials, a per-service endpoint, or an instruction to ignore
# AWS_ENDPOINT_URL). They are dropped in the worker unless the event source's env sets them.
_FOREIGN_AWS_SETTINGS = frozenset(
    {
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    }
)


@dataclass(frozen=True)
class EventSourceConfig:
    """The event source mapping and the function settings that shape an invocation."""

    queue_url: str
    queue_arn: str
    region: str
    handler: str = "app:lambda_handler"
    batch_size: int = 10
    batching_window_seconds: float = 0.2
    function_timeout_seconds: float = 5.0
    concurrency: int = 2
    function_name: str = "imshop-push-send-notifications"
    memory_limit_in_mb: int = 256


@dataclass
class InvocationReport:
    """What one invocation did to its batch, as the poller judged it.

    ``failed_ids`` are the messages left on the queue (to reappear after the visibility timeout);
    all of them when ``error`` is set (an exception, a timeout, a crash or a malformed response).
    """

    worker: int
    request_id: str
    message_ids: list[str]
    failed_ids: list[str]
    error: str | None
    duration_s: float


class LambdaContext:
    """The parts of the Python runtime's context object that handlers and Powertools read."""

    def __init__(
        self,
        *,
        function_name: str,
        memory_limit_in_mb: int,
        invoked_function_arn: str,
        aws_request_id: str,
        log_group_name: str,
        log_stream_name: str,
        timeout_seconds: float,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = aws_request_id
        self.log_group_name = log_group_name
        self.log_stream_name = log_stream_name
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# --------------------------------------------------------------------------------------------
# The worker: one execution environment. Everything below up to SqsEventSource runs in it.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Environment:
    """Per-execution-environment names, fixed at cold start as in Lambda."""

    config: EventSourceConfig
    log_group_name: str
    log_stream_name: str
    function_arn: str


def _worker_main(
    *,
    index: int,
    config: EventSourceConfig,
    env: dict[str, str],
    sys_path: list[str],
    conn: Connection,
    parent_pid: int,
) -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    environment = _new_environment(config)
    try:
        _prepare_os_environ(environment, env)
        # First on the path, as the function's code and layers are in Lambda's.
        sys.path[:] = [*sys_path, *(p for p in sys.path if p not in sys_path)]
        handler = load_handler(config.handler)
        # No silent retries: a ReceiveMessage retried after a lost answer would hide messages that
        # SQS already counted as received (they return only after the visibility timeout).
        sqs: SQSClient = make_client("sqs", env["AWS_ENDPOINT_URL"], config.region, max_attempts=1)
    except Exception:
        text = traceback.format_exc()
        sys.stderr.write(f"[event source worker {index}] init failed:\n{text}")
        _send(conn, ("init_error", text[-_MAX_ERROR_CHARS:]))
        raise SystemExit(1) from None
    _send(conn, ("ready",))

    # An orphaned worker would poll the queue forever; it stops when its parent is gone.
    while os.getppid() == parent_pid:
        try:
            messages = _collect_batch(sqs, config)
        except Exception as exc:  # the emulator restarting, or going away at teardown
            sys.stderr.write(f"[event source worker {index}] receive failed: {exc}\n")
            time.sleep(0.5)
            continue
        if messages:
            _invoke(index=index, handler=handler, sqs=sqs, environment=environment, messages=messages, conn=conn)


def load_handler(spec: str) -> Handler:
    """Resolve a Lambda-style handler spec, ``module:function`` (``module.function`` also accepted)."""
    module_name, function_name = _split_handler(spec)
    handler = getattr(importlib.import_module(module_name), function_name)
    if not callable(handler):
        raise TypeError(f"handler {spec!r} is not callable")
    return handler  # type: ignore[no-any-return]


def _split_handler(spec: str) -> tuple[str, str]:
    module_name, sep, function_name = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not sep or not module_name or not function_name:
        raise ValueError(f"handler must look like 'module:function', got {spec!r}")
    return module_name, function_name


def _new_environment(config: EventSourceConfig) -> _Environment:
    parts = config.queue_arn.split(":")
    account = parts[4] if len(parts) == 6 and parts[4] else _FALLBACK_ACCOUNT
    today = datetime.datetime.now(datetime.UTC)
    return _Environment(
        config=config,
        log_group_name=f"/aws/lambda/{config.function_name}",
        log_stream_name=f"{today:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}",
        function_arn=f"arn:aws:lambda:{config.region}:{account}:function:{config.function_name}",
    )


def _prepare_os_environ(environment: _Environment, env: dict[str, str]) -> None:
    """Set the function's environment before its module is imported, as Lambda does.

    Module-level code (clients, Powertools objects) reads the environment at import time.
    """
    for name in list(os.environ):
        if name in _FOREIGN_AWS_SETTINGS or name.startswith("AWS_ENDPOINT_URL_"):
            del os.environ[name]
    config = environment.config
    os.environ.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_limit_in_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": environment.log_group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": environment.log_stream_name,
        }
    )
    os.environ.update(env)


def _collect_batch(sqs: SQSClient, config: EventSourceConfig) -> list[MessageTypeDef]:
    """Gather up to batch_size messages, or fewer once the batching window has closed.

    The window opens with the first message received, like MaximumBatchingWindowInSeconds.
    """
    batch: list[MessageTypeDef] = []
    deadline: float | None = None
    while len(batch) < config.batch_size:
        response = sqs.receive_message(
            QueueUrl=config.queue_url,
            MaxNumberOfMessages=min(_SQS_MAX_RECEIVE, config.batch_size - len(batch)),
            WaitTimeSeconds=_RECEIVE_WAIT_SECONDS if deadline is None else 0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        received = response.get("Messages", [])
        batch.extend(received)
        if deadline is None:
            if not received:
                return batch
            deadline = time.monotonic() + config.batching_window_seconds
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if not received:
            time.sleep(min(_WINDOW_POLL_SECONDS, remaining))
    return batch


def _invoke(
    *,
    index: int,
    handler: Handler,
    sqs: SQSClient,
    environment: _Environment,
    messages: list[MessageTypeDef],
    conn: Connection,
) -> None:
    config = environment.config
    # Lambda hands the function parsed JSON: a fresh structure with nothing shared with the poller.
    event: dict[str, Any] = json.loads(json.dumps({"Records": [to_event_record(m, config) for m in messages]}))
    message_ids = [record["messageId"] for record in event["Records"]]
    request_id = str(uuid.uuid4())
    context = LambdaContext(
        function_name=config.function_name,
        memory_limit_in_mb=config.memory_limit_in_mb,
        invoked_function_arn=environment.function_arn,
        aws_request_id=request_id,
        log_group_name=environment.log_group_name,
        log_stream_name=environment.log_stream_name,
        timeout_seconds=config.function_timeout_seconds,
    )
    # Announced before the call, so that the parent can time the invocation out and account for
    # a batch whose worker dies mid-invocation.
    _send(conn, ("start", request_id, message_ids))
    started = time.monotonic()
    error: str | None
    try:
        result = handler(event, context)
    except Exception as exc:
        # Lambda logs the traceback and reports the function error; the batch stays on the queue.
        traceback.print_exc()
        failed_ids, error = list(message_ids), f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
    else:
        failed_ids, error = interpret_response(result, message_ids)
    duration = time.monotonic() - started

    failed = set(failed_ids)
    try:
        _delete(sqs, config.queue_url, [m for m in messages if m.get("MessageId") not in failed])
    except Exception as exc:  # the messages come back after the visibility timeout: at-least-once
        sys.stderr.write(f"[event source worker {index}] DeleteMessageBatch failed: {exc}\n")
    _send(
        conn,
        (
            "done",
            InvocationReport(
                worker=index,
                request_id=request_id,
                message_ids=message_ids,
                failed_ids=failed_ids,
                error=error,
                duration_s=duration,
            ),
        ),
    )


def to_event_record(message: MessageTypeDef, config: EventSourceConfig) -> dict[str, Any]:
    """One SQS API message as Lambda presents it: lower-camel keys, base64 binaries, list fields."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _to_event_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(
        {
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": config.queue_arn,
            "awsRegion": config.region,
        }
    )
    return record


def _to_event_attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _b64(value["BinaryValue"])
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [_b64(item) for item in value.get("BinaryListValues", [])]
    attribute["dataType"] = value["DataType"]
    return attribute


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def interpret_response(result: Any, message_ids: list[str]) -> tuple[list[str], str | None]:
    """Judge a handler's return value the way Lambda does with ReportBatchItemFailures.

    Returns the ids to leave on the queue and an error when the whole batch counts as failed.
    Success: None, ``{}``, no or an empty ``batchItemFailures``. Whole batch failed: anything that
    is not JSON, not an object, or names an item that is empty, unnamed or not in the batch.
    """
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return list(message_ids), f"Runtime.MarshalError: response is not JSON serializable: {exc}"
    if result is None:
        return [], None
    if not isinstance(result, dict):
        return list(message_ids), f"malformed response: expected an object, got {type(result).__name__}"
    failures = result.get("batchItemFailures")
    if failures is None:
        return [], None
    if not isinstance(failures, list):
        return list(message_ids), "malformed response: batchItemFailures is not a list"
    known = set(message_ids)
    failed: list[str] = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier:
            return list(message_ids), f"malformed response: bad batch item failure {item!r}"
        if identifier not in known:
            return list(message_ids), f"malformed response: itemIdentifier {identifier!r} is not in the batch"
        if identifier not in failed:
            failed.append(identifier)
    return failed, None


def _delete(sqs: SQSClient, queue_url: str, messages: list[MessageTypeDef]) -> None:
    for start in range(0, len(messages), _SQS_MAX_RECEIVE):
        chunk = messages[start : start + _SQS_MAX_RECEIVE]
        response = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
        )
        for failure in response.get("Failed", []):
            # The message stays and comes back; that is SQS's at-least-once, not a poller bug.
            sys.stderr.write(f"[event source] delete failed: {failure}\n")


def _send(conn: Connection, payload: tuple[Any, ...]) -> None:
    try:
        conn.send(payload)
    except OSError:  # the parent is gone; nobody is left to serve
        raise SystemExit(0) from None


# --------------------------------------------------------------------------------------------
# The parent: supervises workers, keeps the reports, restarts crashed or timed-out executions.
# --------------------------------------------------------------------------------------------


@dataclass
class _InFlight:
    request_id: str
    message_ids: list[str]
    started: float


@dataclass
class _Worker:
    index: int
    generation: int
    process: BaseProcess
    conn: Connection
    spawned: float
    ready: bool = False
    eof: bool = False
    in_flight: _InFlight | None = None
    kill_reason: str | None = None
    dead_since: float | None = None
    restart_at: float = 0.0


class SqsEventSource:
    """Polls one queue with ``concurrency`` workers and invokes the handler like Lambda would.

    Each worker talks to the parent over its own pipe rather than a shared queue: a worker killed
    in the middle of a write can then corrupt only its own channel, which is discarded with it.
    """

    def __init__(self, config: EventSourceConfig, *, env: dict[str, str], sys_path: list[str] | None = None) -> None:
        if not env.get("AWS_ENDPOINT_URL"):
            raise ValueError("env must set AWS_ENDPOINT_URL: the event source never polls real AWS")
        _split_handler(config.handler)
        if config.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if config.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if config.batching_window_seconds < 0 or config.function_timeout_seconds <= 0:
            raise ValueError("batching window must be >= 0 and function timeout > 0")
        self._config = config
        self._env = dict(env)
        self._sys_path = list(sys_path or [])
        self._mp = multiprocessing.get_context("spawn")
        self._lock = threading.Condition(threading.RLock())
        self._workers: list[_Worker] = []
        self._reports: list[InvocationReport] = []
        self._init_errors: list[str] = []
        self._stopping = threading.Event()
        self._stopped = False
        self._monitor: threading.Thread | None = None
        self._sqs: SQSClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._monitor is not None:
            raise RuntimeError("an SqsEventSource can be started only once")
        with self._lock:
            self._workers = [self._spawn(index, generation=0) for index in range(self._config.concurrency)]
        self._monitor = threading.Thread(target=self._monitor_loop, name="sqs-event-source", daemon=True)
        self._monitor.start()
        return self

    def stop(self) -> None:
        """Stop at once: an invocation cut short leaves its batch to the visibility timeout."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=_STOP_GRACE_SECONDS + 1)
        with self._lock:
            workers = list(self._workers)
            for worker in workers:
                if worker.dead_since is None and worker.process.is_alive():
                    worker.process.terminate()
            deadline = time.monotonic() + _STOP_GRACE_SECONDS
            for worker in workers:
                worker.process.join(max(0.0, deadline - time.monotonic()))
            for worker in workers:
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(_STOP_GRACE_SECONDS)
            for worker in workers:
                if worker.dead_since is None:
                    self._bury_locked(worker, "event source stopped during the invocation")
                if worker.process.exitcode is not None:
                    worker.process.close()
            self._lock.notify_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observation and faults --------------------------------------------------------------

    def reports(self) -> list[InvocationReport]:
        with self._lock:
            self._pump_locked()
            return list(self._reports)

    def worker_pids(self) -> list[int | None]:
        """The current process of each worker, to tell a restarted execution from the old one."""
        with self._lock:
            return [w.process.pid if w.dead_since is None else None for w in self._workers]

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker, as a crashed execution environment; return once it is replaced.

        Its in-flight batch is neither deleted nor released: SQS makes it visible again only when
        the visibility timeout runs out, exactly as after a crash in Lambda.
        """
        if self._monitor is None or self._stopping.is_set():
            raise RuntimeError("the event source is not running")
        with self._lock:
            worker = self._workers[index]
            generation = worker.generation
            if worker.dead_since is None:
                worker.kill_reason = "Runtime.ExitError: execution environment killed (simulated crash)"
                worker.process.kill()
            deadline = time.monotonic() + _RESTART_WAIT_SECONDS
            while self._workers[index].generation == generation:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    raise TimeoutError(f"worker {index} was not restarted")
                self._lock.wait(remaining)

    def drain(self, *, timeout: float, include_in_flight: bool = True) -> bool:
        """Wait until the queue has nothing visible (and, by default, nothing in flight).

        In-flight also covers an invocation whose deletes are done but whose report has not yet
        arrived, so that ``reports()`` is complete when this returns True.

        Empty must be seen twice in a row: moto reads the clock once per count, so a message whose
        visibility timeout ends between the "visible" and the "not visible" count is in neither.
        """
        deadline = time.monotonic() + timeout
        names: list[Any] = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
        if include_in_flight:
            names.append("ApproximateNumberOfMessagesNotVisible")
        seen_empty = False
        while True:
            with self._lock:
                if self._init_errors:
                    raise RuntimeError(f"a worker failed to initialise:\n{self._init_errors[0]}")
            attributes = self._client().get_queue_attributes(QueueUrl=self._config.queue_url, AttributeNames=names)
            counts = [int(value) for value in attributes.get("Attributes", {}).values()]
            empty = not any(counts) and not (include_in_flight and self._busy())
            if empty and seen_empty:
                return True
            seen_empty = empty
            if time.monotonic() >= deadline:
                return False
            time.sleep(_DRAIN_POLL_SECONDS)

    # -- supervision -------------------------------------------------------------------------

    def _client(self) -> SQSClient:
        if self._sqs is None:
            self._sqs = make_client("sqs", self._env["AWS_ENDPOINT_URL"], self._config.region)
        return self._sqs

    def _busy(self) -> bool:
        with self._lock:
            self._pump_locked()
            return any(w.in_flight is not None for w in self._workers)

    def _spawn(self, index: int, generation: int) -> _Worker:
        reader, writer = self._mp.Pipe(duplex=False)
        process = self._mp.Process(
            target=_worker_main,
            kwargs={
                "index": index,
                "config": self._config,
                "env": self._env,
                "sys_path": self._sys_path,
                "conn": writer,
                "parent_pid": os.getpid(),
            },
            name=f"{self._config.function_name}-{index}.{generation}",
            daemon=True,  # never outlive the parent, even if stop() is never called
        )
        process.start()
        # Only the worker may hold the writing end: its death must read as EOF here.
        writer.close()
        return _Worker(index=index, generation=generation, process=process, conn=reader, spawned=time.monotonic())

    def _monitor_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                live = [w for w in self._workers if w.dead_since is None]
                waitables: list[Any] = [w.conn for w in live if not w.eof]
                waitables += [w.process.sentinel for w in live]
            # Only this thread closes connections, so none of these can be closed while waiting.
            wait_for_ready(waitables, timeout=_MONITOR_INTERVAL_SECONDS)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._supervise_locked()
                except Exception:  # keep supervising: a dead monitor would silently stop restarts
                    traceback.print_exc()

    def _supervise_locked(self) -> None:
        self._pump_locked()
        now = time.monotonic()
        limit = self._config.function_timeout_seconds + _TIMEOUT_GRACE_SECONDS
        for position, worker in enumerate(self._workers):
            if worker.dead_since is None:
                if not worker.process.is_alive():
                    exitcode = worker.process.exitcode
                    reason = worker.kill_reason or f"Runtime.ExitError: worker exited with {exitcode}"
                    if not worker.ready and worker.kill_reason is None and not self._init_errors:
                        # It died before it could say why (e.g. in the spawn bootstrap): still tell drain().
                        self._init_errors.append(f"worker {worker.index} exited with {exitcode} before it was ready")
                    self._bury_locked(worker, reason)
                elif worker.in_flight is not None and now - worker.in_flight.started > limit:
                    worker.process.kill()
                    worker.process.join(_STOP_GRACE_SECONDS)
                    timeout = self._config.function_timeout_seconds
                    self._bury_locked(worker, f"Task timed out after {timeout:.2f} seconds")
            if worker.dead_since is not None and now >= worker.restart_at:
                worker.process.join(_STOP_GRACE_SECONDS)
                if worker.process.exitcode is not None:
                    worker.process.close()
                self._workers[position] = self._spawn(worker.index, worker.generation + 1)
                self._lock.notify_all()

    def _bury_locked(self, worker: _Worker, reason: str) -> None:
        """Account for a dead worker's batch and release its resources; restart comes later."""
        self._pump_worker_locked(worker)
        now = time.monotonic()
        if worker.in_flight is not None:
            flight = worker.in_flight
            self._reports.append(
                InvocationReport(
                    worker=worker.index,
                    request_id=flight.request_id,
                    message_ids=list(flight.message_ids),
                    failed_ids=list(flight.message_ids),
                    error=reason,
                    duration_s=now - flight.started,
                )
            )
            worker.in_flight = None
        worker.conn.close()
        worker.eof = True
        worker.dead_since = now
        worker.restart_at = now if worker.ready else now + _INIT_FAILURE_BACKOFF_SECONDS

    def _pump_locked(self) -> None:
        for worker in self._workers:
            if worker.dead_since is None:
                self._pump_worker_locked(worker)

    def _pump_worker_locked(self, worker: _Worker) -> None:
        while not worker.eof:
            try:
                if not worker.conn.poll(0):
                    return
                message = worker.conn.recv()
            except Exception:  # EOF, or a message torn by a kill mid-write: the channel is done for
                worker.eof = True
                return
            self._handle_locked(worker, message)

    def _handle_locked(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
        elif kind == "init_error":
            self._init_errors.append(str(message[1]))
        elif kind == "start":
            worker.in_flight = _InFlight(request_id=message[1], message_ids=list(message[2]), started=time.monotonic())
        elif kind == "done":
            self._reports.append(message[1])
            worker.in_flight = None
            self._lock.notify_all()
