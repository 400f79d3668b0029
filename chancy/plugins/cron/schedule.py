"""Cron expressions and their fire times in a time zone: pure functions, no database.

**The language is croniter's**, read exactly as Chancy 0.26 read it (``croniter(expression)``
with its defaults), so schedules written for 0.26 keep their meaning. The fields are
``minute hour day-of-month month day-of-week``, optionally followed by ``second`` (a sixth
field, *last*, not first as in Quartz) and ``year`` (a seventh, 1970-2099). Each field is
``*`` or a comma-separated list of ``n``, ``a-b``, ``*/s``, ``a-b/s`` or ``a/s``. Also:

* names: months ``jan``-``dec`` and weekdays ``sun``-``sat``, in any case; weekday 7 is Sunday;
  a range may wrap (``fri-mon``, ``nov-feb``);
* ``?`` in either day field means ``*``;
* ``L`` in the day-of-month field is the last day of the month; ``L5`` in the day-of-week
  field is the last Friday of the month (croniter's spelling: ``5L`` is refused with a hint);
* ``15W`` is the weekday nearest the 15th, within the month;
* ``mon#2`` (or ``1#2``) is the second Monday of the month;
* ``R``, ``R(0-29)``, ``R/15`` pick a random value when the expression is first parsed in a
  process (croniter's extension; each process picks its own);
* aliases ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (``@midnight``)
  and ``@hourly``.

When both day fields are restricted, a day matches if *either* matches (as in classic cron and
croniter: a day field counts as unrestricted only when it is ``*`` or ``?`` or names every
value, so ``*/2`` restricts). Refused, with an error that names the part and what to write
instead: ``@reboot`` and other unknown aliases, ``H`` hashed values (croniter needs a hash id
for them, which 0.26 never gave it, so they never worked there either), and anything else
croniter refuses. An expression with no fire time in the next 50 years (February 30th, a year
that has passed) is refused too, as 0.26 refused it when saving.

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

The parsing and the wall-clock matching are croniter's own (a dependency of the ``cron``
extra); this module adds the checks and messages, and the time-zone rules above.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chancy.errors import ConfigurationError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: The fields in the order croniter reads them (seconds after the five classic ones).
FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week", "second", "year")

#: What each field takes, for error messages.
_FIELD_VALUES = (
    "0-59",
    "0-23",
    "1-31, 'L' (the last day) or 'nW' (the weekday nearest day n), or '?'",
    "1-12 or jan-dec",
    "0-7 or sun-sat (0 and 7 are Sunday), 'mon#2' (the second Monday), 'L5' (the last"
    " Friday), or '?'",
    "0-59",
    "1970-2099",
)

#: How far ahead a fire time is looked for, as Chancy 0.26 asked croniter to look.
HORIZON_YEARS = 50

_FORM = (
    "use five fields 'minute hour day-of-month month day-of-week' (for example '30 2 * * *'"
    " for 02:30 every day), optionally a sixth for seconds and a seventh for the year"
    " ('0 30 2 * * 15' is 02:30:15), or one of " + ", ".join(ALIASES)
)

# croniter splits fields on ASCII whitespace only; so do we, so that both read the same fields.
_FIELD_RE = re.compile(r"\S+", re.ASCII)


class InvalidCronExpression(ValueError):
    """A cron expression could not be parsed, or never matches any time."""


def _croniter() -> Any:
    """The croniter module, or a ConfigurationError saying how to install it."""
    try:
        import croniter
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ConfigurationError(
            "cron schedules need the croniter package: pip install 'chancy[cron]'"
        ) from exc
    return croniter


def require_croniter() -> None:
    """Fail now, with the install command, when croniter is missing (checked by ``Cron()``)."""
    _croniter()


@dataclasses.dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed cron expression.

    ``fields`` are the expression's fields as croniter reads them (an alias expanded, lower
    case); five, six (with seconds) or seven (with seconds and year).
    """

    expression: str
    fields: tuple[str, ...]
    _iterator: Any = dataclasses.field(compare=False, repr=False)

    def __str__(self) -> str:
        return self.expression

    @property
    def has_seconds(self) -> bool:
        """Whether the expression names seconds (six or seven fields)."""
        return len(self.fields) > 5

    def next_wall_time(self, after: datetime) -> datetime:
        """The first matching wall-clock time strictly after ``after`` (naive).

        Wall-clock arithmetic on naive datetimes (croniter's own on a naive start): time zones
        play no part here.
        """
        mod = _croniter()
        # A copy per call: the parsed template is shared (cached) and croniter is stateful.
        it = copy.copy(self._iterator)
        try:
            found: datetime = it.get_next(datetime, start_time=after.replace(tzinfo=None))
        except mod.CroniterBadDateError:
            raise InvalidCronExpression(
                f"cron expression {self.expression!r} never matches a time within"
                f" {HORIZON_YEARS} years after {after:%Y-%m-%d %H:%M}; check the day, month"
                " and year fields"
            ) from None
        return found

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
    parsed = _parse(" ".join(_FIELD_RE.findall(expression)))
    # An expression that can never fire again (February 30th, a past year) is an error now,
    # not a silent schedule. Checked from the present, which is what a year field is read
    # against; outside the cache, so an expression whose last year passes is refused then.
    parsed.next_wall_time(datetime.now(UTC).replace(tzinfo=None))
    return parsed


@functools.lru_cache(maxsize=1024)
def _parse(expression: str) -> CronExpression:
    lowered = expression.lower()
    if lowered == "@reboot":
        raise InvalidCronExpression(
            "cron alias '@reboot' is not supported: a schedule fires at times of day, and"
            " workers start at any time; push the job when your worker starts instead (a"
            " plugin's on_worker_started hook), or use one of " + ", ".join(ALIASES)
        )
    text = ALIASES.get(lowered, expression)
    if text.startswith("@"):
        raise InvalidCronExpression(f"unknown cron alias {expression!r}; {_FORM}")
    fields = tuple(_FIELD_RE.findall(text))
    if len(fields) not in (5, 6, 7):
        raise InvalidCronExpression(
            f"cron expression {expression!r} has {len(fields)} field(s); {_FORM}"
        )
    for index, raw in enumerate(fields):
        _refuse_known_unsupported(expression, index, raw)
    mod = _croniter()
    try:
        iterator = mod.croniter(
            " ".join(fields),
            datetime(2000, 1, 1),
            max_years_between_matches=HORIZON_YEARS,
        )
    except Exception as exc:
        raise _explain(mod, expression, fields, exc) from None
    return CronExpression(
        expression=expression, fields=tuple(f.lower() for f in fields), _iterator=iterator
    )


def _field_error(expression: str, index: int, raw: str, why: str) -> InvalidCronExpression:
    return InvalidCronExpression(
        f"cron expression {expression!r}: {FIELD_NAMES[index]} field {raw!r}: {why}"
    )


# Forms that other cron dialects (Quartz, Spring) accept and croniter does not, each with
# what to write instead; checked before croniter so the error says more than "not acceptable".
_LAST_WEEKDAY_RE = re.compile(r"^(?:(\d|[a-z]{3})l|(?:\d|[a-z]{3})#l|l[a-z]{3})$")


def _refuse_known_unsupported(expression: str, index: int, raw: str) -> None:
    lowered = raw.lower()
    for part in lowered.split(","):
        if re.match(r"^h(\(|/|$)", part):
            raise _field_error(
                expression,
                index,
                raw,
                "'H' (hashed) values are not supported: croniter needs a hash id for them,"
                " which Chancy 0.26 never gave it, so they never worked there either; write a"
                " fixed value such as '7' (or 'R' for a random one)",
            )
        if index == 4 and _LAST_WEEKDAY_RE.match(part):
            raise _field_error(
                expression,
                index,
                raw,
                f"{part.upper()!r} is not croniter's spelling of a last weekday; write 'L'"
                " followed by the weekday number, such as 'L5' for the last Friday of the"
                " month",
            )
        if index == 2 and part in ("lw", "wl"):
            raise _field_error(
                expression,
                index,
                raw,
                "'LW' (the last weekday of the month) is not supported; use 'L' for the"
                " last day of the month or 'nW' for the weekday nearest day n",
            )
        if index == 2 and re.match(r"^l-\d+$", part):
            raise _field_error(
                expression,
                index,
                raw,
                f"offsets from the last day ({part.upper()!r}) are not supported; use 'L'"
                " for the last day of the month or list the days",
            )


def _explain(
    mod: Any, expression: str, fields: tuple[str, ...], exc: Exception
) -> InvalidCronExpression:
    """An error naming the field croniter refused (found by trying each field alone)."""
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    for index, raw in enumerate(fields):
        probe = ["*"] * len(fields)
        probe[index] = raw
        try:
            mod.croniter(" ".join(probe), datetime(2000, 1, 1))
        except Exception as field_exc:
            why = _plain(str(field_exc).strip().splitlines()[-1] if str(field_exc).strip() else "")
            return _field_error(
                expression,
                index,
                raw,
                f"not valid{f' ({why})' if why else ''}; the {FIELD_NAMES[index]} field takes"
                f" {_FIELD_VALUES[index]}, as one value, a list 'a,b', a range 'a-b' or a step"
                " '*/s' or 'a-b/s'",
            )
    return InvalidCronExpression(f"cron expression {expression!r}: {_plain(reason)}; {_FORM}")


def _plain(reason: str) -> str:
    """croniter's reason without the expression it repeats in brackets."""
    reason = re.sub(r"^\[[^\]]*\]\s*", "", reason).strip()
    reason = re.sub(r"^is not acceptable[,.]?\s*", "", reason).split("  Cron:")[0]
    return re.sub(r"\s+is not acceptable$", " is not valid", reason).strip().rstrip(".")


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
