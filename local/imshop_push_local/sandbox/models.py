"""What the sandbox records and plays: values shared by the HTTP handler and the sandbox's API."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


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
