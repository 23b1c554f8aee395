"""How one local stack departs from template.yaml: the knobs a test, the demo or the bench turns.

Kept apart from the assembly (``stack``) so that a reader sees every departure from the deployed stack
in one value, and the bench and the demo can name their settings without starting anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from imshop_push_local import cfn_template
from imshop_push_local.local_tuning import LocalTuning
from imshop_push_local.provisioning import TEMPLATE_PATH


@dataclass(frozen=True)
class StackSettings:
    """How the local stack departs from template.yaml; None takes the template's value.

    Durations the template sets are multiplied by ``time_scale`` (the demo's 1/30 turns the vendor's
    60 s window into 2 s). The defaults below are the integration tests' faster clock: the vendor's
    10 calls a minute become 10 calls per half second, so a run that proves the limit takes seconds.
    """

    template: Path = TEMPLATE_PATH
    time_scale: float = 1 / 30
    rate_limit_requests: int | None = None
    rate_limit_window_seconds: float | None = 0.5
    max_recipients: int | None = None
    http_timeout_seconds: float | None = 1.0
    connect_timeout_seconds: float = 0.5
    function_timeout_seconds: float | None = 4.0
    visibility_timeout_seconds: int | None = 5
    max_receive_count: int | None = None
    concurrency: int | None = None
    batch_size: int | None = None
    batching_window_seconds: float | None = 0.3
    api_key: str | None = "local-demo-key"
    sandbox_slow_seconds: float = 1.5
    log_level: str = "WARNING"
    history: bool = False
    """NotificationHistory=Enabled: the history table and the webhook function exist."""
    history_api_key: str = "local-history-key"
    quiet_hours: str | None = None
    """The QuietHours parameter (wall-clock HH:MM-HH:MM, never time-scaled); None: the template's default."""
    quiet_hours_timezone: str | None = None

    def tuning(self) -> LocalTuning:
        parameters = {
            name: str(value)
            for name, value in (
                ("RateLimitRequests", self.rate_limit_requests),
                ("MaxRecipientsPerRequest", self.max_recipients),
                ("NotificationHistory", "Enabled" if self.history else None),
                ("QuietHours", self.quiet_hours),
                ("QuietHoursTimezone", self.quiet_hours_timezone),
            )
            if value is not None
        }
        environment = {
            name: str(value)
            for name, value in (
                ("RATE_LIMIT_WINDOW_SECONDS", self.rate_limit_window_seconds),
                ("HTTP_TIMEOUT_SECONDS", self.http_timeout_seconds),
                ("HTTP_CONNECT_TIMEOUT_SECONDS", self.connect_timeout_seconds),
                ("POWERTOOLS_LOG_LEVEL", self.log_level),
            )
            if value is not None
        }
        # The overrides StackSettings shares with LocalTuning by name (durations in local time).
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(LocalTuning) if hasattr(self, f.name)}
        return LocalTuning(**{**shared, "parameters": parameters, "environment": environment})

    def vendor_limits(self) -> tuple[int, float, int]:
        """The limits the IMSHOP sandbox enforces: what the template configures the function with
        (its defaults are the vendor's documented limits), time-scaled, or this run's overrides."""
        defaults = cfn_template.parameter_values(cfn_template.load(self.template), {})
        window = self.rate_limit_window_seconds
        return (
            self.rate_limit_requests or int(defaults["RateLimitRequests"]),
            window if window is not None else float(defaults["RateLimitWindowSeconds"]) * self.time_scale,
            self.max_recipients or int(defaults["MaxRecipientsPerRequest"]),
        )
