"""Day windows for drift checks (pure, no heavy imports: DAG files use it at parse time)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta


def parse_day(value: str | date | datetime, *, parameter: str = "date") -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as err:
        raise ValueError(f"{parameter} must be a date YYYY-MM-DD, got {value!r}") from err


def window_end_day(
    end_date: str | None, data_interval_end: datetime | None, run_after: datetime | None = None
) -> str:
    """The last day of the current window, as YYYY-MM-DD.

    An explicit ``end_date`` (a trigger Param) wins. Otherwise it is the last full day before
    the data interval end (a daily run at 02:00 on the 10th checks data up to the 9th); runs
    with no interval (manual or asset-triggered) use the run's ``run_after`` the same way.
    """
    if end_date:
        return parse_day(end_date, parameter="end_date").isoformat()
    moment = data_interval_end or run_after
    if moment is None:
        raise ValueError("need end_date, a data interval end, or run_after to place the window")
    return (moment - timedelta(microseconds=1)).date().isoformat()


def days_ending(end_day: str | date, length: int) -> list[str]:
    """``length`` consecutive days ending at ``end_day`` (inclusive), oldest first."""
    if length < 1:
        raise ValueError(f"window length must be >= 1 day, got {length}")
    end = parse_day(end_day, parameter="end_day")
    return [(end - timedelta(days=length - 1 - i)).isoformat() for i in range(length)]


@dataclass(frozen=True)
class Windows:
    current: list[str]
    reference: list[str]

    @property
    def current_start(self) -> str:
        return self.current[0]

    @property
    def current_end(self) -> str:
        return self.current[-1]


def drift_windows(end_day: str | date, length: int) -> Windows:
    """Current window ending at ``end_day`` and the sliding reference just before it."""
    current = days_ending(end_day, length)
    reference_end = parse_day(current[0]) - timedelta(days=1)
    return Windows(current=current, reference=days_ending(reference_end, length))
