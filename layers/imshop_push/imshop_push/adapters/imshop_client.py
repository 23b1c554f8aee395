"""The IMSHOP push API over one urllib3 pool, and what each answer means for delivery.

The vendor documents no idempotency keys, 429 behaviour or per-recipient results, so the client reduces
every answer to one question the dispatcher can act on: were the recipients reached, surely not, or is it
unknowable (the call may have arrived but its answer did not)?
"""

from __future__ import annotations

import http
import json
import math
import time
from collections.abc import Callable
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from imshop_push.domain.bearer_key import bearer_key
from imshop_push.domain.model import CallOutcome, CallResult

MAX_REASON_LENGTH = 300
REJECTED_STATUSES = frozenset({400, 413, 422})
"""The vendor refuses this body as such (malformed, too large, unprocessable): sending it again cannot help."""
DEFAULT_REUSE_IDLE_SECONDS = 2.0  # well under common server keep-alive timeouts (5 s and up)


class ImshopClient:
    """One instance per execution environment: the pool survives between invocations.

    `read_timeout_seconds` (HTTP_TIMEOUT_SECONDS) bounds the whole call, connect included: the dispatcher
    budgets a call by it, and a call that ran longer would cut into the time left to settle before the function
    times out. `connect_timeout_seconds` only caps the connect phase inside that bound.

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
        if api_key:  # refused here, not by http.client at the first call with the key in its message
            self._headers["Authorization"] = f"Bearer {bearer_key(api_key, source='the IMSHOP API key')}"
        total = self._total_seconds = read_timeout_seconds
        self._timeout = urllib3.Timeout(total=total, connect=min(connect_timeout_seconds, total), read=total)
        self._pool = pool or urllib3.PoolManager(num_pools=2, maxsize=1, retries=False)
        self._reuse_idle_seconds = reuse_idle_seconds
        self._clock = clock
        self._last_used: float | None = None

    @property
    def worst_case_seconds(self) -> float:
        """How long one call can take at most, connect and answer together (urllib3 never retries here): what the
        dispatcher keeps in reserve before its deadline.

        urllib3 gives the connect phase at most this much and the answer what is left of it. Outside the bound:
        DNS resolution, and a server that trickles its answer byte by byte (each read waits afresh)."""
        return self._total_seconds

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
            return CallOutcome(CallResult.AMBIGUOUS, f"no answer within {self._total_seconds:g} s")
        except ProtocolError as e:
            return CallOutcome(CallResult.AMBIGUOUS, f"connection dropped: {_cause(e)}")
        except HTTPError as e:
            return CallOutcome(CallResult.FAILED, f"HTTP error: {type(e).__name__}")
        return classify(response.status, response.data, response.headers.get("Retry-After"))


def classify(status: int, data: bytes, retry_after: str | None = None) -> CallOutcome:
    """Map an answer to a delivery result: sent; refused for good (poison, with the vendor's reason); or not sent
    for now (retried, and never counted as delivered); a 200 that does not say whether it sent is ambiguous."""
    document = _json(data)
    if status == 200:
        if isinstance(document, dict) and document.get("success") is True:
            return CallOutcome(CallResult.SENT, "success", status)
        if isinstance(document, dict) and document.get("success") is False:
            return CallOutcome(CallResult.FAILED, f"success: false ({_error_text(document)})", status)
        return CallOutcome(CallResult.AMBIGUOUS, "200 without a success flag", status)
    if status == 429:
        return CallOutcome(CallResult.RATE_LIMITED, "429 Too Many Requests", status, _retry_after(retry_after))
    if status in REJECTED_STATUSES:
        return CallOutcome(CallResult.REJECTED, f"IMSHOP answered {status}: {_error_text(document, status)}", status)
    if status in (401, 403):
        return CallOutcome(CallResult.FAILED, f"{status}: the API key was refused (check the key parameter)", status)
    if status == 404:
        return CallOutcome(CallResult.FAILED, "404: the API URL is wrong (check the URL parameter)", status)
    return CallOutcome(CallResult.FAILED, f"IMSHOP answered {status}: {_error_text(document, status)}", status)


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


def _error_text(document: Any, status: int | None = None) -> str:
    """The vendor's own words, bounded and printable: they end up in logs and in a dead letter's reason."""
    if isinstance(document, dict):
        parts = [str(document[k]) for k in ("error", "message") if document.get(k)]
        if parts:
            text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in ": ".join(parts))
            return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"
    if status is None or status not in http.HTTPStatus:
        return "no error text"
    return f"{http.HTTPStatus(status).phrase} (no error text)"


def _cause(error: ProtocolError) -> str:
    inner = error.args[1] if len(error.args) > 1 else error
    return type(inner).__name__
