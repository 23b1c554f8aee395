"""A loopback IMSHOP push API that is stricter than the real one, so that tests and `make demo` catch
contract and rate-limit mistakes that production would only reveal as lost or throttled pushes.

The vendor documents the request shape, the `{"success": ...}` answers, the Joi-style 400 messages,
1000 recipients per request and 10 requests per minute; everything else here (429, Retry-After, faults)
is what a careful client must survive anyway, played on demand. The contract checks (``contract``) and
the rate window (``rate_meter``) are pure modules; ``request_body`` frames a body as the vendor's server
does; ``server`` is the HTTP handler that applies them.
"""

from __future__ import annotations

import collections
import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

from imshop_push_local.sandbox.contract import RECIPIENT_KINDS
from imshop_push_local.sandbox.models import Fault, ReceivedCall
from imshop_push_local.sandbox.rate_meter import Arrival, RateMeter
from imshop_push_local.sandbox.server import Server

__all__ = ["Fault", "ImshopSandbox", "ReceivedCall"]

_PATH_PREFIX: Final = "/api/push/"
# serve_forever() notices shutdown() only between polls; a short poll keeps stop() quick.
_POLL_SECONDS: Final = 0.02


class ImshopSandbox:
    """A loopback IMSHOP push API with the vendor's limits enforced and its failures on demand.

    The rate limit is a sliding window over arrival times of every call on the secret path, rejected
    ones included (the vendor meters the integration, not the successes). Calls to another path name
    no integration and are not metered. A 429 caused by the window counts in `violations`; one played
    by `Fault.RATE_LIMITED` does not, because the client did nothing wrong.
    """

    def __init__(
        self,
        *,
        rate_limit_requests: int = 10,
        rate_limit_window_seconds: float = 60.0,
        max_recipients: int = 1000,
        api_key: str | None = None,
        slow_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` stamps arrivals for the rate window; a test passes its own to place calls at
        exact instants, however long the machine takes to make them."""
        if rate_limit_requests < 1 or rate_limit_window_seconds <= 0 or max_recipients < 1:
            raise ValueError("rate limit, window and max_recipients must be positive")
        self.rate_limit_requests: Final = rate_limit_requests
        self.rate_limit_window_seconds: Final = rate_limit_window_seconds
        self.max_recipients: Final = max_recipients
        self.api_key: Final = api_key
        self.slow_seconds: Final = slow_seconds
        # Unguessable per instance, as the vendor's per-customer URL is: a client that builds the URL
        # itself instead of using the configured one gets 404.
        self._path: Final = _PATH_PREFIX + secrets.token_urlsafe(24)
        self._cond = threading.Condition()
        self._calls: list[ReceivedCall] = []
        self._faults: collections.deque[Fault] = collections.deque()
        self._meter = RateMeter(rate_limit_requests, rate_limit_window_seconds)
        self._clock = clock
        self._violations = 0
        self._hung: set[threading.Event] = set()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("an ImshopSandbox is started once")
        self._server = Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_SECONDS},
            name="imshop-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Return promptly whatever is in flight: a test that fails mid-HANG must not hang the suite."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.release_hung()
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        # Idle keep-alive connections would otherwise keep answering after stop().
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("start() the sandbox before asking for its URL")
        return f"http://127.0.0.1:{self._server.server_address[1]}{self._path}"

    def inject(self, *faults: Fault) -> None:
        """Queue faults for the next calls that pass every check (path, auth, window, body), one each,
        so an invalid or throttled call never swallows a fault meant for a real push."""
        with self._cond:
            self._faults.extend(Fault(fault) for fault in faults)

    def release_hung(self) -> None:
        with self._cond:
            hung, self._hung = self._hung, set()
        for event in hung:
            event.set()

    @property
    def calls(self) -> list[ReceivedCall]:
        with self._cond:
            return list(self._calls)

    @property
    def violations(self) -> int:
        with self._cond:
            return self._violations

    def delivered(self) -> collections.Counter[tuple[str, str, str | None, str, str]]:
        """Pushes as users would see them; a count above 1 is a duplicate a user actually received."""
        counter: collections.Counter[tuple[str, str, str | None, str, str]] = collections.Counter()
        for call in self.calls:
            if not call.delivered:
                continue
            body = call.body
            title, summary = body["message"]["title"], body["message"]["summary"]
            for name, kind in RECIPIENT_KINDS:
                for recipient in body.get(name, ()):
                    counter[(title, summary, body.get("deeplink"), kind, recipient)] += 1
        return counter

    def wait_for_calls(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._calls) >= count, timeout)

    def reset(self) -> None:
        """Start a fresh phase: a demo phase must not inherit the previous one's budget or faults.
        Hung calls stay hung until release_hung() or stop()."""
        with self._cond:
            self._calls.clear()
            self._faults.clear()
            self._meter.reset()
            self._violations = 0

    # -- called from handler threads ------------------------------------------------------------

    def _arrive(self, *, counted: bool) -> Arrival:
        """Stamp and meter under one lock, so window verdicts follow arrival order, not scheduling."""
        with self._cond:
            now = self._clock()
            if not counted:
                return Arrival(now, violation=False, retry_after=None)
            arrival = self._meter.arrive(now)
            if arrival.violation:
                self._violations += 1
            return arrival

    def _take_fault(self) -> Fault | None:
        with self._cond:
            fault = self._faults.popleft() if self._faults else None
            return None if fault is Fault.NONE else fault

    def _record(self, call: ReceivedCall) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _hold(self) -> None:
        event = threading.Event()
        with self._cond:
            if self._stopping.is_set():
                return
            self._hung.add(event)
        event.wait()

    def _track(self, connection: socket.socket) -> None:
        with self._cond:
            self._connections.add(connection)
            stopping = self._stopping.is_set()
        if stopping:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _untrack(self, connection: socket.socket) -> None:
        with self._cond:
            self._connections.discard(connection)
