"""Quiet hours as configured (QUIET_HOURS, QUIET_HOURS_TIMEZONE) and the window they make: start inclusive,
end exclusive, wrapping midnight, in local time of their zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imshop_push.domain.bearer_key import ConfigError
from imshop_push.domain.send_time import QuietHours, SendTime, load_zone
from imshop_push.entrypoints.config import Settings

BASE = {"IMSHOP_API_URL": "https://push.imshop.example/api"}
MOSCOW = ZoneInfo("Europe/Moscow")


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_no_quiet_hours_by_default_and_for_empty_or_equal_times() -> None:
    assert Settings.from_env(BASE).quiet_hours is None
    assert Settings.from_env({**BASE, "QUIET_HOURS": " "}).quiet_hours is None
    assert Settings.from_env({**BASE, "QUIET_HOURS": "08:00-08:00"}).quiet_hours is None


def test_quiet_hours_default_to_moscow_time() -> None:
    quiet = Settings.from_env({**BASE, "QUIET_HOURS": "22:00-08:00"}).quiet_hours

    assert quiet == QuietHours(time(22), time(8), MOSCOW)


@pytest.mark.parametrize("value", ["22-08", "22:00", "24:00-08:00", "22:60-08:00", "22:00 - 08:00", "10pm-8am"])
def test_malformed_quiet_hours_are_an_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^QUIET_HOURS must be HH:MM-HH:MM"):
        Settings.from_env({**BASE, "QUIET_HOURS": value})


@pytest.mark.parametrize("zone", ["Moscow", "Europe/Mordor", "../etc/passwd", "/etc/localtime"])
def test_an_unknown_zone_is_an_error_naming_the_variable(zone: str) -> None:
    with pytest.raises(ConfigError, match=r"^QUIET_HOURS_TIMEZONE must be an IANA time zone name"):
        Settings.from_env({**BASE, "QUIET_HOURS": "22:00-08:00", "QUIET_HOURS_TIMEZONE": zone})


def test_the_zone_is_not_loaded_without_quiet_hours() -> None:
    assert Settings.from_env({**BASE, "QUIET_HOURS_TIMEZONE": "Europe/Mordor"}).quiet_hours is None


@pytest.mark.parametrize(
    ("moment", "release"),
    [
        ("2027-01-15T21:59:59+03:00", None),
        ("2027-01-15T22:00:00+03:00", "2027-01-16T08:00:00+03:00"),
        ("2027-01-15T23:59:59.999+03:00", "2027-01-16T08:00:00+03:00"),
        ("2027-01-16T00:00:00+03:00", "2027-01-16T08:00:00+03:00"),
        ("2027-01-16T07:59:59.999+03:00", "2027-01-16T08:00:00+03:00"),
        ("2027-01-16T08:00:00+03:00", None),
        ("2027-01-15T19:30:00Z", "2027-01-16T05:00:00Z"),  # 22:30 in Moscow
    ],
)
def test_a_window_wrapping_midnight(moment: str, release: str | None) -> None:
    quiet = QuietHours(time(22), time(8), MOSCOW)

    assert quiet.release(at(moment)) == (at(release) if release else None)


def test_a_window_within_one_day() -> None:
    quiet = QuietHours(time(13), time(14, 30), ZoneInfo("UTC"))

    assert quiet.release(at("2027-01-15T12:59:59Z")) is None
    assert quiet.release(at("2027-01-15T13:00:00Z")) == at("2027-01-15T14:30:00Z")
    assert quiet.release(at("2027-01-15T14:30:00Z")) is None


def test_the_end_is_local_wall_clock_time_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # 2027-03-28 02:00 CET -> 03:00 CEST
    quiet = QuietHours(time(22), time(8), berlin)

    assert quiet.release(at("2027-03-27T23:00:00+01:00")) == at("2027-03-28T08:00:00+02:00")


def test_only_the_bulk_lane_waits_for_quiet_hours() -> None:
    send_time = SendTime(quiet_hours=QuietHours(time(22), time(8), MOSCOW))
    night = at("2027-01-15T23:00:00+03:00")

    assert send_time.due(night, None, bulk=False) == night
    assert send_time.due(night, None, bulk=True) == at("2027-01-16T08:00:00+03:00")


ZONES = st.sampled_from(["UTC", "Europe/Moscow", "Asia/Kathmandu", "Europe/Berlin", "America/New_York"])
WITHOUT_DST = {"UTC", "Europe/Moscow", "Asia/Kathmandu"}
TIMES = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@given(start=TIMES, end=TIMES, zone=ZONES, moment=st.floats(min_value=1.7e9, max_value=1.9e9, allow_nan=False))
def test_release_is_the_end_of_the_window_a_moment_falls_in(start: time, end: time, zone: str, moment: float) -> None:
    """Held until the first moment outside the window, never earlier; a DST jump can only make it later."""
    if start == end:
        return
    tz = ZoneInfo(zone)
    quiet = QuietHours(start, end, tz)

    def inside(t: float) -> bool:
        local = datetime.fromtimestamp(t, tz).time()
        return start <= local < end if start < end else (local >= start or local < end)

    release = quiet.release(moment)

    assert (release is not None) == inside(moment)
    if release is None:
        return
    assert moment < release <= moment + 25 * 3600
    assert not inside(release)
    if zone in WITHOUT_DST:
        assert all(inside(moment + (release - moment) * k / 16) for k in range(16))
        assert inside(release - 0.001)


def test_the_layer_carries_the_time_zone_database_for_a_runtime_image_without_one() -> None:
    """zoneinfo reads the system's database first and falls back to the `tzdata` package: the layer ships it,
    so QUIET_HOURS_TIMEZONE loads whatever the Lambda image holds under /usr/share/zoneinfo."""
    import zoneinfo
    from pathlib import Path

    lock = Path(__file__).parents[2] / "layers" / "imshop_push" / "requirements.lock"
    assert any(line.startswith("tzdata==") for line in lock.read_text().splitlines())
    zoneinfo.reset_tzpath(to=[])  # no system database at all
    zoneinfo.ZoneInfo.clear_cache()
    try:
        zone = load_zone("Europe/Moscow")
        assert datetime(2026, 12, 1, 12, tzinfo=zone).utcoffset() == timedelta(hours=3)
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()


@given(start=TIMES, end=TIMES, zone=ZONES, moment=st.floats(min_value=1.7e9, max_value=1.9e9, allow_nan=False))
def test_next_start_is_the_first_moment_inside_the_window(start: time, end: time, zone: str, moment: float) -> None:
    """How long a bulk call may wait for a slot: up to the next start, never into the window (outside a DST gap,
    which may only move the bound later; the look right before the call decides there)."""
    if start == end:
        return
    tz = ZoneInfo(zone)
    quiet = QuietHours(start, end, tz)

    next_start = quiet.next_start(moment)

    if quiet.release(moment) is not None:
        assert next_start == moment
        return
    assert moment < next_start <= moment + 25 * 3600
    assert quiet.release(next_start) is not None or zone not in WITHOUT_DST  # a window inside a DST gap
    if zone in WITHOUT_DST:
        assert all(quiet.release(moment + (next_start - moment) * k / 16) is None for k in range(16))
        assert quiet.release(next_start - 0.001) is None
    assert SendTime(quiet_hours=quiet).quiet_from(moment) == next_start
    assert SendTime().quiet_from(moment) == float("inf")
