"""Which open drift event a new critical check belongs to (one drift, one approval, one
retraining): a query over the drift history's tables (:mod:`driftloop.drift.history`)."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.drift.history import ONGOING_EVENT_STATUSES, drift_checks, drift_events


def ongoing_event(
    engine: sa.Engine,
    reference_kind: str,
    reference_id: str,
    *,
    window_end,
    window_end_since,
    exclude_run_id: str,
) -> int | None:
    """The drift event a new critical check of the window ending ``window_end`` belongs to,
    measured against the same baseline: the latest open one whose check's window ended on or
    after ``window_end_since`` (the drift it sees is most likely that one), or — a late check
    of an older window, run after the event was opened, whatever became of it — one opened
    by a check of a window that ended on or after ``window_end`` and holds that day. The same baseline: the same
    champion reference, or — since a sliding reference moves with every window — any sliding
    one. (A check against a reference frozen by an event belongs to that event: see
    :func:`driftloop.drift.events.open_drift_event`.)"""
    same_baseline = (
        drift_checks.c.reference_id == reference_id
        if reference_kind == "champion"
        else drift_checks.c.reference_kind == reference_kind
    )
    same_drift = sa.or_(
        sa.and_(
            drift_events.c.status.in_(ONGOING_EVENT_STATUSES),
            drift_checks.c.window_end >= window_end_since,
        ),
        # a late check: the opening check's window ended later but still holds this window's
        # last day (the same days drifted), not a window months away
        sa.and_(
            drift_checks.c.window_end >= window_end,
            drift_checks.c.window_start <= window_end,
        ),
    )
    query = (
        sa.select(drift_events.c.id)
        .join(drift_checks, drift_checks.c.run_id == drift_events.c.run_id)
        .where(drift_events.c.run_id != exclude_run_id, same_baseline, same_drift)
        .order_by(drift_events.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    return None if found is None else int(found)
