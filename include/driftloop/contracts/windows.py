"""Day windows for drift checks (pure, no heavy imports: DAG files use it at parse time)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


def parse_day(value: str | date | datetime, *, parameter: str = "date") -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as err:
        raise ValueError(f"{parameter} must be a date YYYY-MM-DD, got {value!r}") from err


def day_before(moment: datetime) -> str:
    """The last full UTC day before ``moment``, as YYYY-MM-DD (naive datetimes are UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return (moment.date() - timedelta(days=1)).isoformat()


def window_end_day(
    end_date: str | date | None,
    *,
    announced_days: Iterable[str] = (),
    logical_date: datetime | None = None,
    run_after: datetime | None = None,
) -> str:
    """The last day of the current window, as YYYY-MM-DD — the one rule for every kind of run.

    1. An explicit ``end_date`` (the trigger Param) wins.
    2. An Asset-triggered run checks the latest day its Asset events announced
       (``extra["day"]`` of ``driftloop_inference_logs``): the day that just landed.
    3. Otherwise the last full UTC day before the run's moment: its logical date when it has
       one (a cron run at 02:30 on the 29th checks the 28th; a UI trigger with the form's
       default date checks yesterday), else its ``run_after`` (a REST trigger with
       ``logical_date: null``).

    Cron runs under ``CronTriggerTimetable`` have no data interval worth using (start == end
    == the trigger time), so the data interval is deliberately not an input.
    """
    if end_date:
        return parse_day(end_date, parameter="end_date").isoformat()
    days = sorted(parse_day(d, parameter="Asset event extra 'day'") for d in announced_days)
    if days:
        return days[-1].isoformat()
    moment = logical_date or run_after
    if moment is None:
        raise ValueError("need end_date, an Asset event's day, a logical date or run_after")
    return day_before(moment)


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
