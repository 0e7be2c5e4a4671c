"""Wall-clock helpers. Times are numbers of milliseconds since the epoch (JavaScript's `Date.now()`),
dates are UTC "YYYY-MM-DD" strings, as in the spec. Always floats: the schema's `v.number()` is float64."""

import time
from datetime import datetime, timezone

from ._errors import app_error


def now_ms() -> float:
    return float(time.time_ns() // 1_000_000)


def _utc(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def utc_date(ms: float) -> str:
    """`new Date(ms).toISOString().split("T")[0]`."""
    return _utc(ms).strftime("%Y-%m-%d")


def utc_hhmm(ms: float) -> str:
    return _utc(ms).strftime("%H:%M")


def parse_date(date: str) -> datetime:
    try:
        parsed = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        raise app_error("INVALID_DATE", f"Expected a date like \"2026-01-31\", got {date!r}.") from None
    if parsed.strftime("%Y-%m-%d") != date:
        raise app_error("INVALID_DATE", f"Expected a date like \"2026-01-31\", got {date!r}.")
    return parsed


def day_bounds(date: str) -> tuple[float, float]:
    """[start, end) of a UTC day in ms."""
    start = parse_date(date).timestamp() * 1000
    return float(start), float(start + 86_400_000)


def long_date(date: str) -> str:
    """"2026-01-31" -> "January 31, 2026" (the daily note's heading)."""
    parsed = parse_date(date)
    return f"{parsed.strftime('%B')} {parsed.day}, {parsed.year}"
