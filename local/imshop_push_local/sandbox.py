"""A loopback IMSHOP push API that is stricter than the real one, so that tests and `make demo` catch
contract and rate-limit mistakes that production would only reveal as lost or throttled pushes.

The vendor documents the request shape, the `{"success": ...}` answers, the Joi-style 400 messages,
1000 recipients per request and 10 requests per minute; everything else here (429, Retry-After, faults)
is what a careful client must survive anyway, played on demand.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import hmac
import json
import math
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

__all__ = ["Fault", "ImshopSandbox", "ReceivedCall"]

_PATH_PREFIX: Final = "/api/push/"
# hapi's default payload limit: a body this large is a client bug, not a push.
_MAX_BODY_BYTES: Final = 1024 * 1024
_TOP_LEVEL_KEYS: Final = ("userIds", "installIds", "message", "deeplink", "key")
_MESSAGE_KEYS: Final = ("title", "summary")
_RECIPIENT_KINDS: Final = (("userIds", "user"), ("installIds", "install"))
# serve_forever() notices shutdown() only between polls; a short poll keeps stop() quick.
_POLL_SECONDS: Final = 0.02


class Fault(enum.StrEnum):
    """Failures a real vendor produces rarely and unpredictably, made deterministic for tests."""

    NONE = "none"  # answer normally: lets a test place a fault at the n-th call
    SERVER_ERROR = "server_error"
    SUCCESS_FALSE = "success_false"
    RATE_LIMITED = "rate_limited"
    SLOW = "slow"
    DROP = "drop"
    HANG = "hang"


@dataclass(frozen=True)
class ReceivedCall:
    """What arrived and what the vendor would have done with it, so tests can judge the client.

    `path` and `authorization` carry the secret URL token and the key; they are kept out of `repr`
    so that a failing assertion or a demo printout does not leak them.
    """

    arrived_at: float
    path: str = field(repr=False)
    authorization: str | None = field(repr=False)
    body: Any
    status: int
    delivered: bool
    fault: Fault | None


@dataclass(frozen=True)
class _Arrival:
    at: float
    violation: bool
    retry_after: str | None


class _BodyError(Exception):
    """The body could not be framed; the connection cannot be reused after it."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.payload = {"error": error, "message": message}


def _format_retry_after(seconds: float, window_seconds: float) -> str:
    """Whole seconds, as HTTP defines the header, unless the window itself is shorter than a second
    (tests), where rounding up to 1 s would make clients wait several windows."""
    if window_seconds >= 1:
        return str(max(1, math.ceil(seconds)))
    return f"{max(0.001, math.ceil(seconds * 1000) / 1000):.3f}"


def _string_error(label: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f'"{label}" must be a string'
    if not value:
        return f'"{label}" is not allowed to be empty'
    return None


def _ids_error(name: str, value: Any) -> str | None:
    if not isinstance(value, list):
        return f'"{name}" must be an array'
    for position, item in enumerate(value):
        error = _string_error(str(position), item)
        if error:
            return f'"{name}" at position {position} fails because [{error}]'
    return None


def _message_error(value: Any) -> str | None:
    if not isinstance(value, dict):
        return '"message" must be an object'
    for name in _MESSAGE_KEYS:
        if name not in value:
            return f'"{name}" is required'
        error = _string_error(name, value[name])
        if error:
            return error
    for name in value:
        if name not in _MESSAGE_KEYS:
            return f'"{name}" is not allowed'
    return None


def _validate_request(body: dict[str, Any], max_recipients: int) -> str | None:
    """The first problem in the vendor's Joi wording (Joi stops at the first error), or None."""
    return next((error for error in _request_errors(body, max_recipients) if error), None)


def _request_errors(body: dict[str, Any], max_recipients: int) -> Iterator[str | None]:
    """Lazily, in Joi's order: children in schema order, then unknown keys, then cross-field rules,
    so a typo such as `userId` is reported as not allowed rather than as a missing recipient.

    Zero recipients are refused even though Joi's `or()` would pass two empty arrays: a call that
    reaches nobody still spends rate budget, which is a dispatcher bug worth surfacing.
    """
    for name, _kind in _RECIPIENT_KINDS:
        if name in body:
            yield _child(name, _ids_error(name, body[name]))
    if "message" not in body:
        yield '"message" is required'
    else:
        yield _child("message", _message_error(body["message"]))
    for name in ("deeplink", "key"):
        if name in body:
            yield _child(name, _string_error(name, body[name]))
    yield next((f'"{name}" is not allowed' for name in body if name not in _TOP_LEVEL_KEYS), None)
    recipients = sum(len(body.get(name, ())) for name, _kind in _RECIPIENT_KINDS)
    if recipients == 0:
        yield '"value" must contain at least one of [userIds, installIds]'
    if recipients > max_recipients:
        yield f'"userIds" must contain less than or equal to {max_recipients} items'


def _child(name: str, error: str | None) -> str | None:
    return None if error is None else f'child "{name}" fails because [{error}]'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Never let a lingering handler delay stop(); they hold no state worth waiting for.
    block_on_close = False

    def __init__(self, sandbox: ImshopSandbox) -> None:
        self.sandbox = sandbox
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up mid-answer is part of the game, not a sandbox bug.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, like the real API behind its load balancer: clients reuse connections,
    # and DROP must hit a connection the client believes is healthy.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, delayed ACKs add ~40 ms per call.
    disable_nagle_algorithm = True
    server_version = "imshop-sandbox"
    sys_version = ""
    server: _Server
    _arrival: _Arrival

    @property
    def _sandbox(self) -> ImshopSandbox:
        return self.server.sandbox

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the secret URL token; stay silent rather than redact.
        return

    def setup(self) -> None:
        super().setup()
        self._sandbox._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._sandbox._untrack(self.connection)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        on_path = urlsplit(self.path).path == self._sandbox._path
        self._arrival = self._sandbox._arrive(counted=on_path)
        return True

    def do_POST(self) -> None:
        self._serve()

    # Other methods are answered too (405), so that a client using the wrong verb learns why.
    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_OPTIONS(self) -> None:
        self._serve()

    def _serve(self) -> None:
        sandbox = self._sandbox
        try:
            raw: bytes | None = self._read_body()
            body_error: _BodyError | None = None
        except _BodyError as exc:
            raw, body_error = None, exc
            self.close_connection = True
        body = _parse_json(raw)

        def answer(
            status: int,
            payload: dict[str, Any],
            headers: dict[str, str] | None = None,
            *,
            delivered: bool = False,
        ) -> None:
            sandbox._record(self._call(body, status, delivered=delivered, fault=None))
            self._answer(status, payload, headers or {})

        if urlsplit(self.path).path != sandbox._path:
            answer(404, {"error": "Not Found"})
        elif self.command != "POST":
            answer(405, {"error": "Method Not Allowed"}, {"Allow": "POST"})
        elif not self._authorized(body):
            answer(401, {"error": "Unauthorized"})
        elif self._arrival.violation:
            answer(429, {"error": "Too Many Requests"}, {"Retry-After": self._arrival.retry_after or "1"})
        elif body_error is not None:
            answer(body_error.status, body_error.payload)
        elif not self._is_json_content():
            answer(415, {"error": "Unsupported Media Type", "message": "Unsupported Media Type"})
        elif not isinstance(body, dict):
            answer(400, {"error": "Bad Request", "message": "Invalid request payload JSON format"})
        elif (problem := _validate_request(body, sandbox.max_recipients)) is not None:
            answer(400, {"error": "Bad Request", "message": problem})
        else:
            fault = sandbox._take_fault()
            if fault is None:
                answer(200, {"success": True}, delivered=True)
            else:
                self._play(fault, body)

    def _play(self, fault: Fault, body: Any) -> None:
        sandbox = self._sandbox
        match fault:
            case Fault.SERVER_ERROR:
                sandbox._record(self._call(body, 500, delivered=False, fault=fault))
                self._answer(500, {"error": "Internal Server Error"}, {})
            case Fault.SUCCESS_FALSE:
                sandbox._record(self._call(body, 200, delivered=False, fault=fault))
                self._answer(200, {"success": False, "error": "Integration is unavailable"}, {})
            case Fault.RATE_LIMITED:
                retry_after = _format_retry_after(
                    min(1.0, sandbox.rate_limit_window_seconds), sandbox.rate_limit_window_seconds
                )
                sandbox._record(self._call(body, 429, delivered=False, fault=fault))
                self._answer(429, {"error": "Too Many Requests"}, {"Retry-After": retry_after})
            case Fault.SLOW:
                # Recorded before the wait: the push is out, only the answer is late.
                sandbox._record(self._call(body, 200, delivered=True, fault=fault))
                if sandbox._stopping.wait(sandbox.slow_seconds):
                    self.close_connection = True
                else:
                    self._answer(200, {"success": True}, {})
            case Fault.DROP:
                sandbox._record(self._call(body, 0, delivered=True, fault=fault))
                self.close_connection = True
            case Fault.HANG:
                sandbox._record(self._call(body, 0, delivered=False, fault=fault))
                sandbox._hold()
                self.close_connection = True

    def _call(self, body: Any, status: int, *, delivered: bool, fault: Fault | None) -> ReceivedCall:
        return ReceivedCall(
            arrived_at=self._arrival.at,
            path=self.path,
            authorization=self.headers.get("Authorization"),
            body=body,
            status=status,
            delivered=delivered,
            fault=fault,
        )

    def _authorized(self, body: Any) -> bool:
        key = self._sandbox.api_key
        if key is None:
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode()):
            return True
        body_key = body.get("key") if isinstance(body, dict) else None
        return isinstance(body_key, str) and hmac.compare_digest(body_key.encode(), key.encode())

    def _is_json_content(self) -> bool:
        # hapi treats a missing Content-Type as JSON and refuses form posts with 415.
        content_type = self.headers.get("Content-Type")
        if content_type is None:
            return True
        parsed = Message()
        parsed["Content-Type"] = content_type
        return parsed.get_content_type() == "application/json"

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BodyError(400, "Bad Request", "Invalid Content-Length") from None
        if length < 0:
            raise _BodyError(400, "Bad Request", "Invalid Content-Length")
        if length > _MAX_BODY_BYTES:
            raise _too_large()
        data = self.rfile.read(length)
        if len(data) != length:
            raise _BodyError(400, "Bad Request", "Incomplete request body")
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "Bad Request", "Invalid chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers carry nothing the API reads
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY_BYTES:
                raise _too_large()
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _BodyError(400, "Bad Request", "Incomplete request body")
            chunks.append(chunk)
            self.rfile.readline(1024)

    def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _too_large() -> _BodyError:
    message = f"Payload content length greater than maximum allowed: {_MAX_BODY_BYTES}"
    return _BodyError(413, "Request Entity Too Large", message)


def _parse_json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


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
    ) -> None:
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
        self._window: collections.deque[float] = collections.deque()
        self._violations = 0
        self._hung: set[threading.Event] = set()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("an ImshopSandbox is started once")
        self._server = _Server(self)
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
            for name, kind in _RECIPIENT_KINDS:
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
            self._window.clear()
            self._violations = 0

    # -- called from handler threads ------------------------------------------------------------

    def _arrive(self, *, counted: bool) -> _Arrival:
        """Stamp and meter under one lock, so window verdicts follow arrival order, not scheduling."""
        with self._cond:
            now = time.monotonic()
            if not counted:
                return _Arrival(now, violation=False, retry_after=None)
            window = self.rate_limit_window_seconds
            while self._window and self._window[0] <= now - window:
                self._window.popleft()
            violation = len(self._window) >= self.rate_limit_requests
            self._window.append(now)
            if not violation:
                return _Arrival(now, violation=False, retry_after=None)
            self._violations += 1
            # This rejected call occupies a slot too, so the earliest moment a call can pass is when
            # enough arrivals have left that fewer than the limit remain, not when the oldest leaves.
            frees_at = self._window[len(self._window) - self.rate_limit_requests] + window
            return _Arrival(now, violation=True, retry_after=_format_retry_after(frees_at - now, window))

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
