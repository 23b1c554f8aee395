"""How the local stack departs from the deployed one, in one value.

Everything else the local stack is comes from template.yaml; ``LocalTuning`` is the single place a test,
the demo or the bench says "faster" (``time_scale``) or "different" (an override), so the departure is
visible in one object rather than scattered over the provisioner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LocalTuning:
    """How the local stack departs from the deployed one.

    ``time_scale`` multiplies every duration the template sets where the emulator consumes it (a
    function's Timeout, a queue's VisibilityTimeout, a batching window, environment variables named
    ``*_SECONDS``). The rest override what the template resolves to, already in local time.
    """

    time_scale: float = 1.0
    parameters: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    function_timeout_seconds: float | None = None
    visibility_timeout_seconds: int | None = None
    max_receive_count: int | None = None
    batch_size: int | None = None
    batching_window_seconds: float | None = None
    concurrency: int | None = None

    def with_queue_overrides(self, visibility_timeout: int | None, max_receive_count: int | None) -> LocalTuning:
        """The two overrides ``provision`` also takes as plain arguments (the older tests' spelling)."""
        return dataclasses.replace(
            self,
            visibility_timeout_seconds=visibility_timeout or self.visibility_timeout_seconds,
            max_receive_count=max_receive_count or self.max_receive_count,
        )
