"""Cron expressions and their fire times in a time zone: pure functions, no database, no clock.

An expression has five fields, ``minute hour day-of-month month day-of-week``, or is one of
the aliases ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``)
and ``@hourly``. Each field is ``*`` or a comma-separated list of ``n``, ``a-b``, ``*/s``,
``a-b/s`` or ``a/s`` (from ``a`` to the field's maximum, every ``s``). Months may be named
``jan``-``dec`` and weekdays ``sun``-``sat`` (any case); weekday 0 and 7 are both Sunday. As in
Vixie cron, when both day fields are restricted (neither starts with ``*``), a day matches if
*either* matches; otherwise both must.

Time zones and daylight saving time. An expression names wall-clock times in its time zone, and
each matching wall-clock time fires exactly once:

* a wall-clock time that does not exist (it falls in the hour skipped when clocks go forward)
  fires at the first valid instant after it, which is the moment the clocks changed; several
  such times in one gap fire once, together;
* a wall-clock time that happens twice (the hour repeated when clocks go back) fires at its
  first occurrence only.

So in New York a ``30 2 * * *`` job runs at 03:00 EDT on the spring-forward day (02:30 does not
exist), and a ``30 1 * * *`` job runs once on the fall-back day, at the first 01:30 (EDT). A
schedule that must keep a fixed real-time rhythm across transitions (every 15 minutes through
the repeated hour, say) is best given in UTC.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTHS = {
    name: n
    for n, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_WEEKDAYS = {name: n for n, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}

#: (name, lowest, highest, names) of the five fields.
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _WEEKDAYS),
)

#: How far ahead a fire time is looked for; an expression with none in this window (such as
#: February 30th) never fires. Eight years always include a February 29th.
_HORIZON_YEARS = 8

_FORM = (
    "use five fields 'minute hour day-of-month month day-of-week' (for example '30 2 * * *'"
    " for 02:30 every day) or one of " + ", ".join(ALIASES)
)


class InvalidCronExpression(ValueError):
    """A cron expression could not be parsed, or never matches any time."""


@dataclasses.dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed cron expression: the allowed values of each field.

    ``weekdays`` uses 0 for Sunday. ``day_star`` and ``weekday_star`` record whether the day
    fields started with ``*``, which decides how the two combine.
    """

    expression: str
    minutes: tuple[int, ...]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool
    weekday_star: bool

    def __str__(self) -> str:
        return self.expression

    def day_matches(self, year: int, month: int, day: int) -> bool:
        dom = day in self.days
        dow = (datetime(year, month, day).isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow

    def next_wall_time(self, after: datetime) -> datetime:
        """The first matching wall-clock time strictly after ``after`` (naive, minute precision).

        Wall-clock arithmetic on naive datetimes: time zones play no part here.
        """
        t = after.replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        horizon = t.year + _HORIZON_YEARS
        while t.year <= horizon:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = datetime(year, month, 1)
                continue
            if not self.day_matches(t.year, t.month, t.day):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            i = bisect.bisect_left(self.minutes, t.minute)
            if i == len(self.minutes):
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t.replace(minute=self.minutes[i])
        raise InvalidCronExpression(
            f"cron expression {self.expression!r} never matches a date (within"
            f" {_HORIZON_YEARS} years of {after:%Y-%m-%d}); check the day and month fields"
        )

    def next_after(self, after: datetime, tz: tzinfo | str = UTC) -> datetime:
        """The first fire time strictly after the instant ``after``, as an aware UTC datetime.

        ``after`` must be timezone-aware. See the module docstring for how skipped and
        repeated wall-clock times are handled.
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("after must be a timezone-aware datetime")
        zone = get_timezone(tz)
        after_utc = after.astimezone(UTC)
        wall = after_utc.astimezone(zone).replace(tzinfo=None)
        while True:
            wall = self.next_wall_time(wall)
            instant = resolve_wall_time(wall, zone)
            if instant > after_utc:
                return instant

    def iter_after(self, after: datetime, tz: tzinfo | str = UTC) -> Iterator[datetime]:
        """Fire times after ``after``, one by one (UTC)."""
        zone = get_timezone(tz)
        while True:
            after = self.next_after(after, zone)
            yield after


def parse(expression: str) -> CronExpression:
    """Parse a cron expression; raise ``InvalidCronExpression`` (a ValueError) naming the fix."""
    if not isinstance(expression, str):
        raise InvalidCronExpression(
            f"a cron expression must be a string, not {type(expression).__name__}"
        )
    return _parse(" ".join(expression.split()))


@functools.lru_cache(maxsize=1024)
def _parse(expression: str) -> CronExpression:
    text = ALIASES.get(expression.lower(), expression)
    if text.startswith("@"):
        raise InvalidCronExpression(f"unknown cron alias {expression!r}; {_FORM}")
    fields = text.split()
    if len(fields) != 5:
        raise InvalidCronExpression(
            f"cron expression {expression!r} has {len(fields)} field(s); {_FORM}"
        )
    values = [
        _parse_field(raw, name, lo, hi, names, expression)
        for raw, (name, lo, hi, names) in zip(fields, _FIELDS, strict=True)
    ]
    weekdays = frozenset(d % 7 for d in values[4])
    parsed = CronExpression(
        expression=expression,
        minutes=tuple(sorted(values[0])),
        hours=frozenset(values[1]),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        day_star=fields[2].startswith("*"),
        weekday_star=fields[4].startswith("*"),
    )
    # An expression that can never fire (February 30th) is an error now, not a silent schedule.
    parsed.next_wall_time(datetime(2000, 1, 1))
    return parsed


def _parse_field(
    raw: str, name: str, lo: int, hi: int, names: dict[str, int], expression: str
) -> set[int]:
    def fail(why: str) -> InvalidCronExpression:
        return InvalidCronExpression(
            f"cron expression {expression!r}: {name} field {raw!r}: {why}; {_FORM}"
        )

    def number(token: str) -> int:
        value = names.get(token.lower())
        if value is None:
            if not token.isdigit():
                allowed = f"{lo}-{hi}" + (
                    f" or a name such as {next(iter(names))}" if names else ""
                )
                raise fail(f"{token!r} is not a number ({allowed})")
            value = int(token)
        if not lo <= value <= hi:
            raise fail(f"{value} is out of range {lo}-{hi}")
        return value

    found: set[int] = set()
    for part in raw.split(","):
        if not part:
            raise fail("empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise fail(f"step {step_text!r} must be a whole number of at least 1")
            step = int(step_text)
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise fail(f"range {base!r} runs backwards")
        else:
            start = number(base)
            end = hi if slash else start
        found.update(range(start, end + 1, step))
    return found


def get_timezone(tz: tzinfo | str | None) -> tzinfo:
    """A tzinfo for an IANA name (or a tzinfo, returned as is); ValueError for unknown names."""
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"a time zone must be an IANA name such as 'Europe/London', not {tz!r}")
    if tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {tz!r}; use an IANA name such as 'Europe/London',"
            " 'America/New_York' or 'UTC' (the tzdata package provides them where the system"
            " has none)"
        ) from None


def timezone_name(tz: tzinfo | str | None) -> str:
    """The name stored for a time zone: its IANA key (``UTC`` for UTC)."""
    if tz is None:
        return "UTC"
    if isinstance(tz, str):
        get_timezone(tz)  # validate
        return "UTC" if tz.upper() == "UTC" else tz
    if tz is UTC:
        return "UTC"
    key = getattr(tz, "key", None)
    if isinstance(key, str):
        return key
    raise ValueError(
        f"time zone {tz!r} has no IANA name; pass a name such as 'Europe/London' or a"
        " zoneinfo.ZoneInfo"
    )


def resolve_wall_time(wall: datetime, zone: tzinfo) -> datetime:
    """The instant (UTC) at which the naive wall-clock time ``wall`` fires in ``zone``.

    An existing time maps to itself; a repeated one to its first occurrence; a skipped one to
    the first valid instant after it (the moment the clocks went forward).
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 reads the time with the offset from before the change (an instant
    # after it) and fold=1 with the offset from after (an instant before it): the change lies
    # between the two. Find it to the second.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = min(first, other), max(first, other)
    after_offset = hi.astimezone(zone).utcoffset()
    low, high = 0, int((hi - lo).total_seconds())
    while low < high:
        mid = (low + high) // 2
        if (lo + timedelta(seconds=mid)).astimezone(zone).utcoffset() == after_offset:
            high = mid
        else:
            low = mid + 1
    return lo + timedelta(seconds=low)


def next_run(expression: str, after: datetime, tz: tzinfo | str = UTC) -> datetime:
    """The first fire time of ``expression`` strictly after ``after`` (UTC, aware)."""
    return parse(expression).next_after(after, tz)
