"""The HTTP side of the sandbox: a threading HTTP/1.1 server whose handler checks the path, method, key,
rate window, body framing (``request_body``) and contract in the vendor's order, and plays injected faults."""

from __future__ import annotations

import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from imshop_push_local.sandbox.contract import validate_request
from imshop_push_local.sandbox.models import Fault, ReceivedCall
from imshop_push_local.sandbox.rate_meter import Arrival, format_retry_after
from imshop_push_local.sandbox.request_body import BodyError, is_json_content, parse_json, read_body

if TYPE_CHECKING:
    from imshop_push_local.sandbox import ImshopSandbox


class Server(ThreadingHTTPServer):
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
    server: Server
    _arrival: Arrival

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
            raw: bytes | None = read_body(self.headers, self.rfile)
            body_error: BodyError | None = None
        except BodyError as exc:
            raw, body_error = None, exc
            self.close_connection = True
        body = parse_json(raw)

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
        elif not is_json_content(self.headers):
            answer(415, {"error": "Unsupported Media Type", "message": "Unsupported Media Type"})
        elif not isinstance(body, dict):
            answer(400, {"error": "Bad Request", "message": "Invalid request payload JSON format"})
        elif (problem := validate_request(body, sandbox.max_recipients)) is not None:
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
                retry_after = format_retry_after(
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
