"""Quota and budget periods, spelled as LiteLLM spells `budget_duration`: "30s", "1h", "1d", "7d", "30d", "1mo".

    parse(text)                       the Duration, for exactly the strings LiteLLM's
                                      duration_in_seconds accepts (its word aliases, then
                                      `(\\d+)(mo|[smhdw]?)` matched at the start); ValueError else
    Duration.seconds_from(start)      its length from `start`, as duration_in_seconds_from
    custom(text)                      the text to keep on a record: None for the default (a
                                      calendar month) and for what cannot be a period
    bounds(now, duration, anchor)     the period [start, end) that holds `now`

Periods follow LiteLLM's budget resets where those are regular (get_next_standardized_reset_time
in UTC): `Nmo` and `30d` ("monthly") are calendar months (N of them), `7d`/`1w` ("weekly") weeks
from Monday 00:00, and other lengths consecutive periods counted from 1970-01-01 00:00 UTC, so
`1d` is the UTC day, `1h` the clock hour, `15m` quarter hours. Where LiteLLM's resets drift (`2d`
resets two days after the day it was computed, `5h` restarts at midnight) the gateway keeps
fixed periods. With an anchor (a subscription's `reset_at`) periods are counted from it instead.
Time is a parameter.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

ALIASES = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}  # LiteLLM's word aliases
_PATTERN = re.compile(r"(\d+)(mo|[smhdw]?)")  # LiteLLM's, matched at the start only, as re.match does
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
WEEK = 604_800
MONDAY = 4 * 86_400  # 1970-01-05 00:00 UTC, the first Monday after the epoch
LONGEST_MONTHS = 1200  # a period of at most 100 years: longer ones are refused (admin API) or monthly (records)


@dataclass(frozen=True, slots=True)
class Duration:
    value: int
    unit: str  # s, m, h, d, w or mo

    @property
    def months(self) -> int | None:
        """Calendar months per period: `Nmo`, and `30d` (LiteLLM resets it on the 1st of each month)."""
        if self.unit == "mo":
            return self.value
        return 1 if (self.unit, self.value) == ("d", 30) else None

    @property
    def usable(self) -> bool:
        """Longer than nothing and at most LONGEST: what a period may be (LiteLLM reads "30000mo" too,
        but no calendar holds its end, and a counter's expiry must fit Redis's integers)."""
        if self.value == 0:
            return False
        if self.unit == "mo":
            return self.value <= LONGEST_MONTHS
        return self.value * UNIT_SECONDS[self.unit] <= LONGEST_MONTHS * 31 * 86_400

    def seconds_from(self, start: float) -> int:
        """The length in seconds when it begins at `start` (LiteLLM's duration_in_seconds_from: `30d` is 30 days)."""
        if self.unit == "mo":
            begin = datetime.fromtimestamp(start, timezone.utc)
            return int((_shift(begin, self.value) - begin).total_seconds())
        return self.value * UNIT_SECONDS[self.unit]


def parse(text: str) -> Duration:
    match = _PATTERN.match(ALIASES.get(text.strip().lower(), text))
    if match is None or not match.group(2):
        raise ValueError(f"not a duration LiteLLM reads: {text!r} (expected <number><unit>, unit s, m, h, d, w or mo, "
                         "or hourly, daily, weekly, monthly)")
    return Duration(int(match.group(1)), match.group(2))


MONTHLY = Duration(1, "mo")


def custom(text: str | None) -> str | None:
    """`text` when it is a period other than the default calendar month, else None (NULL, monthly, `1mo`,
    `30d`, a zero length, one over 100 years or a string LiteLLM would not read: those count per
    calendar month)."""
    if text is None:
        return None
    try:
        duration = parse(text)
    except ValueError:
        return None
    if not duration.usable or duration.months == 1:
        return None
    return text


def duration_of(text: str | None) -> Duration:
    """The Duration of a record's text; a calendar month for None and for what `custom` drops."""
    kept = custom(text)
    return MONTHLY if kept is None else parse(kept)


def bounds(now: float, duration: Duration, anchor: float | None = None) -> tuple[float, float]:
    """The period [start, end) holding `now`: counted from `anchor` when given, else aligned as LiteLLM aligns."""
    months = duration.months
    if months is not None:
        return _month_bounds(now, months, anchor)
    length = duration.value * UNIT_SECONDS[duration.unit]
    if anchor is None:
        anchor = MONDAY if length % WEEK == 0 else 0.0
    start = anchor + math.floor((now - anchor) / length) * length
    return start, start + length


def _month_bounds(now: float, months: int, anchor: float | None) -> tuple[float, float]:
    moment = datetime.fromtimestamp(now, timezone.utc)
    if anchor is None:
        index = (moment.year * 12 + moment.month - 1) // months * months
        start = datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)
        return start.timestamp(), _shift(start, months).timestamp()
    base = datetime.fromtimestamp(anchor, timezone.utc)
    count = ((moment.year - base.year) * 12 + moment.month - base.month) // months
    while _shift(base, count * months).timestamp() > now:  # compared as floats: datetimes round to microseconds
        count -= 1
    while _shift(base, (count + 1) * months).timestamp() <= now:
        count += 1
    return _shift(base, count * months).timestamp(), _shift(base, (count + 1) * months).timestamp()


def _shift(moment: datetime, months: int) -> datetime:
    """`moment` plus calendar months, the day clamped to the month's end (Jan 31 + 1 month: Feb 28/29)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    return moment.replace(year=year, month=month + 1, day=min(moment.day, calendar.monthrange(year, month + 1)[1]))
