"""Turn a time expression ("yesterday", "last week", "since March 3", ISO dates) into a range."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from session_buddy.errors import ValidationError

MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
UNITS = {
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}

EXAMPLES = (
    "today, yesterday, this week, last week, this month, last month, last 3 days, "
    "past 2 hours, since March 3, before 2026-01-01, 2026-11-01, 2026-11-01..2026-11-05, "
    "an ISO timestamp"
)


@dataclass(frozen=True)
class TimeRange:
    after: datetime | None
    before: datetime | None
    description: str


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def parse_datetime(text: str) -> datetime:
    """An ISO date or timestamp (naive values are taken as UTC)."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"{text!r} is not an ISO date or timestamp (e.g. 2026-11-01 or 2026-11-01T09:30:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _month_day(text: str, now: datetime) -> date | None:
    m = re.fullmatch(r"([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?", text)
    if not m:
        m2 = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]+)\.?(?:,?\s+(\d{4}))?", text)
        if not m2:
            return None
        day_s, month_s, year_s = m2.groups()
    else:
        month_s, day_s, year_s = m.groups()
    month = MONTHS.get(month_s)
    if month is None:
        return None
    year = int(year_s) if year_s else now.year
    try:
        found = date(year, month, int(day_s))
    except ValueError:
        raise ValidationError(f"{text!r} is not a real date") from None
    if not year_s and found > now.date():
        found = found.replace(year=year - 1)
    return found


def _point(text: str, now: datetime) -> datetime:
    today = now.date()
    if text in ("today", "now"):
        return _start_of(today) if text == "today" else now
    if text == "yesterday":
        return _start_of(today - timedelta(days=1))
    found = _month_day(text, now)
    if found is not None:
        return _start_of(found)
    return parse_datetime(text)


def parse_expression(expression: str, now: datetime | None = None) -> TimeRange:
    """Parse a time expression; raises ValidationError listing what is understood."""
    now = now or datetime.now(UTC)
    text = " ".join(expression.lower().strip().split())
    if not text:
        raise ValidationError(f"Empty time expression; try one of: {EXAMPLES}")
    today = now.date()
    try:
        if text == "today":
            return TimeRange(_start_of(today), None, "today")
        if text == "yesterday":
            return TimeRange(_start_of(today - timedelta(days=1)), _start_of(today), "yesterday")
        if text == "this week":
            start = today - timedelta(days=today.weekday())
            return TimeRange(_start_of(start), None, "this week (since Monday)")
        if text == "last week":
            start = today - timedelta(days=today.weekday() + 7)
            return TimeRange(_start_of(start), _start_of(start + timedelta(days=7)), "last week")
        if text == "this month":
            return TimeRange(_start_of(today.replace(day=1)), None, "this month")
        if text == "last month":
            first = today.replace(day=1)
            prev = (first - timedelta(days=1)).replace(day=1)
            return TimeRange(_start_of(prev), _start_of(first), "last month")
        m = re.fullmatch(
            r"(?:last|past|previous)\s+(\d+)\s+(minute|hour|day|week|month|year)s?", text
        )
        if m:
            seconds = int(m.group(1)) * UNITS[m.group(2)]
            return TimeRange(now - timedelta(seconds=seconds), None, text)
        m = re.fullmatch(r"(?:last|past)\s+(minute|hour|day|week|month|year)", text)
        if m:
            return TimeRange(now - timedelta(seconds=UNITS[m.group(1)]), None, text)
        m = re.fullmatch(r"(\d+)\s+(minute|hour|day|week|month|year)s?\s+ago", text)
        if m:
            point = now - timedelta(seconds=int(m.group(1)) * UNITS[m.group(2)])
            if m.group(2) in ("day", "week", "month", "year"):
                start = _start_of(point.date())
                return TimeRange(start, start + timedelta(days=1), text)
            return TimeRange(point, None, text)
        m = re.fullmatch(r"(?:since|after|from)\s+(.+)", text)
        if m:
            return TimeRange(_point(m.group(1), now), None, text)
        m = re.fullmatch(r"(?:before|until)\s+(.+)", text)
        if m:
            return TimeRange(None, _point(m.group(1), now), text)
        m = re.fullmatch(r"(.+?)\s*(?:\.\.|\bto\b)\s*(.+)", text)
        if m and re.match(r"\d{4}-\d{2}-\d{2}", m.group(1)):
            start = _point(m.group(1), now)
            end = _point(m.group(2), now)
            if len(m.group(2)) == 10:
                end = end + timedelta(days=1)
            return TimeRange(start, end, text)
        found = _month_day(text, now)
        if found is not None:
            return TimeRange(_start_of(found), _start_of(found + timedelta(days=1)), text)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = parse_datetime(text)
            return TimeRange(start, start + timedelta(days=1), text)
        return TimeRange(parse_datetime(text), None, f"since {text}")
    except ValidationError as exc:
        raise ValidationError(
            f"Cannot read the time expression {expression!r}: {exc}. Understood: {EXAMPLES}"
        ) from None
