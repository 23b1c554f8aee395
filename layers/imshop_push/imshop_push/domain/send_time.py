"""When a request is due: its `sendAt`, and for the bulk lane the quiet hours.

Quiet hours are a daily window of local time in one IANA time zone, start inclusive and end exclusive,
wrapping midnight when the start is later than the end (`22:00-08:00`). Values only, no I/O: the hold stage
asks `due` and re-enqueues what is not due yet; the call stage asks again right before each bulk call, since a
request due when it was received may wait for a slot until the quiet hours have begun.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_QUIET_HOURS_TIMEZONE = "Europe/Moscow"
# How long state is kept, and so how far ahead sendAt may be: the longest an SQS message can live, so a
# redelivery always finds its state.
DEFAULT_STATE_TTL_SECONDS = 14 * 24 * 3600
_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    zone: ZoneInfo

    def release(self, at: float) -> float | None:
        """The end of the quiet hours `at` falls in (epoch seconds), or None when `at` is not inside them."""
        local = datetime.fromtimestamp(at, self.zone)
        now = local.time().replace(tzinfo=None)
        wraps = self.end < self.start  # e.g. 22:00-08:00: from the start to midnight, then to the end
        if not ((now >= self.start or now < self.end) if wraps else self.start <= now < self.end):
            return None
        day = local.date() if now < self.end else local.date() + timedelta(days=1)
        end = datetime.combine(day, self.end, self.zone).timestamp()
        # A DST gap could put the wall-clock end before `at`; the hour after the jump is past it for sure.
        return end if end > at else at + 3600

    def next_start(self, at: float) -> float:
        """The first instant from `at` on inside the quiet hours (`at` itself when it is). A start in a DST gap
        may come out up to the gap late: only a bound for waiting, `release` is what decides."""
        if self.release(at) is not None:
            return at
        day = datetime.fromtimestamp(at, self.zone).date()
        starts = (datetime.combine(day + timedelta(days=n), self.start, self.zone).timestamp() for n in range(3))
        return next((start for start in starts if start > at), at + 24 * 3600)


def parse_window(hours: str) -> tuple[time, time] | None:
    """(start, end), or None for no quiet hours (empty, or equal times). Raises ValueError saying what is
    wrong."""
    hours = hours.strip()
    if not hours:
        return None
    match = _HOURS.fullmatch(hours)
    if match is None:
        raise ValueError(f"must be HH:MM-HH:MM in 24-hour time (e.g. 22:00-08:00), got {hours!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = time(h1, m1), time(h2, m2)
    return None if start == end else (start, end)


def load_zone(name: str) -> ZoneInfo:
    """Raises ValueError: an unknown zone, or a runtime without the time zone database."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"must be an IANA time zone name (e.g. Europe/Moscow), got {name!r}") from None


@dataclass(frozen=True, slots=True)
class SendTime:
    """How far ahead a request may be scheduled, and the bulk lane's quiet hours (None: none)."""

    max_ahead_seconds: float = 14 * 24 * 3600  # the state TTL: a cancel or progress record must outlive the wait
    quiet_hours: QuietHours | None = field(default=None)

    def due(self, now: float, send_at: datetime | None, *, bulk: bool) -> float:
        """When the request may be sent: now, its sendAt, or (bulk) the end of the quiet hours it falls in."""
        due = max(now, send_at.timestamp()) if send_at is not None else now
        if bulk and self.quiet_hours is not None:
            release = self.quiet_hours.release(due)
            if release is not None:
                return release
        return due

    def quiet_from(self, now: float) -> float:
        """Until when a bulk call may start: the next start of the quiet hours (`now` inside them; no end
        without any)."""
        return math.inf if self.quiet_hours is None else self.quiet_hours.next_start(now)

    def too_far(self, now: float, send_at: datetime | None) -> bool:
        return send_at is not None and send_at.timestamp() > now + self.max_ahead_seconds

    def horizon_problem(self, now: float, send_at: datetime | None) -> str | None:
        """Why a request with this sendAt is poison, or None: the dispatcher's reason and the publishing helper's
        refusal alike, so the helper refuses exactly what the dispatcher would dead-letter."""
        if not self.too_far(now, send_at):
            return None
        return (
            f"sendAt: is more than {self.max_ahead_seconds:.0f} s ahead (the state TTL, STATE_TTL_SECONDS): a cancel"
            " or a duplicate would be forgotten before it is sent; schedule it closer"
        )


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
