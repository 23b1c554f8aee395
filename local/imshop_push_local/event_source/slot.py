"""The supervisor's view of one worker: its process, its pipe, and the invocation it has announced.

Reading the pipe turns the worker's messages into state here; a dead worker's announced batch is
turned into a failed ``InvocationReport``, because Lambda reports a crashed or timed-out execution's
batch as failed and SQS returns it after the visibility timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imshop_push_local.event_source.messages import Done, InitError, InvocationReport, Ready, Started, WorkerMessage

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import SpawnContext
    from multiprocessing.process import BaseProcess

    from imshop_push_local.event_source.worker import WorkerSpec

# A worker whose handler fails to import is restarted no faster than this, not in a hot loop.
_INIT_FAILURE_BACKOFF_SECONDS = 1.0
# The parent ends an invocation this long after its function timeout (the brief: timeout + 1 s).
_TIMEOUT_GRACE_SECONDS = 1.0


@dataclass
class InFlight:
    request_id: str
    message_ids: list[str]
    started: float


@dataclass
class Slot:
    index: int
    generation: int
    process: BaseProcess
    conn: Connection
    ready: bool = False
    eof: bool = False
    in_flight: InFlight | None = None
    kill_reason: str | None = None
    dead_since: float | None = None
    restart_at: float = 0.0
    reports: list[InvocationReport] = field(default_factory=list)
    init_errors: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.dead_since is None

    def pump(self) -> bool:
        """Read every message waiting on the pipe; True if an invocation finished."""
        finished = False
        while not self.eof:
            try:
                if not self.conn.poll(0):
                    break
                message: WorkerMessage = self.conn.recv()
            except Exception:  # EOF, or a message torn by a kill mid-write: the channel is done for
                self.eof = True
                break
            finished |= self._handle(message)
        return finished

    def _handle(self, message: WorkerMessage) -> bool:
        match message:
            case Ready():
                self.ready = True
            case InitError(text=text):
                self.init_errors.append(text)
            case Started(request_id=request_id, message_ids=message_ids):
                self.in_flight = InFlight(request_id, list(message_ids), time.monotonic())
            case Done(report=report):
                self.reports.append(report)
                self.in_flight = None
                return True
        return False

    def check(self, now: float, *, timeout_seconds: float, join_seconds: float, init_failure_known: bool) -> None:
        """Bury a worker that died, or kill and bury one whose invocation ran past its timeout.

        ``init_failure_known``: the source already holds an init error, so a worker dying before it was
        ready needs no second one.
        """
        if not self.process.is_alive():
            exitcode = self.process.exitcode
            reason = self.kill_reason or f"Runtime.ExitError: worker exited with {exitcode}"
            self.pump()
            if not self.ready and self.kill_reason is None and not (init_failure_known or self.init_errors):
                # It died before it could say why (e.g. in the spawn bootstrap): still tell drain().
                self.init_errors.append(f"worker {self.index} exited with {exitcode} before it was ready")
            self.bury(reason)
        elif self.in_flight is not None and now - self.in_flight.started > timeout_seconds + _TIMEOUT_GRACE_SECONDS:
            self.process.kill()
            self.process.join(join_seconds)
            self.bury(f"Task timed out after {timeout_seconds:.2f} seconds")

    def bury(self, reason: str) -> None:
        """Account for a dead worker's batch and release its pipe; the restart comes later."""
        self.pump()
        now = time.monotonic()
        if self.in_flight is not None:
            flight = self.in_flight
            self.reports.append(
                InvocationReport(
                    worker=self.index,
                    request_id=flight.request_id,
                    message_ids=list(flight.message_ids),
                    failed_ids=list(flight.message_ids),
                    error=reason,
                    duration_s=now - flight.started,
                )
            )
            self.in_flight = None
        self.conn.close()
        self.eof = True
        self.dead_since = now
        self.restart_at = now if self.ready else now + _INIT_FAILURE_BACKOFF_SECONDS

    def take_reports(self) -> tuple[list[InvocationReport], list[str]]:
        reports, self.reports = self.reports, []
        errors, self.init_errors = self.init_errors, []
        return reports, errors


def spawn(mp: SpawnContext, spec: WorkerSpec, generation: int, *, target: Callable[..., Any]) -> Slot:
    """A fresh execution environment in worker slot ``spec.index``."""
    reader, writer = mp.Pipe(duplex=False)
    process = mp.Process(
        target=target,
        args=(spec, writer),
        name=f"{spec.config.function_name}-{spec.index}.{generation}",
        daemon=True,  # never outlive the parent, even if stop() is never called
    )
    process.start()
    # Only the worker may hold the writing end: its death must read as EOF here.
    writer.close()
    return Slot(index=spec.index, generation=generation, process=process, conn=reader)


def stop_all(slots: list[Slot], *, grace_seconds: float) -> None:
    """Terminate every worker (kill those that linger) and account for the batches they held."""
    for slot in slots:
        if slot.alive and slot.process.is_alive():
            slot.process.terminate()
    deadline = time.monotonic() + grace_seconds
    for slot in slots:
        slot.process.join(max(0.0, deadline - time.monotonic()))
    for slot in slots:
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(grace_seconds)
    for slot in slots:
        if slot.alive:
            slot.bury("event source stopped during the invocation")
        if slot.process.exitcode is not None:
            slot.process.close()
