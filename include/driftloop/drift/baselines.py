"""Which baseline is in force: the drift history's answers to the reference rules of
:func:`driftloop.drift.run.choose_reference` (an open event freezes the sliding reference, an
accepted one puts its window in its place) and to "which window does an operator accept"."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from driftloop.drift.history import OPEN_EVENT_STATUSES, check_as_dict, drift_checks, drift_events


def event_baseline(engine: sa.Engine, event_id: int) -> dict[str, Any] | None:
    """The check that opened event ``event_id`` (its baseline: reference kind and id, its
    window), or None when the event has no recorded check (opened by hand)."""
    query = (
        sa.select(drift_checks)
        .join(drift_events, drift_events.c.run_id == drift_checks.c.run_id)
        .where(drift_events.c.id == event_id)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return None if row is None else check_as_dict(row)


def latest_check_of_baseline(engine: sa.Engine, event_id: int) -> dict[str, Any] | None:
    """The newest check measured against the baseline event ``event_id`` was opened on (the
    same reference bundle, from its opening window on): the window an operator who accepts
    the drift as the new normal last saw. None when the event has no recorded check."""
    opening = event_baseline(engine, event_id)
    if opening is None:
        return None
    query = (
        sa.select(drift_checks)
        .where(
            drift_checks.c.reference_id == opening["reference_id"],
            drift_checks.c.window_end >= opening["window_end"],
        )
        .order_by(drift_checks.c.window_end.desc(), drift_checks.c.checked_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return check_as_dict(row)


def freezing_event(engine: sa.Engine, window_end) -> dict[str, Any] | None:
    """The open drift event that freezes the sliding reference of the window ending
    ``window_end``: the oldest open event opened by a check against a sliding reference of an
    earlier window. Its days must not slide into the reference while it is open, so later
    checks keep that check's reference bundle (``reference_id``). None: nothing freezes."""
    query = (
        sa.select(
            drift_events.c.id,
            drift_events.c.status,
            drift_checks.c.reference_id,
            drift_checks.c.window_start,
            drift_checks.c.window_end,
        )
        .join(drift_checks, drift_checks.c.run_id == drift_events.c.run_id)
        .where(
            drift_events.c.status.in_(OPEN_EVENT_STATUSES),
            drift_checks.c.reference_kind == "sliding",
            drift_checks.c.window_end < window_end,
        )
        .order_by(drift_checks.c.window_end.asc(), drift_events.c.id.asc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return {
        "event_id": int(row["id"]),
        "status": row["status"],
        "reference_id": row["reference_id"],
        "opened_window": {
            "start": row["window_start"].isoformat(),
            "end": row["window_end"].isoformat(),
        },
    }


def accepted_sliding_reference(
    engine: sa.Engine, window_end, sliding_reference_start
) -> dict[str, Any] | None:
    """The accepted new normal that stands in for the sliding reference of the window ending
    ``window_end``: the latest event measured against a sliding reference, closed as
    ACCEPTED, whose accepted window ended before ``window_end`` and began after
    ``sliding_reference_start`` (the first day the plain sliding reference would use). Once
    the sliding reference starts on or after the accepted window's first day, it holds only
    days of the new normal and takes over again. None: no accepted window applies."""
    query = (
        sa.select(
            drift_events.c.id,
            drift_events.c.accepted_window_start,
            drift_events.c.accepted_window_end,
        )
        .join(drift_checks, drift_checks.c.run_id == drift_events.c.run_id)
        .where(
            drift_events.c.status == "ACCEPTED",
            drift_checks.c.reference_kind == "sliding",
            drift_events.c.accepted_window_end < window_end,
            drift_events.c.accepted_window_start > sliding_reference_start,
        )
        .order_by(drift_events.c.accepted_window_end.desc(), drift_events.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return {
        "event_id": int(row["id"]),
        "window": {
            "start": row["accepted_window_start"].isoformat(),
            "end": row["accepted_window_end"].isoformat(),
        },
    }
