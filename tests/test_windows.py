"""Maintenance windows: open spans, deny over allow, boundaries, DST, and the next opening."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.messages import describe_windows as describe
from controller.policy import Window
from controller.windows import (
    is_open,
    next_opening,
    schedule_problem,
    time_zone_problem,
)

BERLIN = ZoneInfo("Europe/Berlin")
US = timedelta(microseconds=1)


def at(text: str) -> datetime:
    """A UTC instant from `2026-03-02 01:00` (seconds optional)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def allow(schedule: str, duration: timedelta, zone: str = "UTC") -> Window:
    return Window("allow", schedule, duration, zone)


def deny(schedule: str, duration: timedelta, zone: str = "UTC") -> Window:
    return Window("deny", schedule, duration, zone)


H = timedelta(hours=1)
NIGHTLY = allow("0 2 * * *", 2 * H)  # 02:00-04:00 UTC every day


# --- the rules ---------------------------------------------------------------------------------


def test_no_windows_means_always_allowed() -> None:
    now = at("2026-03-02 12:34:56")
    assert is_open((), now)
    assert next_opening((), now) == now
    assert describe((), now) == "no maintenance windows; allowed at any time"


def test_an_allow_window_is_open_from_its_start_until_just_before_its_end() -> None:
    windows = [NIGHTLY]
    assert not is_open(windows, at("2026-03-02 02:00") - US)
    assert is_open(windows, at("2026-03-02 02:00"))
    assert is_open(windows, at("2026-03-02 03:00"))
    assert is_open(windows, at("2026-03-02 04:00") - US)
    assert not is_open(windows, at("2026-03-02 04:00"))
    assert not is_open(windows, at("2026-03-02 12:00"))


def test_next_opening_is_now_inside_a_window_and_the_next_start_outside() -> None:
    windows = [NIGHTLY]
    assert next_opening(windows, at("2026-03-02 03:30")) == at("2026-03-02 03:30")
    assert next_opening(windows, at("2026-03-02 04:00")) == at("2026-03-03 02:00")
    assert next_opening(windows, at("2026-03-02 01:59:59.5")) == at("2026-03-02 02:00")
    assert next_opening(windows, at("2026-03-02 02:00")) == at("2026-03-02 02:00")


def test_a_window_that_opened_before_now_is_still_open() -> None:
    # Saturdays 22:00 for 6h: still open early on Sunday, after the day changed.
    weekend = [allow("0 22 * * 6", 6 * H)]
    assert is_open(weekend, at("2026-03-08 03:59"))  # a Sunday
    assert not is_open(weekend, at("2026-03-08 04:00"))
    # A deny window that opened days ago.
    christmas = [deny("0 0 24 12 *", timedelta(days=3))]
    assert not is_open(christmas, at("2026-12-26 23:59"))
    assert next_opening(christmas, at("2026-12-25 12:00")) == at("2026-12-27 00:00")
    assert is_open(christmas, at("2026-12-27 00:00"))


def test_only_deny_windows_allow_everything_outside_them() -> None:
    windows = [deny("0 9 * * 1-5", 8 * H)]  # office hours on weekdays
    assert is_open(windows, at("2026-03-02 08:59"))  # a Monday
    assert not is_open(windows, at("2026-03-02 09:00"))
    assert next_opening(windows, at("2026-03-02 12:00")) == at("2026-03-02 17:00")
    assert is_open(windows, at("2026-03-07 12:00"))  # Saturday


def test_deny_wins_over_an_overlapping_allow() -> None:
    windows = [allow("0 0 * * *", 8 * H), deny("0 2 * * *", H)]
    assert is_open(windows, at("2026-03-02 01:59"))
    assert not is_open(windows, at("2026-03-02 02:00"))
    assert not is_open(windows, at("2026-03-02 02:59"))
    assert is_open(windows, at("2026-03-02 03:00"))
    # Inside the deny window the next opening is its end, still inside the allow window.
    assert next_opening(windows, at("2026-03-02 02:30")) == at("2026-03-02 03:00")


def test_a_deny_window_over_the_start_of_an_allow_window_delays_it() -> None:
    windows = [NIGHTLY, deny("0 1 * * *", 2 * H)]  # deny 01:00-03:00
    assert next_opening(windows, at("2026-03-02 00:00")) == at("2026-03-02 03:00")


def test_a_deny_window_over_a_whole_allow_window_skips_it() -> None:
    # Allowed Saturdays and Wednesdays 02:00-04:00; Saturdays are denied all day.
    windows = [allow("0 2 * * 3,6", 2 * H), deny("0 0 * * 6", 24 * H)]
    assert next_opening(windows, at("2026-03-06 12:00")) == at("2026-03-11 02:00")  # Fri -> Wed


def test_no_opening_within_the_horizon() -> None:
    weekly = [allow("0 2 * * 6", 2 * H)]
    assert next_opening(weekly, at("2026-03-02 12:00"), horizon=timedelta(days=3)) is None
    assert next_opening(weekly, at("2026-03-02 12:00"), horizon=timedelta(days=5)) == at(
        "2026-03-07 02:00"
    )
    # Every allow window lies inside a deny window: never allowed.
    never = [allow("0 2 * * 6", 2 * H), deny("0 0 * * 6", 24 * H)]
    assert next_opening(never, at("2026-03-02 12:00")) is None


def test_touching_and_overlapping_windows_join() -> None:
    denies = [deny("0 0 * * *", H), deny("0 1 * * *", H), deny("30 1 * * *", H)]
    assert next_opening(denies, at("2026-03-02 00:10")) == at("2026-03-02 02:30")
    allows = [allow("0 2 * * *", H), allow("0 3 * * *", H)]
    assert is_open(allows, at("2026-03-02 03:00"))
    assert next_opening(allows, at("2026-03-02 03:59")) == at("2026-03-02 03:59")
    late_deny = [*allows, deny("30 3 * * *", H)]  # 03:30-04:30, past the joined allow window
    assert next_opening(late_deny, at("2026-03-02 03:40")) == at("2026-03-03 02:00")


def test_a_continuous_deny_window_ends_at_the_horizon() -> None:
    always = [deny("* * * * *", timedelta(minutes=5))]
    assert next_opening(always, at("2026-03-02 00:00"), horizon=timedelta(days=1)) is None


def test_a_window_without_duration_never_opens() -> None:
    assert not is_open([allow("* * * * *", timedelta(0))], at("2026-03-02 00:00"))
    assert next_opening([allow("* * * * *", timedelta(0))], at("2026-03-02 00:00")) is None


def test_now_may_be_in_any_zone_but_not_naive() -> None:
    inside = datetime(2026, 3, 2, 3, 30, tzinfo=BERLIN)  # 02:30Z
    assert is_open([NIGHTLY], inside)
    assert next_opening([NIGHTLY], inside) == at("2026-03-02 02:30")
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open([NIGHTLY], datetime(2026, 3, 2, 3, 30))


# --- time zones and daylight saving time -------------------------------------------------------


def test_a_schedule_is_read_in_its_time_zone() -> None:
    windows = [allow("0 2 * * *", 2 * H, "Europe/Berlin")]
    assert next_opening(windows, at("2026-01-15 12:00")) == at("2026-01-16 01:00")  # CET
    assert next_opening(windows, at("2026-07-15 12:00")) == at("2026-07-16 00:00")  # CEST


def test_a_start_in_the_skipped_spring_hour_opens_when_the_clocks_jump() -> None:
    # 2026-03-29: Berlin jumps from 02:00 CET to 03:00 CEST (01:00Z); 02:30 does not exist.
    windows = [allow("30 2 * * *", H, "Europe/Berlin")]
    assert next_opening(windows, at("2026-03-28 12:00")) == at("2026-03-29 01:00")  # 03:00 CEST
    assert not is_open(windows, at("2026-03-29 01:00") - US)
    assert is_open(windows, at("2026-03-29 01:59"))
    assert not is_open(windows, at("2026-03-29 02:00"))
    # The days around it open at 02:30 local as usual.
    assert next_opening(windows, at("2026-03-27 12:00")) == at("2026-03-28 01:30")  # CET
    assert next_opening(windows, at("2026-03-29 12:00")) == at("2026-03-30 00:30")  # CEST


def test_a_start_in_the_repeated_autumn_hour_opens_once() -> None:
    # 2026-10-25: Berlin goes back from 03:00 CEST (01:00Z) to 02:00 CET; 02:30 happens twice.
    windows = [allow("30 2 * * *", H, "Europe/Berlin")]
    assert next_opening(windows, at("2026-10-24 12:00")) == at("2026-10-25 00:30")  # CEST
    assert is_open(windows, at("2026-10-25 01:29"))
    assert not is_open(windows, at("2026-10-25 01:30"))  # 02:30 CET, the second time
    assert next_opening(windows, at("2026-10-25 01:30")) == at("2026-10-26 01:30")


def test_a_wildcard_hour_fires_in_both_repeated_hours() -> None:
    # Hourly for 10 minutes: on the autumn night 02:00 CEST and 02:00 CET both open it.
    windows = [allow("0 * * * *", timedelta(minutes=10), "Europe/Berlin")]
    assert is_open(windows, at("2026-10-25 00:05"))  # 02:05 CEST
    assert is_open(windows, at("2026-10-25 01:05"))  # 02:05 CET
    assert next_opening(windows, at("2026-10-25 00:30")) == at("2026-10-25 01:00")


def test_the_duration_is_elapsed_time_across_a_clock_change() -> None:
    # Opens 01:30 CEST (23:30Z), two real hours later it is 02:30 CET (01:30Z).
    windows = [allow("30 1 * * *", 2 * H, "Europe/Berlin")]
    assert is_open(windows, at("2026-10-25 01:29"))
    assert not is_open(windows, at("2026-10-25 01:30"))


def test_deny_and_allow_in_different_zones() -> None:
    # Allowed 00:00-06:00 New York; denied 06:00-08:00 Berlin (05:00-07:00Z in winter).
    windows = [
        allow("0 0 * * *", 6 * H, "America/New_York"),  # 05:00-11:00Z in winter
        deny("0 6 * * *", 2 * H, "Europe/Berlin"),
    ]
    assert next_opening(windows, at("2026-01-15 04:00")) == at("2026-01-15 07:00")
    assert describe(windows, at("2026-01-15 05:30")) == (
        "inside deny window '0 6 * * *' (2h, Europe/Berlin); next allowed "
        "2026-01-15 08:00 Europe/Berlin (07:00Z)"
    )


def test_next_opening_agrees_with_is_open() -> None:
    """For a tricky set of windows around both DST changes, sampled every 7 minutes."""
    windows = [
        allow("30 2 * * *", 3 * H, "Europe/Berlin"),
        allow("*/20 23 * * *", timedelta(minutes=15), "UTC"),
        deny("0 3 * * *", timedelta(minutes=50), "Europe/Berlin"),
        deny("45 * * * *", timedelta(minutes=5), "America/New_York"),
    ]
    for start in (at("2026-03-28 18:00"), at("2026-10-24 18:00")):
        samples = [start + timedelta(minutes=7 * i) for i in range(300)]
        opened = [is_open(windows, t) for t in samples]
        assert any(opened) and not all(opened)
        for i, now in enumerate(samples):
            opening = next_opening(windows, now)
            assert opening is not None
            assert (opening == now) == opened[i], now
            assert is_open(windows, opening), (now, opening)
            assert not any(
                o for t, o in zip(samples[i:], opened[i:], strict=True) if t < opening
            ), now


# --- describe ----------------------------------------------------------------------------------


def test_describe_outside_allow_windows_names_the_next_opening_in_its_zone() -> None:
    windows = [allow("0 2 * * 1", 2 * H, "Europe/Berlin")]
    assert describe(windows, at("2026-02-26 12:00")) == (
        "outside maintenance windows; next allowed 2026-03-02 02:00 Europe/Berlin (01:00Z)"
    )


def test_describe_gives_the_utc_date_when_it_differs() -> None:
    windows = [allow("30 0 * * *", H, "Europe/Berlin")]
    assert describe(windows, at("2026-03-02 12:00")) == (
        "outside maintenance windows; next allowed 2026-03-03 00:30 Europe/Berlin "
        "(2026-03-02 23:30Z)"
    )


def test_describe_inside_a_deny_window_and_in_utc() -> None:
    windows = [deny("0 0 * * *", 6 * H)]
    assert describe(windows, at("2026-03-01 03:00")) == (
        "inside deny window '0 0 * * *' (6h, UTC); next allowed 2026-03-01 06:00Z"
    )
    assert describe(windows, at("2026-03-01 07:00")) == "outside deny windows"


def test_describe_seconds_only_when_there_are_some() -> None:
    windows = [deny("0 0 * * *", timedelta(seconds=90))]
    assert describe(windows, at("2026-03-01 00:00:30")).endswith(
        "next allowed 2026-03-01 00:01:30Z"
    )


def test_describe_inside_an_allow_window_and_without_an_opening() -> None:
    assert describe([NIGHTLY], at("2026-03-02 02:30")) == (
        "inside allow window '0 2 * * *' (2h, UTC)"
    )
    weekly = [allow("0 2 * * 6", 2 * H)]
    assert describe(weekly, at("2026-03-02 12:00"), horizon=timedelta(days=2)) == (
        "outside maintenance windows; not allowed within the next 2d"
    )


# --- validation helpers ------------------------------------------------------------------------


def test_schedule_problems() -> None:
    assert schedule_problem("0 2 * * SAT,SUN") is None
    assert schedule_problem("*/15 8-17 1,15 JAN-MAR 1-5") is None
    assert schedule_problem("0 0 L * *") is None
    assert schedule_problem("0 2 * *") == (
        "it has 4 fields; write five: minute hour day-of-month month day-of-week"
    )
    assert schedule_problem("0 0 0 2 * *") is not None  # six fields (seconds) are not cron here
    assert schedule_problem("0 2 30 2 *") == (
        "no month it names has that day of the month, so it never fires"
    )


def test_time_zone_problems() -> None:
    assert time_zone_problem("UTC") is None
    assert time_zone_problem("Europe/Berlin") is None
    assert time_zone_problem("America/Argentina/Buenos_Aires") is None
    assert time_zone_problem("Europe/Berln") == (
        "unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'?"
    )
    assert time_zone_problem("../etc/passwd") is not None
    assert time_zone_problem("/etc/localtime") is not None
    assert time_zone_problem("") is not None
