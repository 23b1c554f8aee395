"""The IMSHOP client: what each answer means for delivery, and what goes on the wire (no network)."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from imshop_push.adapters.imshop_client import ImshopClient, classify
from imshop_push.domain.bearer_key import ConfigError
from imshop_push.domain.model import CallOutcome, CallResult
from imshop_push.domain.parsing import parse_body
from imshop_push.domain.planning import Delivery, plan_calls

URL = "https://push.imshop.example/api/v1/notifications/7f3c9e0a-path-token"
TOKEN = "7f3c9e0a-path-token"
PAYLOAD: dict[str, Any] = {"userIds": ["79991234567"], "message": {"title": "Заказ", "summary": "Отправлен"}}


# --- classify -------------------------------------------------------------------------------------------


def test_200_success_true_is_sent() -> None:
    outcome = classify(200, b'{"success": true}')

    assert outcome.result is CallResult.SENT
    assert outcome.status == 200


def test_200_success_false_is_failed_with_the_vendor_error() -> None:
    outcome = classify(200, b'{"success": false, "error": "Integration is unavailable"}')

    assert outcome.result is CallResult.FAILED
    assert "Integration is unavailable" in outcome.reason


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>OK</html>", b"[]", b"{}", b'{"success": "true"}', b'{"success": 1}', b'{"ok": true}', b"\xff\xfe"],
)
def test_200_without_a_success_flag_is_ambiguous(body: bytes) -> None:
    # The call arrived and IMSHOP answered, but did it send? Nobody can say: at least once beats lost.
    assert classify(200, body).result is CallResult.AMBIGUOUS


def test_400_is_rejected_with_the_vendor_message() -> None:
    body = json.dumps(
        {"error": "Bad Request", "message": 'child "userIds" fails because ["userIds" must be an array]'}
    ).encode()

    outcome = classify(400, body)

    assert outcome.result is CallResult.REJECTED
    assert outcome.status == 400
    assert 'child "userIds" fails because ["userIds" must be an array]' in outcome.reason


def test_400_without_a_body_is_still_rejected() -> None:
    assert classify(400, b"").result is CallResult.REJECTED


def test_a_huge_vendor_error_is_truncated() -> None:
    outcome = classify(400, json.dumps({"message": "x" * 10_000}).encode())

    assert outcome.result is CallResult.REJECTED
    assert len(outcome.reason) < 1000


@pytest.mark.parametrize(
    ("status", "vendor"),
    [
        (
            413,
            {
                "statusCode": 413,
                "error": "Request Entity Too Large",
                "message": "Payload content length greater than maximum allowed: 1048576",
            },
        ),
        (422, {"statusCode": 422, "error": "Unprocessable Entity", "message": "message.title: must not be empty"}),
    ],
)
def test_413_and_422_are_rejected_with_the_vendor_reason_not_retried(status: int, vendor: dict[str, Any]) -> None:
    outcome = classify(status, json.dumps(vendor).encode())

    assert outcome.result is CallResult.REJECTED
    assert outcome.status == status
    assert outcome.reason == f"IMSHOP answered {status}: {vendor['error']}: {vendor['message']}"


@pytest.mark.parametrize(("status", "phrase"), [(413, "Content Too Large"), (422, "Unprocessable Content")])
def test_413_and_422_from_a_proxy_without_json_are_rejected_and_named(status: int, phrase: str) -> None:
    outcome = classify(status, b"<html><body><h1>413 Request Entity Too Large</h1></body></html>")

    assert outcome.result is CallResult.REJECTED
    assert outcome.reason == f"IMSHOP answered {status}: {phrase} (no error text)"


@pytest.mark.parametrize("status", [400, 413, 422, 500])
def test_a_vendor_reason_is_printable_and_bounded(status: int) -> None:
    hostile = r"title\u0000\n\ud800\u2028" + "ы" * 5000  # JSON escapes: NUL, newline, lone surrogate, U+2028
    outcome = classify(status, ('{"error": "Bad", "message": "' + hostile + '"}').encode())

    assert outcome.reason.startswith(f"IMSHOP answered {status}: Bad: title\\x00\\n\\ud800\\u2028ыы")
    assert outcome.reason.isprintable()
    assert len(outcome.reason) <= 330
    outcome.reason.encode()  # no lone surrogate: logs and SQS attributes take it as it is


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_and_url_errors_are_failed_not_poison(status: int) -> None:
    # A wrong key or URL is the operator's to fix; the requests themselves are fine and must not be lost.
    outcome = classify(status, b'{"error": "Unauthorized"}')

    assert outcome.result is CallResult.FAILED
    assert outcome.status == status
    assert str(status) in outcome.reason


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0.25", 0.25), ("0", 0.0), (" 12 ", 12.0)])
def test_429_is_rate_limited_with_retry_after(header: str, seconds: float) -> None:
    outcome = classify(429, b'{"error": "Too Many Requests"}', header)

    assert outcome.result is CallResult.RATE_LIMITED
    assert outcome.retry_after_seconds == seconds


@pytest.mark.parametrize("header", ["soon", "", "-5", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT", None])
def test_429_with_an_unusable_retry_after_is_rate_limited_without_one(header: str | None) -> None:
    outcome = classify(429, b"", header)

    assert outcome.result is CallResult.RATE_LIMITED
    assert outcome.retry_after_seconds is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_failed(status: int) -> None:
    outcome = classify(status, b"<html>Bad Gateway</html>")

    assert outcome.result is CallResult.FAILED
    assert outcome.status == status


# --- ImshopClient on a fake pool --------------------------------------------------------------------------


class FakePool:
    """Stands in for `urllib3.PoolManager`: records each request and answers or raises as told."""

    def __init__(self, *, status: int = 200, data: bytes = b'{"success": true}', headers: dict[str, str] | None = None):
        self.status = status
        self.data = data
        self.headers = headers or {"Content-Type": "application/json"}
        self.error: Exception | None = None
        self.requests: list[dict[str, Any]] = []
        self.clears = 0

    def clear(self) -> None:
        """PoolManager.clear: close every pooled connection."""
        self.clears += 1

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        if self.error is not None:
            raise self.error
        return urllib3.HTTPResponse(
            body=io.BytesIO(self.data), status=self.status, headers=self.headers, preload_content=True
        )


def client(
    pool: FakePool, *, api_key: str | None = "imshop-key-123", connect: float = 2.0, read: float = 7.0
) -> ImshopClient:
    return ImshopClient(
        URL,
        api_key=api_key,
        connect_timeout_seconds=connect,
        read_timeout_seconds=read,
        pool=cast(urllib3.PoolManager, pool),
    )


def test_send_posts_json_to_the_url_with_the_bearer_key() -> None:
    pool = FakePool()

    outcome = client(pool).send(PAYLOAD)

    assert outcome == CallOutcome(CallResult.SENT, "success", 200)
    [request] = pool.requests
    assert request["method"] == "POST"
    assert request["url"] == URL
    assert request["headers"]["Authorization"] == "Bearer imshop-key-123"
    assert request["headers"]["Content-Type"].startswith("application/json")
    assert json.loads(request["body"].decode("utf-8")) == PAYLOAD


@pytest.mark.parametrize("api_key", [None, ""])
def test_no_key_no_authorization_header(api_key: str | None) -> None:
    pool = FakePool()

    client(pool, api_key=api_key).send(PAYLOAD)

    assert "Authorization" not in pool.requests[0]["headers"]


@pytest.mark.parametrize("stored", ["imshop-key-123\n", "imshop-key-123\r\n", " imshop-key-123\t"])
def test_a_key_with_surrounding_whitespace_is_sent_without_it(stored: str) -> None:
    pool = FakePool()

    client(pool, api_key=stored).send(PAYLOAD)

    assert pool.requests[0]["headers"]["Authorization"] == "Bearer imshop-key-123"


@pytest.mark.parametrize("inner", ["\n", "\r\n ", "\x00", "\x01", " ", "\x7f", "ключ"])
def test_a_key_no_header_can_carry_is_refused_at_construction_without_quoting_it(inner: str) -> None:
    key = f"imshop-{inner}-key-5d41402abc4b2a76"

    with pytest.raises(ConfigError) as caught:
        ImshopClient(URL, api_key=key, connect_timeout_seconds=2.0, read_timeout_seconds=7.0)

    assert "5d41402abc4b2a76" not in str(caught.value)
    assert "API key" in str(caught.value)


def test_urllib3_never_retries_or_follows_redirects() -> None:
    # A retried or re-POSTed call could reach IMSHOP twice: the dispatcher alone decides about resending.
    pool = FakePool()

    client(pool).send(PAYLOAD)

    assert pool.requests[0]["retries"] is False
    assert pool.requests[0]["redirect"] is False


def test_the_configured_timeout_bounds_the_whole_call_connect_included() -> None:
    pool = FakePool()
    api = client(pool, connect=2.0, read=7.5)

    api.send(PAYLOAD)

    timeout = pool.requests[0]["timeout"]
    assert isinstance(timeout, urllib3.Timeout)
    assert timeout.total == 7.5
    assert timeout.connect_timeout == 2.0
    assert api.worst_case_seconds == 7.5


def test_a_connect_timeout_longer_than_the_call_is_cut_to_it() -> None:
    pool = FakePool()
    api = client(pool, connect=3.0, read=1.0)

    api.send(PAYLOAD)

    assert pool.requests[0]["timeout"].connect_timeout == 1.0
    assert api.worst_case_seconds == 1.0


def test_the_body_is_the_planned_payload_without_extensions() -> None:
    body = json.dumps(
        {
            "userIds": ["79991234567"],
            "installIds": ["iid-1"],
            "message": {"title": "Бонусы", "summary": "Сгорают завтра"},
            "deeplink": "slug://bonus",
            "idempotencyKey": "bonus-1",
            "expiresAt": "2026-12-01T18:00:00Z",
        }
    )
    request = parse_body(body, message_id="m-1")
    [call] = plan_calls([Delivery(request.message_id, request.content, request.recipients)], max_recipients=1000)
    pool = FakePool()

    client(pool).send(call.payload())

    sent = json.loads(pool.requests[0]["body"].decode("utf-8"))
    assert sent == {
        "userIds": ["79991234567"],
        "installIds": ["iid-1"],
        "message": {"title": "Бонусы", "summary": "Сгорают завтра"},
        "deeplink": "slug://bonus",
    }
    assert "Бонусы".encode() in pool.requests[0]["body"]  # UTF-8, not \u escapes


def test_send_classifies_the_answer_with_its_retry_after_header() -> None:
    pool = FakePool(status=429, data=b"", headers={"Retry-After": "3"})

    outcome = client(pool).send(PAYLOAD)

    assert outcome.result is CallResult.RATE_LIMITED
    assert outcome.retry_after_seconds == 3.0


@pytest.mark.parametrize(
    ("error", "result"),
    [
        (ConnectTimeoutError("connect timed out"), CallResult.FAILED),
        (NewConnectionError(cast(Any, None), "Connection refused"), CallResult.FAILED),
        (SSLError("certificate verify failed"), CallResult.FAILED),
        (ReadTimeoutError(cast(Any, None), URL, "Read timed out."), CallResult.AMBIGUOUS),
        (ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")), CallResult.AMBIGUOUS),
    ],
    ids=["connect timeout", "refused", "tls", "read timeout", "dropped"],
)
def test_network_errors_before_sending_fail_and_after_sending_are_ambiguous(
    error: Exception, result: CallResult
) -> None:
    pool = FakePool()
    pool.error = error

    outcome = client(pool).send(PAYLOAD)

    assert outcome.result is result
    assert TOKEN not in outcome.reason
    assert URL not in outcome.reason


def test_a_pooled_connection_is_reused_only_within_a_burst() -> None:
    """A connection idle longer than `reuse_idle_seconds` may have been closed by the server: a request
    written into it would fail like "delivered, answer lost". So the pool is cleared after an idle gap."""
    pool = FakePool()
    now = [100.0]
    client = ImshopClient(
        URL,
        api_key=None,
        connect_timeout_seconds=3,
        read_timeout_seconds=10,
        pool=cast(Any, pool),
        reuse_idle_seconds=2.0,
        clock=lambda: now[0],
    )
    client.send(PAYLOAD)
    assert pool.clears == 1, "the first call of an execution never trusts a pooled connection"
    now[0] += 0.5
    client.send(PAYLOAD)
    now[0] += 1.9
    client.send(PAYLOAD)
    assert pool.clears == 1, "back-to-back calls share the connection"
    now[0] += 2.1
    client.send(PAYLOAD)
    assert pool.clears == 2, "after an idle gap the pool starts afresh"


# --- the configured timeout against real loopback sockets ---------------------------------------------------

CALL_TIMEOUT = 0.5
SLACK = 2.0  # generous: a busy machine may be slow to schedule us, never slow to time out


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections (the kernel does, from its listen queue) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A server whose accept queue is full: the kernel drops further SYNs, so a connect never completes."""
    with socket.socket() as listener, contextlib.ExitStack() as stack:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(64):
            probe = stack.enter_context(socket.socket())
            probe.settimeout(0.5)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.fail("precondition: the accept queue never filled")
        yield port


def loopback_client(port: int) -> ImshopClient:
    return ImshopClient(
        f"http://127.0.0.1:{port}/push/token",
        api_key=None,
        connect_timeout_seconds=5.0,  # longer than the call: the call's timeout must still win
        read_timeout_seconds=CALL_TIMEOUT,
    )


def test_a_server_that_never_answers_costs_at_most_the_configured_timeout(silent_port: int) -> None:
    api = loopback_client(silent_port)

    started = time.monotonic()
    outcome = api.send(PAYLOAD)
    elapsed = time.monotonic() - started

    assert outcome.result is CallResult.AMBIGUOUS, "the request was written: it may have arrived"
    assert api.worst_case_seconds == CALL_TIMEOUT
    assert elapsed < api.worst_case_seconds + SLACK


def test_a_server_that_never_accepts_costs_at_most_the_configured_timeout(unaccepting_port: int) -> None:
    api = loopback_client(unaccepting_port)

    started = time.monotonic()
    outcome = api.send(PAYLOAD)
    elapsed = time.monotonic() - started

    assert elapsed < CALL_TIMEOUT + SLACK
    assert outcome.result is CallResult.FAILED, "nothing left: safe to retry"
    assert outcome.reason == "connection failed: ConnectTimeoutError"
    assert api.worst_case_seconds == CALL_TIMEOUT
