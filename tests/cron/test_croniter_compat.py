"""Cron expressions read as Chancy 0.26 read them: a differential test against croniter.

0.26 handed every expression to ``croniter(expression, start, max_years_between_matches=50)``
and nothing else (no hash id, seconds last). For a corpus of expressions covering every part of
croniter's language, chancy's next 20 fire times from several start instants must equal
croniter's, in UTC and in zones without daylight saving time (with DST, chancy's own rules
apply: see test_schedule.py). Every expression chancy refuses must be one croniter refuses too,
with an error that names the part. A property test does the same over generated expressions.
"""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

croniter_module = pytest.importorskip("croniter")
from croniter import croniter  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from chancy.plugins.cron.schedule import InvalidCronExpression, parse  # noqa: E402

COMMON = [
    "* * * * *",
    "*/5 * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "30 * * * *",
    "0 0 * * *",
    "30 2 * * *",
    "0 9 * * 1-5",
    "0 9-17 * * mon-fri",
    "*/10 9-17 * * 1-5",
    "0 0 1 * *",
    "0 0 1 1 *",
    "0 12 * * sun",
    "15 14 1 * *",
    "0 22 * * 1-5",
    "23 0-20/2 * * *",
    "5 4 * * sun",
    "0 0,12 1 */2 *",
    "0 4 8-14 * *",
    "0 0 1,15 * *",
    "0 0 * * 0",
    "0 0 * * 7",
    "0 0 * * 0,6",
    "0 8 * * sat,sun",
    "1-59/2 * * * *",
    "0 */3 * * *",
    "0 0 */2 * *",
    "0 0 1 */3 *",
    "45 23 * * 6",
    "0 6,18 * * *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "0 0 30 * *",
    "59 23 31 12 *",
    "10,20,30 * * * *",
    "0-10 * * * *",
    "0-10/3 * * * *",
    "5/20 * * * *",
    "50/15 * * * *",
    "59/15 * * * *",
    "*/7 */5 * * *",
    "0 */7 * * *",
    "*/25 * * * *",
    "0 0 */10 * *",
    "0 0 */4 */5 *",
    "  0   0   * *  * ",
]
NAMES = [
    "0 0 1 jan *",
    "0 0 1 JAN,jul *",
    "0 0 * feb-apr *",
    "0 0 * * MON",
    "0 0 * * Tue-Thu",
    "0 0 * * SUN",
    "0 0 * DEC *",
    "0 0 * Mar-May/2 *",
]
ALIASES = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
    "@DAILY",
]
WRAPPING_AND_ODD_RANGES = [
    "0 0 * * fri-mon",
    "0 0 * * 5-1",
    "0 0 * nov-feb *",
    "0 0 * 11-2 *",
    "50-10 * * * *",
    "0 22-2 * * *",
    "0 0 * * sat-sun",
    "0 0 * apr-jan/3 *",
    "0 0 * * 6-0",
    "0 0 * jan-jan *",  # croniter: an equal range is the whole cycle
    "1-1/3 * * * *",
    "0 0 * * sun-sun",
    "0 0 * * 0-7",
]
QUESTION_MARK = ["0 0 ? * mon", "0 0 1 * ?", "0 0 ? * ?"]
LAST = [
    "0 0 L * *",
    "0 12 L 2 *",
    "0 0 L * fri",
    "0 0 15,L * *",
    "0 0 * * L5",
    "0 0 * * L0",
    "0 0 * * l1",
    "0 18 * * L5,L6",
]
NEAREST_WEEKDAY = ["0 0 15W * *", "0 0 1W * *", "0 0 31W * *", "0 0 W15 * *", "0 9 1W * mon"]
NTH_WEEKDAY = [
    "0 0 * * mon#2",
    "0 0 * * 1#1",
    "0 0 * * fri#5",
    "0 0 * * 0#3",
    "0 0 * * mon#1,fri#3",
    "0 0 10 * mon#2",
    "0 0 * * mon#2,mon#4",
    "30 8 * * tue#1",
]
SECONDS = [
    "* * * * * *",
    "* * * * * */10",
    "0 0 * * * 30",
    "*/5 * * * * 0,30",
    "0 12 * * mon 15",
    "0 0 1 * * 0-10/5",
    "* * * * * 5/15",
    "0 0 L * * 59",
]
YEARS = [
    "0 0 1 1 * 0 2030",
    "0 12 * * * 0 2027-2029",
    "*/30 * * * * 0 *",
    "0 0 L 2 * 0 2028,2032",
    "0 0 1 */6 * 0 2030/2",
    "0 0 29 2 * 0 2028",
]
DAY_OR = [
    "0 0 13 * fri",
    "0 0 1 * mon",
    "0 0 */2 * mon",
    "0 0 1-7 * sun",
    "0 0 1,15 * 0-6",
    "0 0 1-31 * mon",
    "0 0 * * 0-6",
    "0 0 1-31 * *",
    "0 0 */3 * */2",
]
CORPUS = (
    COMMON
    + NAMES
    + ALIASES
    + WRAPPING_AND_ODD_RANGES
    + QUESTION_MARK
    + LAST
    + NEAREST_WEEKDAY
    + NTH_WEEKDAY
    + SECONDS
    + YEARS
    + DAY_OR
)

STARTS = [
    datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2024, 2, 28, 23, 59, 30, tzinfo=UTC),
    datetime(2025, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    datetime(2026, 7, 15, 12, 34, 56, tzinfo=UTC),
    datetime(2027, 3, 31, 6, 0, tzinfo=UTC),
]

# Zones without daylight saving time, where croniter's own time-zone handling has nothing to
# decide and so must agree with chancy's exactly.
ZONES = ["UTC", "Asia/Tokyo", "Asia/Kolkata"]


def croniter_times(expression: str, start: datetime, n: int) -> list[datetime]:
    """Up to ``n`` fire times (fewer when a year field runs out)."""
    it = croniter(expression, start, max_years_between_matches=50)
    found: list[datetime] = []
    with contextlib.suppress(croniter_module.CroniterBadDateError):
        while len(found) < n:
            found.append(it.get_next(datetime))
    return found


def chancy_times(expression: str, start: datetime, zone: str, n: int) -> list[datetime]:
    """Up to ``n`` fire times; an expression that runs out ends with InvalidCronExpression."""
    found: list[datetime] = []
    with contextlib.suppress(InvalidCronExpression):
        for when in parse(expression).iter_after(start, zone):
            found.append(when)
            if len(found) == n:
                break
    return found


def test_the_corpus_is_large_and_every_expression_in_it_is_croniter_s() -> None:
    assert len(CORPUS) >= 100 and len(set(CORPUS)) == len(CORPUS)
    for expression in CORPUS:
        assert croniter.is_valid(expression), expression


@pytest.mark.parametrize("expression", CORPUS)
def test_fire_times_equal_croniter_s(expression: str) -> None:
    for zone, start in itertools.product(ZONES, STARTS):
        local_start = start.astimezone(ZoneInfo(zone))
        expected = croniter_times(expression, local_start, 20)
        got = chancy_times(expression, start, zone, 20)
        assert got == expected, f"{expression!r} in {zone} from {start}"
        assert len(got) == 20 or expression in YEARS
        assert all(t.tzinfo is UTC for t in got)


def test_random_values_are_drawn_once_per_parse_and_stay_in_range() -> None:
    # 'R' is croniter's random pick; 0.26 accepted it. A process keeps its pick.
    start = STARTS[0]
    times = chancy_times("R(0-29) R(9-11) * * *", start, "UTC", 5)
    assert len({(t.hour, t.minute) for t in times}) == 1
    assert times[0].minute < 30 and 9 <= times[0].hour <= 11
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(times))
    steps = chancy_times("R/15 * * * *", start, "UTC", 8)
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(steps))


REFUSED = [
    ("@reboot", "'@reboot'"),
    ("@every 5m", "'@every 5m'"),
    ("H * * * *", "minute field 'H'"),
    ("H/15 * * * *", "minute field 'H/15'"),
    ("0 H(0-5) * * *", "hour field 'H(0-5)'"),
    ("0 0 * * 5L", "day of week field '5L'"),
    ("0 0 * * fri#L", "day of week field 'fri#L'"),
    ("0 0 * * lfri", "day of week field 'lfri'"),
    ("0 0 LW * *", "day of month field 'LW'"),
    ("0 0 L-3 * *", "day of month field 'L-3'"),
    ("0 0 1,15W * *", "day of month field '1,15W'"),
    ("0 0 * * mon#6", "day of week field 'mon#6'"),
    ("0 0 * * 1-3,mon#2", "day of week field '1-3,mon#2'"),
    ("60 * * * *", "minute field '60'"),
    ("* 24 * * *", "hour field '24'"),
    ("* * 32 * *", "day of month field '32'"),
    ("* * * 13 *", "month field '13'"),
    ("* * * * 8", "day of week field '8'"),
    ("* * * * * 60", "second field '60'"),
    ("* * * * * * 2100", "year field '2100'"),
    ("*/0 * * * *", "minute field '*/0'"),
    ("0 0 ?/2 * *", "day of month field '?/2'"),
    ("? * * * *", "minute field '?'"),
    ("* * * foo *", "month field 'foo'"),
    ("-1 * * * *", "minute field '-1'"),
    ("* * * *", "has 4 field(s)"),
    ("* * * * * * * *", "has 8 field(s)"),
    ("0 0 30 2 *", "never matches"),
    ("0 0 15 * mon#2", "never matches"),
    ("0 0 1 1 * 0 2020", "never matches"),
]


@pytest.mark.parametrize(("expression", "part"), REFUSED)
def test_what_chancy_refuses_croniter_refused_too_and_the_error_names_it(
    expression: str, part: str
) -> None:
    with pytest.raises(InvalidCronExpression) as caught:
        parse(expression)
    assert part in str(caught.value)
    # 0.26 refused it as well: croniter cannot build it, or finds no time after now.
    with pytest.raises((croniter_module.CroniterError, ValueError)):
        croniter(expression, datetime.now(UTC), max_years_between_matches=50).get_next(datetime)


# -- generated expressions ---------------------------------------------------------------------

_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7), (0, 59)]
_NAMES = {
    3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}


@st.composite
def _field(draw: st.DrawFn, index: int) -> str:
    lo, hi = _RANGES[index]
    value = st.integers(lo - 1, hi + 1).map(str)
    if index in _NAMES:
        value = value | st.sampled_from(_NAMES[index])
    item = st.one_of(
        value,
        st.tuples(value, value).map("-".join),
        st.tuples(
            st.sampled_from(["*"]) | value | st.tuples(value, value).map("-".join),
            st.integers(0, hi + 2),
        ).map(lambda p: f"{p[0]}/{p[1]}"),
    )
    special: list[str] = []
    if index == 2:
        special = ["L", "?", f"{draw(st.integers(0, 32))}W"]
    if index == 4:
        special = ["?", f"L{draw(st.integers(0, 7))}", f"{draw(value)}#{draw(st.integers(0, 6))}"]
    if special and draw(st.booleans()):
        return draw(st.sampled_from(special))
    if draw(st.integers(0, 3)) == 0:
        return "*"
    return ",".join(draw(st.lists(item, min_size=1, max_size=3)))


@st.composite
def _expression(draw: st.DrawFn) -> str:
    count = draw(st.sampled_from([5, 5, 5, 6]))
    return " ".join(draw(_field(i)) for i in range(count))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    expression=_expression(),
    start=st.datetimes(datetime(2024, 1, 1), datetime(2030, 1, 1)),
)
def test_generated_expressions_are_read_as_croniter_reads_them(
    expression: str, start: datetime
) -> None:
    start = start.replace(tzinfo=UTC)
    try:
        expected = croniter_times(expression, start, 5)
        now_ok = croniter(expression, datetime.now(UTC), max_years_between_matches=50)
        now_ok.get_next(datetime)
    except Exception:
        with pytest.raises(InvalidCronExpression):
            parse(expression)
        return
    assert chancy_times(expression, start, "UTC", 5) == expected, expression
