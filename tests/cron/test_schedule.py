"""Cron schedule maths: parsing, aliases, errors, and fire times across DST in several zones."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chancy.plugins.cron.schedule import (
    InvalidCronExpression,
    get_timezone,
    next_run,
    parse,
    resolve_wall_time,
    timezone_name,
)

LONDON = "Europe/London"
NEW_YORK = "America/New_York"
SYDNEY = "Australia/Sydney"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


def fires(expression: str, after: datetime, zone: str, n: int) -> list[datetime]:
    return list(itertools.islice(parse(expression).iter_after(after, zone), n))


def in_zone(times: list[datetime], zone: str) -> list[str]:
    return [t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") for t in times]


# -- parsing ---------------------------------------------------------------------------------


def test_fields_lists_ranges_steps_and_names() -> None:
    e = parse("0,30 9-17/2 1,15 jan-mar,DEC mon-fri")
    assert e.fields == ("0,30", "9-17/2", "1,15", "jan-mar,dec", "mon-fri")
    # The 1st/15th or any weekday (both day fields restricted), Jan-Mar and Dec, 9-17 odd hours.
    walls = [t.replace(tzinfo=None) for t in fires(str(e), utc(2024, 1, 1), "UTC", 12)]
    assert walls[:3] == [datetime(2024, 1, 1, h, m) for h, m in ((9, 0), (9, 30), (11, 0))]
    assert all(t.hour in {9, 11, 13, 15, 17} and t.minute in {0, 30} for t in walls)
    assert next_run("0 9 * * *", utc(2024, 3, 31, 10)) == utc(2024, 4, 1, 9)
    assert [t.minute for t in fires("*/15 * * * *", utc(2024, 1, 1), "UTC", 4)] == [15, 30, 45, 0]
    assert [t.minute for t in fires("5/20 * * * *", utc(2024, 1, 1), "UTC", 3)] == [5, 25, 45]
    assert fires("0 0 * * 7", utc(2024, 1, 1), "UTC", 1) == [utc(2024, 1, 7)]  # 7 is Sunday
    assert str(parse("  0   0 * *   *  ")) == "0 0 * * *"
    assert not e.has_seconds and parse("0 0 * * * 30").has_seconds


@pytest.mark.parametrize(
    ("alias", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_aliases(alias: str, same_as: str) -> None:
    start = utc(2024, 2, 28, 13, 7)
    assert fires(alias, start, "UTC", 5) == fires(same_as, start, "UTC", 5)
    assert str(parse(alias)) == alias


def test_alias_fire_times() -> None:
    start = utc(2024, 2, 28, 13, 7)
    assert next_run("@hourly", start) == utc(2024, 2, 28, 14, 0)
    assert next_run("@daily", start) == utc(2024, 2, 29, 0, 0)
    assert next_run("@weekly", start) == utc(2024, 3, 3, 0, 0)  # a Sunday
    assert next_run("@monthly", start) == utc(2024, 3, 1, 0, 0)
    assert next_run("@yearly", start) == utc(2025, 1, 1, 0, 0)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 field"),
        ("* * * * * * * *", "has 8 field"),
        ("", "has 0 field"),
        ("60 * * * *", "minute field '60': not valid (out of range); the minute field takes 0-59"),
        ("* 24 * * *", "hour field '24': not valid (out of range)"),
        ("* * 0 * *", "day of month field '0': not valid (out of range)"),
        ("* * * 13 *", "month field '13'"),
        ("* * * * 8", "day of week field '8'"),
        ("0 0 * * * 60", "second field '60'"),
        ("0 0 * * * 0 1969", "year field '1969'"),
        ("*/0 * * * *", "minute field '*/0': not valid (step '0'"),
        ("*/x * * * *", "minute field '*/x': not valid"),
        ("1,,2 * * * *", "minute field '1,,2'"),
        ("a * * * *", "minute field 'a'"),
        ("* * * foo *", "month field 'foo': not valid; the month field takes 1-12 or jan-dec"),
        ("0 0 * * mon#6", "day of week field 'mon#6'"),
        ("0 0 1,15W * *", "'W' can only be used with a single day value"),
        ("0 0 * * 5L", "write 'L' followed by the weekday number, such as 'L5'"),
        ("0 0 * * fri#L", "such as 'L5'"),
        ("0 0 LW * *", "'LW' (the last weekday of the month) is not supported"),
        ("0 0 L-3 * *", "offsets from the last day ('L-3') are not supported"),
        ("H * * * *", "minute field 'H': 'H' (hashed) values are not supported"),
        ("0 H(0-5) * * *", "hour field 'H(0-5)'"),
        ("@reboot", "'@reboot' is not supported"),
        ("@every 5m", "unknown cron alias"),
        ("0 0 30 2 *", "never matches"),
        ("0 0 31 4,6,9,11 *", "never matches"),
        ("0 0 1 1 * 0 2020", "never matches"),
    ],
)
def test_bad_expressions_are_clear_value_errors(expression: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(expression)
    assert isinstance(caught.value, InvalidCronExpression)
    assert message in str(caught.value)


def test_a_non_string_is_an_error() -> None:
    with pytest.raises(InvalidCronExpression, match="must be a string"):
        parse(5)  # type: ignore[arg-type]


def test_february_29th_is_found_years_ahead() -> None:
    assert next_run("0 0 29 2 *", utc(2025, 3, 1)) == utc(2028, 2, 29)


# -- day matching ------------------------------------------------------------------------------


def test_restricted_day_fields_match_either() -> None:
    # The 13th of the month, or any Friday (Vixie cron's rule).
    times = fires("0 12 13 * fri", utc(2024, 9, 1), "UTC", 5)
    assert [t.day for t in times] == [6, 13, 20, 27, 4]
    assert times[1].weekday() == 4 and times[-1].month == 10


def test_a_starred_day_field_means_the_other_decides() -> None:
    assert all(t.weekday() == 0 for t in fires("0 0 * * mon", utc(2024, 1, 1), "UTC", 10))
    assert all(t.day == 13 for t in fires("0 0 13 * *", utc(2024, 1, 1), "UTC", 10))
    assert all(t.weekday() == 0 for t in fires("0 0 ? * mon", utc(2024, 1, 1), "UTC", 10))
    # Unlike Vixie cron, croniter (so Chancy 0.26) counts "*/2" as restricted: odd days OR
    # Mondays. Kept as 0.26 read it.
    days = fires("0 0 */2 * mon", utc(2024, 1, 1), "UTC", 6)
    assert all(t.weekday() == 0 or t.day % 2 == 1 for t in days)
    assert any(t.weekday() != 0 for t in days) and any(t.day % 2 == 0 for t in days)


def test_fire_times_are_strictly_after_and_increasing() -> None:
    start = utc(2024, 1, 1, 0, 0)
    assert next_run("0 * * * *", start) == utc(2024, 1, 1, 1, 0)  # strictly after
    assert next_run("* * * * *", utc(2024, 1, 1, 0, 0, 30)) == utc(2024, 1, 1, 0, 1)
    times = fires("*/7 */5 * * *", start, NEW_YORK, 200)
    assert all(a < b for a, b in itertools.pairwise(times))


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("* * * * *").next_after(datetime(2024, 1, 1))


# -- time zones ---------------------------------------------------------------------------------


def test_time_zone_names() -> None:
    assert timezone_name("Europe/London") == "Europe/London"
    assert timezone_name(ZoneInfo("America/New_York")) == "America/New_York"
    assert timezone_name(UTC) == "UTC" and timezone_name("utc") == "UTC"
    assert get_timezone("UTC") is UTC
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        get_timezone("Mars/Olympus")
    with pytest.raises(ValueError, match="unknown time zone"):
        timezone_name("Not a zone")
    with pytest.raises(ValueError, match="no IANA name"):
        from datetime import timezone

        timezone_name(timezone(timedelta(hours=2)))


def test_a_wall_time_is_read_in_its_zone() -> None:
    assert next_run("30 9 * * *", utc(2024, 1, 15), LONDON) == utc(2024, 1, 15, 9, 30)  # GMT
    assert next_run("30 9 * * *", utc(2024, 7, 15), LONDON) == utc(2024, 7, 15, 8, 30)  # BST
    assert next_run("30 9 * * *", utc(2024, 1, 15), NEW_YORK) == utc(2024, 1, 15, 14, 30)
    assert next_run("30 9 * * *", utc(2024, 7, 15), NEW_YORK) == utc(2024, 7, 15, 13, 30)


@pytest.mark.parametrize(
    ("zone", "day", "fires_at"),
    [
        # 02:30 does not exist on the spring-forward day: it fires at the change, once.
        (NEW_YORK, (2024, 3, 10), "2024-03-10 03:00 EDT"),  # 02:00 EST -> 03:00 EDT
        (SYDNEY, (2024, 10, 6), "2024-10-06 03:00 AEDT"),  # 02:00 AEST -> 03:00 AEDT
    ],
)
def test_a_0230_job_runs_once_on_a_spring_forward_day(
    zone: str, day: tuple[int, int, int], fires_at: str
) -> None:
    y, m, d = day
    start = local(zone, y, m, d - 1, 12, 0)
    shown = in_zone(fires("30 2 * * *", start, zone, 3), zone)
    assert shown[0] == fires_at
    # The next days are back to 02:30.
    assert shown[1].startswith(f"{y:04d}-{m:02d}-{d + 1:02d} 02:30")
    assert shown[2].startswith(f"{y:04d}-{m:02d}-{d + 2:02d} 02:30")


def test_london_spring_forward_and_fall_back_for_a_0130_job() -> None:
    # London: 01:00 GMT -> 02:00 BST on 31 March 2024; 02:00 BST -> 01:00 GMT on 27 October.
    spring = fires("30 1 * * *", local(LONDON, 2024, 3, 30, 12), LONDON, 3)
    assert in_zone(spring, LONDON) == [
        "2024-03-31 02:00 BST",  # 01:30 was skipped: fired when the clocks changed
        "2024-04-01 01:30 BST",
        "2024-04-02 01:30 BST",
    ]
    assert spring[0] == utc(2024, 3, 31, 1, 0)
    autumn = fires("30 1 * * *", local(LONDON, 2024, 10, 26, 12), LONDON, 3)
    assert in_zone(autumn, LONDON) == [
        "2024-10-27 01:30 BST",  # the first 01:30 only, not the repeated one in GMT
        "2024-10-28 01:30 GMT",
        "2024-10-29 01:30 GMT",
    ]
    assert autumn[0] == utc(2024, 10, 27, 0, 30)


def test_new_york_fall_back_runs_a_0130_job_once() -> None:
    times = fires("30 1 * * *", local(NEW_YORK, 2024, 11, 2, 12), NEW_YORK, 3)
    assert in_zone(times, NEW_YORK) == [
        "2024-11-03 01:30 EDT",
        "2024-11-04 01:30 EST",
        "2024-11-05 01:30 EST",
    ]
    # Asked from inside the repeated hour (01:10 EST, after the first 01:30 happened), the
    # next run is the next day's, not a second 01:30.
    inside = local(NEW_YORK, 2024, 11, 3, 1, 10, fold=1)
    assert next_run("30 1 * * *", inside, NEW_YORK) == utc(2024, 11, 4, 6, 30)


def test_a_0230_job_on_a_fall_back_day_runs_once() -> None:
    # 02:30 exists once on New York's fall-back day (the repeated hour is 01:00-02:00).
    times = fires("30 2 * * *", local(NEW_YORK, 2024, 11, 2, 12), NEW_YORK, 2)
    assert in_zone(times, NEW_YORK) == ["2024-11-03 02:30 EST", "2024-11-04 02:30 EST"]


@pytest.mark.parametrize("zone", [LONDON, NEW_YORK, SYDNEY])
@pytest.mark.parametrize(
    ("expression", "start", "count"),
    [
        ("0 * * * *", utc(2024, 1, 1), 24 * 366),  # a whole year, hourly
        ("*/15 * * * *", utc(2024, 3, 1), 4 * 24 * 45),  # the spring transitions
        ("*/15 * * * *", utc(2024, 9, 25), 4 * 24 * 45),  # the autumn transitions
    ],
)
def test_no_wall_time_fires_twice_and_times_always_increase(
    zone: str, expression: str, start: datetime, count: int
) -> None:
    times = fires(expression, start, zone, count)
    walls = [t.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for t in times]
    assert len(set(walls)) == len(walls), f"{expression} in {zone} repeats a wall time"
    assert all(a < b for a, b in itertools.pairwise(times))


def test_hourly_jobs_across_new_york_transitions() -> None:
    spring = fires("0 * * * *", local(NEW_YORK, 2024, 3, 10, 0, 30), NEW_YORK, 3)
    assert in_zone(spring, NEW_YORK) == [
        "2024-03-10 01:00 EST",
        "2024-03-10 03:00 EDT",  # 02:00 does not exist; 03:00 fires once
        "2024-03-10 04:00 EDT",
    ]
    autumn = fires("0 * * * *", local(NEW_YORK, 2024, 11, 3, 0, 30), NEW_YORK, 3)
    assert in_zone(autumn, NEW_YORK) == [
        "2024-11-03 01:00 EDT",  # 01:00 happens twice; it fires the first time only
        "2024-11-03 02:00 EST",
        "2024-11-03 03:00 EST",
    ]


def test_every_skipped_time_in_a_gap_fires_once_at_the_change() -> None:
    times = fires("*/20 2 * * *", local(NEW_YORK, 2024, 3, 10, 0, 0), NEW_YORK, 4)
    assert in_zone(times, NEW_YORK) == [
        "2024-03-10 03:00 EDT",  # 02:00, 02:20 and 02:40 were all skipped: one run
        "2024-03-11 02:00 EDT",
        "2024-03-11 02:20 EDT",
        "2024-03-11 02:40 EDT",
    ]


def test_resolving_wall_times() -> None:
    zone = ZoneInfo(NEW_YORK)
    assert resolve_wall_time(datetime(2024, 1, 1, 12, 0), zone) == utc(2024, 1, 1, 17, 0)
    assert resolve_wall_time(datetime(2024, 3, 10, 2, 30), zone) == utc(2024, 3, 10, 7, 0)
    assert resolve_wall_time(datetime(2024, 11, 3, 1, 30), zone) == utc(2024, 11, 3, 5, 30)
    # A 30-minute change (Lord Howe Island): the gap is 02:00-02:30.
    howe = ZoneInfo("Australia/Lord_Howe")
    assert resolve_wall_time(datetime(2024, 10, 6, 2, 10), howe) == datetime(
        2024, 10, 6, 2, 30, tzinfo=howe
    ).astimezone(UTC)


def test_a_seconds_field_follows_the_same_dst_rules() -> None:
    # Six fields: the seconds come last (croniter's order). 02:30:15 does not exist on New
    # York's spring-forward day: it fires at the change, then at 02:30:15 again.
    times = fires("30 2 * * * 15", local(NEW_YORK, 2024, 3, 9, 12), NEW_YORK, 2)
    assert times[0] == utc(2024, 3, 10, 7, 0)  # 03:00:00 EDT
    assert times[1] == local(NEW_YORK, 2024, 3, 11, 2, 30, 15).astimezone(UTC)
    # Every 20 seconds through the skipped hour: one run at the change, none repeated.
    gap = fires("* 2 * * * */20", local(NEW_YORK, 2024, 3, 10, 1, 59), NEW_YORK, 2)
    assert gap[0] == utc(2024, 3, 10, 7, 0)
    assert gap[1] == local(NEW_YORK, 2024, 3, 11, 2, 0, 0).astimezone(UTC)
    # Every 30 seconds through the repeated hour: each wall time once, the first time.
    back = fires("* 1 * * * */30", local(NEW_YORK, 2024, 11, 3, 0, 59), NEW_YORK, 121)
    walls = [t.astimezone(ZoneInfo(NEW_YORK)).replace(tzinfo=None) for t in back]
    assert len(set(walls)) == len(walls) == 121
    assert back[119] == utc(2024, 11, 3, 5, 59, 30)  # the last 01:59:30, in EDT
    assert back[120] == local(NEW_YORK, 2024, 11, 4, 1, 0).astimezone(UTC)


def test_last_day_nth_weekday_and_nearest_weekday_in_a_zone() -> None:
    assert in_zone(fires("0 9 L 2 *", utc(2024, 1, 1), LONDON, 2), LONDON) == [
        "2024-02-29 09:00 GMT",
        "2025-02-28 09:00 GMT",
    ]
    assert in_zone(fires("0 9 * * mon#2", utc(2024, 3, 1), NEW_YORK, 2), NEW_YORK) == [
        "2024-03-11 09:00 EDT",
        "2024-04-08 09:00 EDT",
    ]
    # 15 June 2024 is a Saturday: the nearest weekday is Friday the 14th.
    assert in_zone(fires("0 9 15W 6 *", utc(2024, 1, 1), SYDNEY, 1), SYDNEY) == [
        "2024-06-14 09:00 AEST"
    ]
