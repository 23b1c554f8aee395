"""The poller's parent: starts ``concurrency`` workers, keeps their reports, ends invocations past
the function timeout and restarts crashed or timed-out execution environments. What it knows of each
worker is its ``slot``; when a queue counts as drained is ``queue_drain``'s rule."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from multiprocessing.connection import wait as wait_for_ready
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from imshop_push_local.aws_clients import make_client
from imshop_push_local.event_source.messages import EventSourceConfig, InvocationReport
from imshop_push_local.event_source.queue_drain import wait_until_drained
from imshop_push_local.event_source.slot import Slot, spawn, stop_all
from imshop_push_local.event_source.worker import WorkerSpec, worker_main

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_MONITOR_INTERVAL_SECONDS = 0.05
_RESTART_WAIT_SECONDS = 10.0
_STOP_GRACE_SECONDS = 2.0


class SqsEventSource:
    """Polls one queue with ``concurrency`` workers and invokes the handler like Lambda would.

    Each worker talks to the parent over its own pipe rather than a shared queue: a worker killed
    in the middle of a write can then corrupt only its own channel, which is discarded with it.
    """

    def __init__(
        self,
        config: EventSourceConfig,
        *,
        env: dict[str, str],
        sys_path: list[str] | None = None,
        output_path: Path | None = None,
    ) -> None:
        if not env.get("AWS_ENDPOINT_URL"):
            raise ValueError("env must set AWS_ENDPOINT_URL: the event source never polls real AWS")
        config.check()
        self._config = config
        self._env = dict(env)
        self._sys_path = list(sys_path or [])
        self._output_path = None if output_path is None else str(output_path)
        self._mp = multiprocessing.get_context("spawn")
        self._lock = threading.Condition(threading.RLock())
        self._slots: list[Slot] = []
        self._reports: list[InvocationReport] = []
        self._init_errors: list[str] = []
        self._stopping = threading.Event()
        self._stopped = False
        self._monitor: threading.Thread | None = None
        self._sqs: SQSClient | None = None

    @property
    def config(self) -> EventSourceConfig:
        return self._config

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._monitor is not None:
            raise RuntimeError("an SqsEventSource can be started only once")
        with self._lock:
            self._slots = [self._spawn(index, generation=0) for index in range(self._config.concurrency)]
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
            stop_all(self._slots, grace_seconds=_STOP_GRACE_SECONDS)
            self._collect_locked()
            self._lock.notify_all()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
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
            return [s.process.pid if s.alive else None for s in self._slots]

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every execution environment has imported its handler (its cold start is over).

        A test that needs every execution to take part publishes after this: on a busy machine one
        worker's cold start can otherwise outlast the whole backlog.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not all(s.ready and s.alive for s in self._slots):
                self._raise_init_error_locked()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, _MONITOR_INTERVAL_SECONDS))
                self._pump_locked()
            return True

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker, as a crashed execution environment; return once it is replaced.

        Its in-flight batch is neither deleted nor released: SQS makes it visible again only when
        the visibility timeout runs out, exactly as after a crash in Lambda.
        """
        if self._monitor is None or self._stopping.is_set():
            raise RuntimeError("the event source is not running")
        with self._lock:
            slot = self._slots[index]
            generation = slot.generation
            if slot.alive:
                slot.kill_reason = "Runtime.ExitError: execution environment killed (simulated crash)"
                slot.process.kill()
            deadline = time.monotonic() + _RESTART_WAIT_SECONDS
            while self._slots[index].generation == generation:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    raise TimeoutError(f"worker {index} was not restarted")
                self._lock.wait(remaining)

    def drain(self, *, timeout: float, include_in_flight: bool = True) -> bool:
        """Wait until the queue has nothing visible (and, by default, nothing in flight).

        In-flight also covers an invocation whose deletes are done but whose report has not yet
        arrived, so that ``reports()`` is complete when this returns True.
        """
        return wait_until_drained(
            self._client(),
            self._config.queue_url,
            timeout=timeout,
            include_in_flight=include_in_flight,
            busy=self._busy,
            check=self._raise_init_error,
        )

    # -- supervision -------------------------------------------------------------------------

    def _raise_init_error(self) -> None:
        with self._lock:
            self._raise_init_error_locked()

    def _raise_init_error_locked(self) -> None:
        if self._init_errors:
            raise RuntimeError(f"a worker failed to initialise:\n{self._init_errors[0]}")

    def _client(self) -> SQSClient:
        if self._sqs is None:
            self._sqs = make_client("sqs", self._env["AWS_ENDPOINT_URL"], self._config.region)
        return self._sqs

    def _busy(self) -> bool:
        with self._lock:
            self._pump_locked()
            return any(s.in_flight is not None for s in self._slots)

    def _spawn(self, index: int, generation: int) -> Slot:
        spec = WorkerSpec(
            index=index,
            config=self._config,
            env=self._env,
            sys_path=self._sys_path,
            parent_pid=os.getpid(),
            output_path=self._output_path,
        )
        return spawn(self._mp, spec, generation, target=worker_main)

    def _monitor_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                live = [s for s in self._slots if s.alive]
                waitables: list[Any] = [s.conn for s in live if not s.eof]
                waitables += [s.process.sentinel for s in live]
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
        for position, slot in enumerate(self._slots):
            if slot.alive:
                slot.check(
                    now,
                    timeout_seconds=self._config.function_timeout_seconds,
                    join_seconds=_STOP_GRACE_SECONDS,
                    init_failure_known=bool(self._init_errors),
                )
            if not slot.alive and now >= slot.restart_at:
                self._collect_locked()  # the buried slot's last report, before it is replaced
                slot.process.join(_STOP_GRACE_SECONDS)
                if slot.process.exitcode is not None:
                    slot.process.close()
                self._slots[position] = self._spawn(slot.index, slot.generation + 1)
                self._lock.notify_all()
        self._collect_locked()

    def _pump_locked(self) -> None:
        finished = False
        for slot in self._slots:
            if slot.alive:
                finished |= slot.pump()
        self._collect_locked()
        if finished:
            self._lock.notify_all()

    def _collect_locked(self) -> None:
        """Move reports and init errors from the slots (dead ones included) into the source's lists."""
        for slot in self._slots:
            reports, errors = slot.take_reports()
            self._reports += reports
            self._init_errors += errors
