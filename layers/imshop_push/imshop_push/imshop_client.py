"""The IMSHOP push API over one urllib3 pool, and what each answer means for delivery.

The vendor documents no idempotency keys, 429 behaviour or per-recipient results, so the client reduces
every answer to one question the dispatcher can act on: were the recipients reached, surely not, or is it
unknowable (the call may have arrived but its answer did not)?
"""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

MAX_REASON_LENGTH = 300
DEFAULT_REUSE_IDLE_SECONDS = 2.0  # well under common server keep-alive timeouts (5 s and up)


class CallResult(enum.StrEnum):
    SENT = "sent"  # 200 + success: true
    FAILED = "failed"  # nothing was sent; retry later (5xx, success: false, auth/URL errors, network before send)
    RATE_LIMITED = "rate_limited"  # 429: nothing sent; back off until retry_after
    REJECTED = "rejected"  # 400: the vendor will never accept this body
    AMBIGUOUS = "ambiguous"  # the request left, no answer came back: it may or may not have been delivered


@dataclass(frozen=True, slots=True)
class CallOutcome:
    result: CallResult
    reason: str
    status: int | None = None
    retry_after_seconds: float | None = None


class ImshopClient:
    """One instance per execution environment: the pool survives between invocations.

    A connection is reused only while it is fresh (used within `reuse_idle_seconds`). At <= 10 calls a minute
    a keep-alive connection is mostly stale by the next call, and a request written into a connection the
    server already closed fails exactly like "delivered, answer lost": the ambiguous case, which must stay
    rare. So after an idle gap the pool is cleared and the call opens a fresh connection; within a burst
    (the window's 10 calls go out back to back when budget frees up) the handshake is saved.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        pool: urllib3.PoolManager | None = None,
        reuse_idle_seconds: float = DEFAULT_REUSE_IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._headers = {"Content-Type": "application/json; charset=utf-8"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = urllib3.Timeout(connect=connect_timeout_seconds, read=read_timeout_seconds)
        self._pool = pool or urllib3.PoolManager(num_pools=2, maxsize=1, retries=False)
        self._reuse_idle_seconds = reuse_idle_seconds
        self._clock = clock
        self._last_used: float | None = None

    @property
    def worst_case_seconds(self) -> float:
        """How long one call can take at most: what the dispatcher keeps in reserve before its deadline."""
        timeout = self._timeout
        return float(timeout.connect_timeout or 0) + float(timeout.read_timeout or 0)  # type: ignore[arg-type]

    def send(self, payload: dict[str, Any]) -> CallOutcome:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        now = self._clock()
        if self._last_used is None or now - self._last_used > self._reuse_idle_seconds:
            self._pool.clear()  # whatever is pooled may have been closed by the server meanwhile
        self._last_used = now
        try:
            response = self._pool.request(
                "POST",
                self._url,
                body=body,
                headers=self._headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
            )
        except (ConnectTimeoutError, NewConnectionError) as e:
            return CallOutcome(CallResult.FAILED, f"connection failed: {type(e).__name__}")
        except ReadTimeoutError:
            return CallOutcome(CallResult.AMBIGUOUS, "no answer within the read timeout")
        except ProtocolError as e:
            return CallOutcome(CallResult.AMBIGUOUS, f"connection dropped: {_cause(e)}")
        except HTTPError as e:
            return CallOutcome(CallResult.FAILED, f"HTTP error: {type(e).__name__}")
        return classify(response.status, response.data, response.headers.get("Retry-After"))


def classify(status: int, data: bytes, retry_after: str | None = None) -> CallOutcome:
    """Map an answer to a delivery result (SPEC §4.5-4.6)."""
    document = _json(data)
    if status == 200:
        if isinstance(document, dict) and document.get("success") is True:
            return CallOutcome(CallResult.SENT, "success", status)
        if isinstance(document, dict) and document.get("success") is False:
            return CallOutcome(CallResult.FAILED, f"success: false ({_error_text(document)})", status)
        return CallOutcome(CallResult.AMBIGUOUS, "200 without a success flag", status)
    if status == 429:
        return CallOutcome(CallResult.RATE_LIMITED, "429 Too Many Requests", status, _retry_after(retry_after))
    if status == 400:
        return CallOutcome(CallResult.REJECTED, f"IMSHOP answered 400: {_error_text(document)}", status)
    if status in (401, 403):
        return CallOutcome(CallResult.FAILED, f"{status}: the API key was refused (check the key parameter)", status)
    if status == 404:
        return CallOutcome(CallResult.FAILED, "404: the API URL is wrong (check the URL parameter)", status)
    return CallOutcome(CallResult.FAILED, f"IMSHOP answered {status}: {_error_text(document)}", status)


def _retry_after(value: str | None) -> float | None:
    """Seconds, as the vendor may send them; fractions are accepted (the sandbox scales time down)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def _error_text(document: Any) -> str:
    if isinstance(document, dict):
        parts = [str(document[k]) for k in ("error", "message") if document.get(k)]
        if parts:
            return ": ".join(parts)[:MAX_REASON_LENGTH]
    return "no error text"


def _cause(error: ProtocolError) -> str:
    inner = error.args[1] if len(error.args) > 1 else error
    return type(inner).__name__
